package ipfsconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
)

// newConnector returns a Connector to addr, closed at the end of the test.
func newConnector(t testing.TB, addr string, edit ...func(*Config)) *Connector {
	t.Helper()
	cfg := Config{NodeMultiaddress: addr}
	for _, e := range edit {
		e(&cfg)
	}
	c, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ctxTimeout is a test context bounded so that a hang fails the test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// putBlock stores a fresh random raw block in kubo, unpinned.
func putBlock(t testing.TB, c *Connector) api.Cid {
	t.Helper()
	ci, err := c.BlockPut(ctxTimeout(t, 10*time.Second), randomBytes(t, 64), "raw", "sha2-256")
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// randomPeer is a peer ID nobody has.
func randomPeer(t testing.TB) peer.ID {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// missingCid is the CID of random bytes that no kubo has: with routing off,
// pinning it waits forever.
func missingCid(t testing.TB) api.Cid {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x12 /* sha2-256 */, MhLength: -1}.Sum(randomBytes(t, 32))
	if err != nil {
		t.Fatal(err)
	}
	return api.NewCid(c)
}

// addTree adds, unpinned, a directory holding top.txt and sub/leaf.txt with
// fresh content, and returns the CIDs of the root and of the leaf file.
func addTree(t testing.TB, d *kubo.Daemon) (root, leaf api.Cid) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range []struct {
		name string
		size int // -1 for a directory
	}{{"tree", -1}, {"tree/sub", -1}, {"tree/sub/leaf.txt", 300 << 10}, {"tree/top.txt", 100}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, url.PathEscape(f.name)))
		h.Set("Content-Type", "application/octet-stream")
		if f.size < 0 {
			h.Set("Content-Type", "application/x-directory")
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if f.size > 0 {
			w.Write(randomBytes(t, f.size))
		}
	}
	mw.Close()
	out := kuboRPC(t, d, "add?pin=false", &body, mw.FormDataContentType())
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var line struct{ Name, Hash string }
		if err := dec.Decode(&line); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		c, err := api.DecodeCid(line.Hash)
		if err != nil {
			t.Fatal(err)
		}
		switch line.Name {
		case "tree":
			root = c
		case "tree/sub/leaf.txt":
			leaf = c
		}
	}
	if !root.Defined() || !leaf.Defined() {
		t.Fatalf("add did not report the root and the leaf: %s", out)
	}
	return root, leaf
}

// kuboRPC calls kubo directly, bypassing the Connector, and returns the
// body of its 200 reply.
func kuboRPC(t testing.TB, d *kubo.Daemon, pathAndQuery string, body io.Reader, contentType string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxTimeout(t, time.Minute), http.MethodPost, d.APIURL+"/api/v0/"+pathAndQuery, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s: %s", pathAndQuery, resp.Status, out)
	}
	return out
}

// pinBlocks stores n fresh raw blocks in kubo and pins each recursively,
// a thousand per block/put request.
func pinBlocks(t testing.TB, d *kubo.Daemon, n int) {
	t.Helper()
	const batch = 1000
	for done := 0; done < n; done += batch {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		for i := done; i < min(n, done+batch); i++ {
			w, err := mw.CreateFormFile("file", "block")
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(w, "benchmark block %d %x", i, randomBytes(t, 8))
		}
		mw.Close()
		kuboRPC(t, d, "block/put?pin=true", &body, mw.FormDataContentType())
	}
}

// fault is what the faultProxy does with a request.
type fault int

const (
	forward   fault = iota // pass it to kubo
	fail500                // answer 500 with a kubo-style error
	stall                  // never answer, until the client gives up
	hangup                 // close the connection without answering
	cutStream              // forward, but cut the reply after its first line
	trailer                // answer 200 with one line and an X-Stream-Error trailer
	webPage                // answer 200 with HTML, as a web server would
	truncated              // answer 200 with a complete reply of JSON that ends early
	errorPage              // answer 502 with a long HTML page, as a broken reverse proxy would
)

// page is the HTML the webPage and errorPage faults answer with.
var page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\t\x00\n" +
	"<center><h1>502 Bad Gateway</h1></center>\n" + "<!-- padding -->" + strings.Repeat(" x", 200) + "\n</body></html>\n"

// faultProxy is a reverse proxy in front of a real kubo that injects
// failures per endpoint and records the calls it sees.
type faultProxy struct {
	t         testing.TB
	srv       *httptest.Server
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	done      chan struct{} // closed at cleanup: releases stalled requests

	mu       sync.Mutex
	faults   map[string]fault
	calls    []string
	inFlight int
	maxIn    int
	conns    int // connections accepted
}

// startProxy starts a faultProxy to kuboURL on listener l (a loopback TCP
// listener when nil).
func startProxy(t testing.TB, kuboURL string, l net.Listener) *faultProxy {
	t.Helper()
	u, err := url.Parse(kuboURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, faults: map[string]fault{}, done: make(chan struct{})}
	p.transport = &http.Transport{}
	p.proxy = httputil.NewSingleHostReverseProxy(u)
	p.proxy.Transport = p.transport
	p.proxy.FlushInterval = -1 // stream replies as kubo writes them
	// Clients giving up are part of the tests: no logging, just a 502.
	p.proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		w.WriteHeader(http.StatusBadGateway)
	}
	p.srv = httptest.NewUnstartedServer(kubotest.FullDuplex(http.HandlerFunc(p.serve)))
	p.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			p.mu.Lock()
			p.conns++
			p.mu.Unlock()
		}
	}
	if l != nil {
		p.srv.Listener.Close()
		p.srv.Listener = l
	}
	p.srv.Start()
	t.Cleanup(func() {
		close(p.done)
		p.srv.Close()
	})
	return p
}

// addr is the proxy's multiaddress.
func (p *faultProxy) addr() string {
	a := p.srv.Listener.Addr()
	if a.Network() == "unix" {
		return "/unix" + a.String()
	}
	return "/ip4/127.0.0.1/tcp/" + strconv.Itoa(a.(*net.TCPAddr).Port)
}

func (p *faultProxy) set(endpoint string, f fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[endpoint] = f
}

// seen returns the endpoints called so far and forgets them.
func (p *faultProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	calls := p.calls
	p.calls = nil
	return calls
}

func (p *faultProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

func (p *faultProxy) inFlightNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight
}

// closeIdle closes the proxy's idle connections, on both sides.
func (p *faultProxy) closeIdle() {
	p.transport.CloseIdleConnections()
	p.srv.CloseClientConnections()
}

func (p *faultProxy) maxInFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxIn
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	endpoint := strings.TrimPrefix(r.URL.Path, "/api/v0/")
	p.mu.Lock()
	f := p.faults[endpoint]
	p.calls = append(p.calls, endpoint)
	p.inFlight++
	p.maxIn = max(p.maxIn, p.inFlight)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
	}()

	switch f {
	case forward:
		p.proxy.ServeHTTP(w, r)
	case fail500:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"Message":"injected failure","Code":0,"Type":"error"}`)
	case stall:
		select {
		case <-r.Context().Done():
		case <-p.done:
		}
	case hangup:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			p.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	case cutStream:
		p.proxy.ServeHTTP(cutWriter{w}, r)
	case trailer:
		w.Header().Set("Trailer", "X-Stream-Error")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"Cid":"bafkreihuj2cudhombbdjn6uvlt5kort7bcda2haisrs5l3qgeq4ypdrnhy","Type":"recursive"}`)
		http.NewResponseController(w).Flush()
		w.Header().Set("X-Stream-Error", "injected stream failure")
	case webPage:
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, page)
	case truncated:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ID":"12D3KooW`)
	case errorPage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, page)
	}
}

// cutWriter passes the first line of a reply and then aborts it, as a daemon
// crashing mid-stream would.
type cutWriter struct{ http.ResponseWriter }

func (w cutWriter) Write(b []byte) (int, error) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		w.ResponseWriter.Write(b[:i+1])
		w.Flush()
		panic(http.ErrAbortHandler)
	}
	return w.ResponseWriter.Write(b)
}

func (w cutWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// waitFor polls cond for up to 5s and fails the test if it never holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("timed out waiting for %s; goroutines:\n%s", what, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
