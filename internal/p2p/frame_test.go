package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"ipfs-cluster/internal/api"
)

func readFrames(data []byte, max int) (kinds []byte, bodies [][]byte, err error) {
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(data)), max: max}
	for {
		kind, body, err := fr.next()
		if err != nil {
			return kinds, bodies, err
		}
		kinds = append(kinds, kind)
		bodies = append(bodies, bytes.Clone(body))
	}
}

func TestFrameRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 3*readChunk+5)
	var data []byte
	data = appendFrame(data, frameUnary, appendRequest(nil, "Cluster.ID", []byte("jnull")))
	data = appendFrame(data, frameValue, big)
	data = appendFrame(data, frameValue, []byte("small"))
	data = appendFrame(data, frameEnd, nil)
	data = appendFrame(data, frameError, appendErrorBody(nil, codeBusy, "busy"))
	kinds, bodies, err := readFrames(data, DefaultMaxFrameSize)
	if err != io.EOF {
		t.Fatalf("read: %v, want a clean EOF", err)
	}
	if string(kinds) != "RVVZE" {
		t.Fatalf("kinds %q", kinds)
	}
	if name, arg, err := parseRequest(bodies[0]); err != nil || name != "Cluster.ID" || string(arg) != "jnull" {
		t.Fatalf("request: %q %q %v", name, arg, err)
	}
	if !bytes.Equal(bodies[1], big) || string(bodies[2]) != "small" || len(bodies[3]) != 0 {
		t.Fatal("bodies differ")
	}
	if code, msg, err := parseErrorBody(bodies[4]); err != nil || code != codeBusy || msg != "busy" {
		t.Fatalf("error frame: %q %q %v", code, msg, err)
	}
}

func TestFrameErrors(t *testing.T) {
	tooLong := binary.AppendUvarint([]byte{frameValue}, 1025)
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"too large":       {tooLong, ErrFrameTooLarge},
		"huge length":     {append([]byte{frameValue}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrFrameTooLarge},
		"length overflow": {append([]byte{frameValue}, bytes.Repeat([]byte{0xff}, 11)...), ErrProtocol},
		"cut in length":   {[]byte{frameValue, 0x80}, ErrProtocol},
		"cut in body":     {[]byte{frameValue, 5, 'a', 'b'}, ErrProtocol},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := readFrames(tc.data, 1024)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	for _, body := range [][]byte{nil, {0}, {200, 'a'}, {0x80}, append([]byte{maxMethodLen + 1}, strings.Repeat("a", maxMethodLen+1)...)} {
		if _, _, err := parseRequest(body); !errors.Is(err, ErrProtocol) {
			t.Fatalf("request body %q: %v, want ErrProtocol", body, err)
		}
	}
	if _, _, err := parseErrorBody(nil); !errors.Is(err, ErrProtocol) {
		t.Fatalf("empty error body: %v", err)
	}
}

// An announced length costs memory only as its bytes arrive.
func TestFrameBufferGrowsWithData(t *testing.T) {
	data := binary.AppendUvarint([]byte{frameValue}, DefaultMaxFrameSize)
	data = append(data, make([]byte, 1000)...)
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(data)), max: DefaultMaxFrameSize}
	if _, _, err := fr.next(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("truncated frame: %v", err)
	}
	if cap(fr.buf) > 2*readChunk {
		t.Fatalf("buffer grew to %d bytes for 1000 bytes received", cap(fr.buf))
	}
}

// FuzzFrameReader feeds arbitrary bytes to the frame and request parsers:
// they must never panic nor hold more than the limit.
func FuzzFrameReader(f *testing.F) {
	f.Add(appendFrame(nil, frameUnary, appendRequest(nil, "Cluster.ID", []byte("jnull"))))
	f.Add(appendFrame(nil, frameStream, appendRequest(nil, "PinTracker.StatusAll", []byte(`j{"filter":1}`))))
	f.Add(appendFrame(appendFrame(nil, frameValue, []byte("b\x01")), frameEnd, nil))
	f.Add(appendFrame(nil, frameError, appendErrorBody(nil, codeNotAllowed, "no")))
	f.Add(binary.AppendUvarint([]byte{frameValue}, 1<<40))
	f.Add([]byte{frameValue, 0x80, 0x80})
	f.Add([]byte{})
	const max = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := frameReader{r: bufio.NewReader(bytes.NewReader(data)), max: max}
		for range 64 {
			kind, body, err := fr.next()
			if err != nil {
				return
			}
			if len(body) > max {
				t.Fatalf("body of %d bytes over the limit", len(body))
			}
			switch kind {
			case frameUnary, frameStream:
				if name, _, err := parseRequest(body); err == nil && (name == "" || len(name) > maxMethodLen) {
					t.Fatalf("accepted method name %q", name)
				}
			case frameError:
				_, _, _ = parseErrorBody(body)
			case frameValue:
				var pin api.Pin
				_ = decodeValue(body, &pin)
				var v map[string]any
				_ = decodeValue(body, &v)
			}
		}
	})
}

// rawStream opens an RPC stream to the server without the client, to
// send it what a well-behaved client never would.
func rawStream(t *testing.T, c *cluster) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.hosts[0].NewStream(ctx, c.hosts[1].ID(), protocol.ID(api.RPCProtocol))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	return s
}

// readRefusal reads the server's answer to a raw stream: one error frame
// with the wanted code, then the end of the stream.
func readRefusal(t *testing.T, s network.Stream, code byte, contains string) {
	t.Helper()
	kinds, bodies, err := readFrames(mustReadAll(t, s), DefaultMaxFrameSize)
	if err != io.EOF || len(kinds) != 1 || kinds[0] != frameError {
		t.Fatalf("server answered frames %q (%v), want one error frame", kinds, err)
	}
	gotCode, msg, _ := parseErrorBody(bodies[0])
	if gotCode != code || !strings.Contains(msg, contains) {
		t.Fatalf("server answered %q %q, want %q with %q", gotCode, msg, code, contains)
	}
}

func mustReadAll(t *testing.T, s network.Stream) []byte {
	t.Helper()
	data, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("reading the server's answer: %v", err)
	}
	return data
}

// serverStillServes checks that the server answers a normal call.
func serverStillServes(t *testing.T, c *cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got string
	if err := c.rpcs[0].Call(ctx, c.hosts[1].ID(), "Test.Echo", echoArg{Text: "ok"}, &got); err != nil {
		t.Fatalf("server no longer serves: %v", err)
	}
}

func TestOversizedFrameRefused(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll, MaxFrameSize: 1 << 20})
	s := rawStream(t, c)
	if _, err := s.Write(binary.AppendUvarint([]byte{frameUnary}, 17<<20)); err != nil {
		t.Fatal(err)
	}
	readRefusal(t, s, codeBadRequest, "frame too large")
	serverStillServes(t, c)

	// The client refuses to send one too.
	err := c.rpcs[0].Call(context.Background(), c.hosts[1].ID(), "Test.Echo", echoArg{Text: strings.Repeat("x", 2<<20)}, nil)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized request: %v, want ErrFrameTooLarge", err)
	}
	// And a reply over the limit becomes an error, not a broken stream.
	Handle(c.rpcs[1], "Test.Big", Open, func(_ context.Context, _ peer.ID, n int) (string, error) {
		return strings.Repeat("x", n), nil
	})
	err = c.rpcs[0].Call(context.Background(), c.hosts[1].ID(), "Test.Big", 2<<20, nil)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "frame too large") {
		t.Fatalf("oversized reply: %v", err)
	}
	serverStillServes(t, c)
}

func TestGarbageDoesNotHurtServer(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll, ReadTimeout: 100 * time.Millisecond})
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]byte{
		"value as request":  appendFrame(nil, frameValue, []byte("jnull")),
		"bad method name":   appendFrame(nil, frameUnary, []byte{0xff}),
		"bad argument":      appendFrame(nil, frameUnary, appendRequest(nil, "Test.Echo", []byte("j{nope"))),
		"unknown codec":     appendFrame(nil, frameUnary, appendRequest(nil, "Test.Echo", []byte("x123"))),
		"binary for json":   appendFrame(nil, frameUnary, appendRequest(nil, "Test.Echo", []byte("b\x01\x02"))),
		"bad length varint": append([]byte{frameUnary}, bytes.Repeat([]byte{0xff}, 12)...),
	}
	for i := range 20 {
		junk := make([]byte, 1+rng.IntN(300))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		cases["random "+string(rune('a'+i))] = junk
	}
	t.Run("each", func(t *testing.T) {
		for name, data := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := rawStream(t, c)
				if _, err := s.Write(data); err != nil {
					t.Fatal(err)
				}
				// Whatever it answers, the server must end the stream
				// within its read timeout.
				start := time.Now()
				_, _ = io.ReadAll(s)
				if d := time.Since(start); d > 3*time.Second {
					t.Fatalf("the server kept the stream open for %s", d)
				}
			})
		}
	})
	t.Run("bad argument answer", func(t *testing.T) {
		s := rawStream(t, c)
		if _, err := s.Write(cases["bad argument"]); err != nil {
			t.Fatal(err)
		}
		readRefusal(t, s, codeBadRequest, "Test.Echo: argument")
	})
	t.Run("silent after half a frame", func(t *testing.T) {
		s := rawStream(t, c)
		if _, err := s.Write([]byte{frameUnary, 50, 1}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _ = io.ReadAll(s)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("a silent caller held the stream for %s", d)
		}
	})
	serverStillServes(t, c)
}
