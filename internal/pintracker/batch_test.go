package pintracker

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/ipfsconn"
	"ipfs-cluster/internal/kubo/kubotest"
)

// kuboProxy forwards to a real kubo, records the arguments of every
// pin/add and pin/ls and the order in which pin/add requests end and pin/rm
// requests start, and can hold pin/add requests back before forwarding
// them.
type kuboProxy struct {
	delay time.Duration

	mu     sync.Mutex
	adds   [][]string
	checks []string // the CIDs pin/ls was asked about
	events []string // "add-done <cid>..." and "rm <cid>"
}

// proxied returns a fixture tweak that puts p between the connector and
// kubo.
func (p *kuboProxy) proxied(t *testing.T) func(*Config, *ipfsconn.Config) {
	return func(_ *Config, ccfg *ipfsconn.Config) {
		m, err := ma.NewMultiaddr(ccfg.NodeMultiaddress)
		if err != nil {
			t.Fatal(err)
		}
		_, hostport, err := manet.DialArgs(m)
		if err != nil {
			t.Fatal(err)
		}
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: hostport})
		srv := httptest.NewServer(kubotest.FullDuplex(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			args := r.URL.Query()["arg"]
			switch r.URL.Path {
			case "/api/v0/pin/add":
				p.mu.Lock()
				p.adds = append(p.adds, args)
				p.mu.Unlock()
				time.Sleep(p.delay)
				rp.ServeHTTP(w, r)
				p.record(append([]string{"add-done"}, args...))
			case "/api/v0/pin/ls":
				p.mu.Lock()
				p.checks = append(p.checks, args...)
				p.mu.Unlock()
				rp.ServeHTTP(w, r)
			case "/api/v0/pin/rm":
				p.record(append([]string{"rm"}, args...))
				rp.ServeHTTP(w, r)
			default:
				rp.ServeHTTP(w, r)
			}
		})))
		t.Cleanup(srv.Close)
		host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		ccfg.NodeMultiaddress = "/ip4/" + host + "/tcp/" + port
	}
}

func (p *kuboProxy) record(e []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e...)
}

func (p *kuboProxy) checked(c api.Cid) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.checks, c.String())
}

func (p *kuboProxy) pinAdds() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.adds)
}

// TestPinsGoToKuboInBatches checks that queued pins reach kubo several to a
// pin/add, never more than maxPinBatch, and all end up pinned.
func TestPinsGoToKuboInBatches(t *testing.T) {
	p := &kuboProxy{}
	f := newFixture(t, p.proxied(t))
	cids := f.addContent(120)
	f.pinAllAndWait(cids)
	f.requireHeld(cids)
	adds := p.pinAdds()
	largest := 0
	for _, a := range adds {
		largest = max(largest, len(a))
	}
	if len(adds) > len(cids)/4 || largest > maxPinBatch {
		t.Fatalf("%d pins took %d pin/add requests of up to %d CIDs; want at most %d requests of at most %d",
			len(cids), len(adds), largest, len(cids)/4, maxPinBatch)
	}
	t.Logf("%d pins in %d pin/add requests of up to %d CIDs", len(cids), len(adds), largest)
}

// TestUnpinWaitsForTheBatch checks that the unpin of a CID whose pin is in
// a pin/add still on its way to kubo waits for that request: otherwise the
// pin/add would undo the pin/rm.
func TestUnpinWaitsForTheBatch(t *testing.T) {
	p := &kuboProxy{delay: 300 * time.Millisecond}
	f := newFixture(t, func(c *Config, cc *ipfsconn.Config) {
		c.ConcurrentPins = 1
		p.proxied(t)(c, cc)
	})
	cids := f.addContent(3)
	busy, a, b := cids[0], cids[1], cids[2]
	// The worker is busy with the first pin while the next two queue up
	// behind it, so they go to kubo together.
	f.pin(busy, nil)
	waitFor(t, "the first pin/add", func() bool { return len(p.pinAdds()) == 1 })
	pa := f.pin(a, nil)
	f.pin(b, nil)
	waitFor(t, "the pin/add of both", func() bool { return len(p.pinAdds()) == 2 })
	if got := p.pinAdds()[1]; !slices.Equal(got, []string{a.String(), b.String()}) {
		t.Fatalf("second pin/add for %v, want %s and %s together", got, a, b)
	}
	if err := f.db.Delete(a); err != nil {
		t.Fatal(err)
	}
	if err := f.tracker.Untrack(pa); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(a, api.TrackerStatusUnpinned, 10*time.Second)
	f.waitStatus(b, api.TrackerStatusPinned, 10*time.Second)
	held := f.kuboPins("recursive")
	if held[a.String()] || !held[b.String()] {
		t.Fatalf("kubo holds %s: %t (want false), %s: %t (want true)", a, held[a.String()], b, held[b.String()])
	}
	p.mu.Lock()
	events := slices.Clone(p.events)
	p.mu.Unlock()
	done := slices.Index(events, b.String()) // in "add-done a b"
	rm := slices.Index(events, "rm")
	if rm >= 0 && (done < 0 || rm < done) {
		t.Fatalf("pin/rm went to kubo before the pin/add it follows ended: %v", events)
	}
}

// TestUnfetchableDoesNotHoldItsBatch queues a CID nobody has in front of
// two that kubo has, so that they go to kubo in one pin/add that stalls:
// the two are pinned and reported PINNED while the missing one still
// waits for its own stall to end.
func TestUnfetchableDoesNotHoldItsBatch(t *testing.T) {
	const stall = 3 * time.Second
	p := &kuboProxy{delay: 300 * time.Millisecond}
	f := newFixture(t, func(c *Config, cc *ipfsconn.Config) {
		c.ConcurrentPins = 1
		cc.PinTimeout = stall
		p.proxied(t)(c, cc)
	})
	cids := f.addContent(3)
	busy, good := cids[0], cids[1:]
	missing, _ := api.DecodeCid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	f.pin(busy, nil)
	waitFor(t, "the first pin/add", func() bool { return len(p.pinAdds()) == 1 })
	f.pin(missing, nil)
	for _, c := range good {
		f.pin(c, nil)
	}
	waitFor(t, "the pin/add of the three", func() bool { return len(p.pinAdds()) == 2 })
	if got := p.pinAdds()[1]; len(got) != 3 || got[0] != missing.String() {
		t.Fatalf("second pin/add for %v, want the missing CID first with the two others", got)
	}
	start := time.Now()
	for _, c := range good {
		f.waitStatus(c, api.TrackerStatusPinned, 4*stall)
	}
	took := time.Since(start)
	pi, err := f.tracker.Status(t.Context(), missing)
	if err != nil || pi.Status != api.TrackerStatusPinning {
		t.Fatalf("when the others were pinned (%s), the missing CID was %s (%v), want still pinning", took, pi.Status, err)
	}
	f.waitStatus(missing, api.TrackerStatusPinError, 4*stall)
	t.Logf("the two pinned %s after their batch started; the missing CID failed %s after", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBatchSizer(t *testing.T) {
	b := batchSizer{size: initialPinBatch}
	for range 10 {
		b.observe(b.get(), time.Duration(b.get())*time.Millisecond)
	}
	if b.get() != maxPinBatch {
		t.Fatalf("fast batches grew to %d, want %d", b.get(), maxPinBatch)
	}
	b.observe(maxPinBatch, 10*time.Second) // one CID had to be fetched
	if b.get() != maxPinBatch/2 {
		t.Fatalf("after a slow batch: %d, want %d", b.get(), maxPinBatch/2)
	}
	for range 10 {
		b.observe(1, time.Second)
	}
	if b.get() != 1 {
		t.Fatalf("slow pins left batches of %d, want 1", b.get())
	}
	b.observe(1, time.Millisecond)
	if b.get() != 2 {
		t.Fatalf("a fast single pin left %d, want 2", b.get())
	}
}
