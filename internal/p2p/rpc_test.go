package p2p

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"ipfs-cluster/internal/api"
)

// cluster is a set of connected hosts serving the test methods.
type cluster struct {
	hosts []host.Host
	rpcs  []*RPC
}

// newCluster starts n connected hosts whose RPC endpoints trust each other
// and serve the test methods.
func newCluster(t testing.TB, n int, cfg Config) *cluster {
	t.Helper()
	c := &cluster{}
	for range n {
		h := newTestHost(t, loopbackConfig(testSecret(7)))
		r := newTestRPC(t, h, cfg)
		registerTestMethods(r)
		c.hosts = append(c.hosts, h)
		c.rpcs = append(c.rpcs, r)
	}
	for i := range c.hosts {
		for j := i + 1; j < n; j++ {
			connect(t, c.hosts[i], c.hosts[j])
		}
	}
	return c
}

// echoArg is the argument of the test methods.
type echoArg struct {
	Text  string `json:"text"`
	Count int    `json:"count"`
}

// registerTestMethods registers the methods most tests use.
func registerTestMethods(r *RPC) {
	Handle(r, "Test.Echo", Open, func(_ context.Context, from peer.ID, in echoArg) (string, error) {
		return fmt.Sprintf("%s from %s", in.Text, from), nil
	})
	Handle(r, "Test.Whoami", Open, func(context.Context, peer.ID, struct{}) (peer.ID, error) {
		return r.self, nil
	})
	Handle(r, "Test.PinRoundTrip", Trusted, func(_ context.Context, _ peer.ID, in api.Pin) (api.Pin, error) {
		in.Name += "!"
		return in, nil
	})
	Handle(r, "Test.Fail", Open, func(context.Context, peer.ID, struct{}) (struct{}, error) {
		return struct{}{}, errors.New("handler says no")
	})
	HandleStream(r, "Test.Count", Open, func(ctx context.Context, _ peer.ID, in echoArg, send func(api.PinInfo) error) error {
		pi := api.PinInfo{Name: in.Text, Peer: r.self, Allocations: []peer.ID{r.self}}
		pi.Status = api.TrackerStatusPinned
		for i := range in.Count {
			pi.Cid = cidOf(i)
			pi.AttemptCount = i
			if err := send(pi); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestCallBetweenPeers(t *testing.T) {
	c := newCluster(t, 3, Config{IsTrusted: TrustAll})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, r := range c.rpcs {
		for j, h := range c.hosts {
			var got string
			if err := r.Call(ctx, h.ID(), "Test.Echo", echoArg{Text: "hi"}, &got); err != nil {
				t.Fatalf("%d -> %d: %v", i, j, err)
			}
			if want := "hi from " + c.hosts[i].ID().String(); got != want {
				t.Fatalf("%d -> %d: got %q, want %q", i, j, got, want)
			}
			var id peer.ID
			if err := r.Call(ctx, h.ID(), "Test.Whoami", nil, &id); err != nil || id != h.ID() {
				t.Fatalf("%d -> %d: whoami = %s, %v", i, j, id, err)
			}
		}
	}
}

func TestPinTravelsInBinary(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := api.PinWithOpts(cidOf(1), api.PinOptions{Name: "pin", ReplicationFactorMin: 1, ReplicationFactorMax: 2, Metadata: map[string]string{"k": "v"}})
	in.Allocations = []peer.ID{c.hosts[0].ID(), c.hosts[1].ID()}
	in.Timestamp = time.Unix(1700000000, 5).UTC()
	for _, p := range []peer.ID{c.hosts[0].ID(), c.hosts[1].ID()} {
		var out api.Pin
		if err := c.rpcs[0].Call(ctx, p, "Test.PinRoundTrip", &in, &out); err != nil {
			t.Fatal(err)
		}
		if out.Name != "pin!" || !out.Cid.Equals(in.Cid.Cid) || len(out.Allocations) != 2 || out.Metadata["k"] != "v" || !out.Timestamp.Equal(in.Timestamp) {
			t.Fatalf("round trip through %s: %+v", p, out)
		}
	}
	var enc valueEncoder
	b, err := enc.encode(&in)
	if err != nil || b[0] != codecBinary {
		t.Fatalf("a pin encodes as %q, %v; want binary", b[:1], err)
	}
}

// A call to self runs the handler directly: it works without any
// connection, for closed methods too, and passes values as they are.
func TestCallSelf(t *testing.T) {
	h := newTestHost(t, loopbackConfig(testSecret(1)))
	r := newTestRPC(t, h, Config{})
	var seen atomic.Pointer[peer.ID]
	var arg *echoArg
	Handle(r, "Test.Closed", Closed, func(_ context.Context, from peer.ID, in *echoArg) (*echoArg, error) {
		seen.Store(&from)
		arg = in
		return in, nil
	})
	HandleStream(r, "Test.Stream", Closed, func(_ context.Context, _ peer.ID, in int, send func(int) error) error {
		for i := range in {
			if err := send(i); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := context.Background()
	in := &echoArg{Text: "x"}
	var out *echoArg
	if err := r.Call(ctx, h.ID(), "Test.Closed", in, &out); err != nil {
		t.Fatal(err)
	}
	if arg != in || out != in || *seen.Load() != h.ID() {
		t.Fatalf("a call to self copied its values or lost its caller: %p %p %p", in, arg, out)
	}
	var sum int
	err := r.Stream(ctx, h.ID(), "Test.Stream", 5, func(d Decoder) error {
		var v int
		if err := d(&v); err != nil {
			return err
		}
		sum += v
		return nil
	})
	if err != nil || sum != 10 {
		t.Fatalf("stream to self: sum %d, %v", sum, err)
	}
	if n := len(h.Network().Conns()); n != 0 {
		t.Fatalf("a call to self opened %d connections", n)
	}
	var wrong string
	if err := r.Call(ctx, h.ID(), "Test.Closed", 42, &wrong); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("argument of the wrong type: %v, want ErrBadRequest", err)
	}
	if err := r.Call(ctx, h.ID(), "Test.Closed", in, &wrong); err == nil {
		t.Fatal("result into the wrong type succeeded")
	}
}

func TestAuthorization(t *testing.T) {
	var trusted sync.Map
	isTrusted := func(p peer.ID) bool { _, ok := trusted.Load(p); return ok }
	c := newCluster(t, 2, Config{IsTrusted: isTrusted})
	server, client := c.rpcs[0], c.rpcs[1]
	Handle(server, "Test.Open", Open, func(context.Context, peer.ID, struct{}) (int, error) { return 1, nil })
	Handle(server, "Test.Trusted", Trusted, func(context.Context, peer.ID, struct{}) (int, error) { return 2, nil })
	Handle(server, "Test.Closed", Closed, func(context.Context, peer.ID, struct{}) (int, error) { return 3, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp, cp := c.hosts[0].ID(), c.hosts[1].ID()

	check := func(method string, wantOK bool, reason string) {
		t.Helper()
		var v int
		err := client.Call(ctx, sp, method, nil, &v)
		if wantOK {
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			return
		}
		var re *RemoteError
		if !errors.Is(err, ErrNotAllowed) || !errors.As(err, &re) {
			t.Fatalf("%s: %v, want a remote ErrNotAllowed", method, err)
		}
		want := fmt.Sprintf("rpc: method %s not allowed for peer %s: %s", method, cp, reason)
		if re.Message != want || re.Peer != sp || re.Method != method {
			t.Fatalf("%s: %+v, want message %q", method, re, want)
		}
	}
	check("Test.Open", true, "")
	check("Test.Trusted", false, "peer is not trusted")
	check("Test.Closed", false, "closed to other peers")

	trusted.Store(cp, true)
	check("Test.Trusted", true, "")
	check("Test.Closed", false, "closed to other peers")

	trusted.Delete(cp)
	check("Test.Trusted", false, "peer is not trusted")

	// The server itself may call all of them.
	for _, m := range []string{"Test.Open", "Test.Trusted", "Test.Closed"} {
		if err := server.Call(ctx, sp, m, nil, nil); err != nil {
			t.Fatalf("local %s: %v", m, err)
		}
	}
}

func TestUnknownMethodAndWrongKind(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range []peer.ID{c.hosts[0].ID(), c.hosts[1].ID()} {
		err := c.rpcs[0].Call(ctx, p, "Cluster.Nope", nil, nil)
		if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "rpc: method Cluster.Nope not allowed for peer "+c.hosts[0].ID().String()+": unknown method") {
			t.Fatalf("unknown method on %s: %v", p, err)
		}
		if err := c.rpcs[0].Call(ctx, p, "Test.Count", echoArg{}, nil); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("Call of a stream method on %s: %v, want ErrBadRequest", p, err)
		}
		err = c.rpcs[0].Stream(ctx, p, "Test.Echo", echoArg{}, func(Decoder) error { return nil })
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("Stream of a unary method on %s: %v, want ErrBadRequest", p, err)
		}
	}
}

func TestHandlerError(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	ctx := context.Background()
	err := c.rpcs[0].Call(ctx, c.hosts[1].ID(), "Test.Fail", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "handler says no" || errors.Is(err, ErrNotAllowed) || errors.Is(err, ErrBadRequest) {
		t.Fatalf("remote handler error: %v", err)
	}
	err = c.rpcs[0].Call(ctx, c.hosts[0].ID(), "Test.Fail", nil, nil)
	if err == nil || !strings.HasSuffix(err.Error(), "handler says no") {
		t.Fatalf("local handler error: %v", err)
	}
}

// Streaming 100k statuses from another peer keeps memory flat on both
// sides (they share this process): the live heap after the last value is
// within a small margin of the live heap after the first tenth.
func TestStreamConstantMemory(t *testing.T) {
	const n = 100_000
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var base, end uint64
	got := 0
	err := c.rpcs[0].Stream(ctx, c.hosts[1].ID(), "Test.Count", echoArg{Text: "s", Count: n}, func(d Decoder) error {
		var pi api.PinInfo
		if err := d(&pi); err != nil {
			return err
		}
		if pi.AttemptCount != got || pi.Status != api.TrackerStatusPinned || !pi.Cid.Defined() {
			return fmt.Errorf("value %d: %+v", got, pi)
		}
		got++
		switch got {
		case n / 10:
			base = heap()
		case n:
			end = heap()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("received %d values, want %d", got, n)
	}
	growth := int64(end) - int64(base)
	t.Logf("live heap after %d values: %d KiB; after %d: %d KiB", n/10, base>>10, n, end>>10)
	if growth > 2<<20 {
		t.Fatalf("live heap grew by %d KiB while streaming", growth>>10)
	}
}

// The cost per streamed value does not depend on the length of the
// stream: allocations grow linearly, with no per-stream accumulation.
func TestStreamAllocationsPerValue(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	ctx := context.Background()
	perValue := func(n int) float64 {
		allocs := testing.AllocsPerRun(3, func() {
			err := c.rpcs[0].Stream(ctx, c.hosts[1].ID(), "Test.Count", echoArg{Count: n}, func(d Decoder) error {
				var pi api.PinInfo
				return d(&pi)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		return allocs / float64(n)
	}
	small, large := perValue(2_000), perValue(20_000)
	t.Logf("allocations per value (both sides): %.1f over 2k values, %.1f over 20k", small, large)
	if large > small*1.2+1 {
		t.Fatalf("allocations per value grow with the stream: %.1f -> %.1f", small, large)
	}
}

// Cancelling the caller's context, or failing its callback, stops the
// producer on the other peer through its context, even while the producer
// is not sending.
func TestStreamCancellationReachesProducer(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	stopped := make(chan error, 1)
	HandleStream(c.rpcs[1], "Test.Forever", Open, func(ctx context.Context, _ peer.ID, _ struct{}, send func(int) error) error {
		if err := send(1); err != nil {
			return err
		}
		<-ctx.Done()
		stopped <- ctx.Err()
		return ctx.Err()
	})
	HandleStream(c.rpcs[1], "Test.Firehose", Open, func(ctx context.Context, _ peer.ID, _ struct{}, send func(int) error) error {
		for i := 0; ; i++ {
			if err := send(i); err != nil {
				select {
				case <-ctx.Done():
					stopped <- ctx.Err()
				case <-time.After(5 * time.Second):
					stopped <- errors.New("send failed but the context never ended")
				}
				return err
			}
		}
	})
	server := c.hosts[1].ID()
	errStop := errors.New("enough")
	waitStopped := func(what string) {
		t.Helper()
		select {
		case err := <-stopped:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: producer ended with %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the producer never saw its context end", what)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	err := c.rpcs[0].Stream(ctx, server, "Test.Forever", nil, func(Decoder) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled stream returned %v", err)
	}
	waitStopped("context canceled")

	err = c.rpcs[0].Stream(context.Background(), server, "Test.Forever", nil, func(Decoder) error { return errStop })
	if err != errStop {
		t.Fatalf("stream returned %v, want the callback's error", err)
	}
	waitStopped("callback failed")

	n := 0
	err = c.rpcs[0].Stream(context.Background(), server, "Test.Firehose", nil, func(Decoder) error {
		if n++; n == 1000 {
			return errStop
		}
		return nil
	})
	if err != errStop {
		t.Fatalf("stream returned %v, want the callback's error", err)
	}
	waitStopped("fast producer")

	// A call to self stops the same way.
	HandleStream(c.rpcs[0], "Test.Forever", Open, func(ctx context.Context, _ peer.ID, _ struct{}, send func(int) error) error {
		if err := send(1); err != nil {
			<-ctx.Done()
			stopped <- ctx.Err()
			return err
		}
		return errors.New("send after a failed callback succeeded")
	})
	err = c.rpcs[0].Stream(context.Background(), c.hosts[0].ID(), "Test.Forever", nil, func(Decoder) error { return errStop })
	if err != errStop {
		t.Fatalf("stream to self returned %v, want the callback's error", err)
	}
	waitStopped("stream to self")
}

func TestUnaryCancellationReachesHandler(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	stopped := make(chan error, 1)
	Handle(c.rpcs[1], "Test.Block", Open, func(ctx context.Context, _ peer.ID, _ struct{}) (int, error) {
		<-ctx.Done()
		stopped <- ctx.Err()
		return 0, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.rpcs[0].Call(ctx, c.hosts[1].ID(), "Test.Block", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call returned %v, want the deadline", err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never saw its context end")
	}
}

// TestHungPeerFailsCalls: a call that waits for a reply pings the peer
// every IdleProbe. While the peer answers (a slow handler), the call goes
// on; once it does not (a hung process, here a peer whose libp2p no
// longer answers pings), the call fails within ProbeTimeout, saying so.
func TestHungPeerFailsCalls(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll, IdleProbe: 100 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond})
	server := c.hosts[1].ID()
	Handle(c.rpcs[1], "Test.Block", Open, func(ctx context.Context, _ peer.ID, _ struct{}) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	HandleStream(c.rpcs[1], "Test.Trickle", Open, func(ctx context.Context, _ peer.ID, _ struct{}, send func(int) error) error {
		if err := send(1); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
	stream := func(ctx context.Context) error {
		return c.rpcs[0].Stream(ctx, server, "Test.Trickle", nil, func(Decoder) error { return nil })
	}
	unary := func(ctx context.Context) error { return c.rpcs[0].Call(ctx, server, "Test.Block", nil, nil) }

	// Busy: the calls last until their context ends.
	for name, call := range map[string]func(context.Context) error{"stream": stream, "unary": unary} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s call to a busy peer: %v, want its deadline", name, err)
		}
	}

	// Many calls waiting at once on a busy peer share their pings: libp2p
	// allows a few ping streams per peer, and a refused one is no sign
	// of a hung peer.
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			errs <- unary(ctx)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "ping") {
			t.Fatalf("one of 12 calls to a busy peer: %v, want its deadline", err)
		}
	}

	// Hung: pings go unanswered.
	hung := make(chan struct{})
	defer close(hung)
	c.hosts[1].SetStreamHandler(ping.ID, func(s network.Stream) {
		<-hung
		s.Reset()
	})
	for name, call := range map[string]func(context.Context) error{"stream": stream, "unary": unary} {
		start := time.Now()
		err := call(t.Context())
		// The ping's own deadline, not a later error of the stream.
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer a ping within 300ms") || !strings.Contains(err.Error(), server.String()) {
			t.Fatalf("%s call to a hung peer: %v, want the failed ping", name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("%s call to a hung peer failed after %s", name, took)
		}
	}
}

func TestBusyPeer(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll, MaxStreamsPerPeer: 2})
	release := make(chan struct{})
	var running atomic.Int32
	Handle(c.rpcs[1], "Test.Hold", Open, func(ctx context.Context, _ peer.ID, _ struct{}) (int, error) {
		running.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return 1, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	server := c.hosts[1].ID()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := c.rpcs[0].Call(ctx, server, "Test.Hold", nil, nil); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, 5*time.Second, "two calls in flight", func() bool { return running.Load() == 2 })
	if err := c.rpcs[0].Call(ctx, server, "Test.Hold", nil, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("third call: %v, want ErrBusy", err)
	}
	close(release)
	wg.Wait()
	if err := c.rpcs[0].Call(ctx, server, "Test.Hold", nil, nil); err != nil {
		t.Fatalf("call after the others ended: %v", err)
	}
}

// CallAll reports an unreachable peer, and one that does not answer in
// time, as errors of their own, within the per-peer timeout.
func TestCallAllPerPeerErrors(t *testing.T) {
	c := newCluster(t, 3, Config{IsTrusted: TrustAll})
	Handle(c.rpcs[2], "Test.Slow", Open, func(ctx context.Context, _ peer.ID, _ struct{}) (peer.ID, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	for _, r := range c.rpcs[:2] {
		Handle(r, "Test.Slow", Open, func(context.Context, peer.ID, struct{}) (peer.ID, error) { return r.self, nil })
	}
	down := c.hosts[1].ID()
	c.rpcs[1].Close()
	c.hosts[1].Close()

	peers := []peer.ID{c.hosts[0].ID(), down, c.hosts[2].ID()}
	const timeout = 500 * time.Millisecond
	start := time.Now()
	replies := CallAll[peer.ID](context.Background(), c.rpcs[0], peers, "Test.Slow", nil, timeout)
	if d := time.Since(start); d > timeout+time.Second {
		t.Fatalf("CallAll took %s with a %s timeout", d, timeout)
	}
	if r := replies[0]; r.Err != nil || r.Value != peers[0] || r.Peer != peers[0] {
		t.Fatalf("self: %+v", r)
	}
	if r := replies[1]; r.Err == nil || r.Peer != down {
		t.Fatalf("peer down: %+v, want an error", r)
	}
	if r := replies[2]; !errors.Is(r.Err, context.DeadlineExceeded) || r.Peer != peers[2] {
		t.Fatalf("slow peer: %+v, want the deadline", r)
	}
}

func TestClose(t *testing.T) {
	c := newCluster(t, 2, Config{IsTrusted: TrustAll})
	entered := make(chan struct{})
	ended := make(chan error, 1)
	Handle(c.rpcs[1], "Test.Block", Open, func(ctx context.Context, _ peer.ID, _ struct{}) (int, error) {
		close(entered)
		<-ctx.Done()
		ended <- ctx.Err()
		return 0, ctx.Err()
	})
	callErr := make(chan error, 1)
	go func() { callErr <- c.rpcs[0].Call(context.Background(), c.hosts[1].ID(), "Test.Block", nil, nil) }()
	<-entered
	if err := c.rpcs[1].Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	default:
		t.Fatal("Close returned before the handler ended")
	}
	if err := <-callErr; err == nil {
		t.Fatal("a call interrupted by Close succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.rpcs[0].Call(ctx, c.hosts[1].ID(), "Test.Echo", echoArg{}, nil); err == nil {
		t.Fatal("a closed endpoint answered")
	}
	if err := c.rpcs[1].Call(ctx, c.hosts[1].ID(), "Test.Echo", echoArg{}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call from a closed endpoint: %v, want ErrClosed", err)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	r := newTestRPC(t, newTestHost(t, loopbackConfig(testSecret(1))), Config{})
	Handle(r, "Test.X", Open, func(context.Context, peer.ID, struct{}) (int, error) { return 0, nil })
	defer func() {
		if recover() == nil {
			t.Fatal("registering a method twice did not panic")
		}
	}()
	HandleStream(r, "Test.X", Open, func(context.Context, peer.ID, struct{}, func(int) error) error { return nil })
}
