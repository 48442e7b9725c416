package ipfsconn

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/kubo/kubotest"
)

// TestPinMany checks that PinMany pins what kubo lacks in one pin/add per
// mode, leaves alone what kubo holds, asks nothing before pinning what the
// caller marks unheld, and when a pin/add fails, reports each failure
// against its own CID while the other pins succeed.
func TestPinMany(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	c := newConnector(t, p.addr(), func(cfg *Config) { cfg.PinTimeout = time.Second })
	ctx := ctxTimeout(t, 60*time.Second)

	held := putBlock(t, c)
	if err := c.Pin(ctx, recursivePin(held), nil); err != nil {
		t.Fatal(err)
	}
	pins := []api.Pin{recursivePin(held)}
	for range 4 {
		pins = append(pins, recursivePin(putBlock(t, c)))
	}
	for range 2 {
		pins = append(pins, directPin(putBlock(t, c)))
	}
	p.seen()
	for i, err := range pinMany(t, c, pins, nil) {
		if err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
	}
	var adds int
	for _, e := range p.seen() {
		if e == "pin/add" {
			adds++
		}
	}
	if adds != 2 {
		t.Fatalf("%d pin/add requests for 4 recursive and 2 direct pins, want one per mode", adds)
	}
	for _, pin := range pins {
		if st, err := c.PinLsCid(ctx, pin); err != nil || st != kuboMode(pin) {
			t.Fatalf("%s is %q (%v), want %q", pin.Cid, st, err, kuboMode(pin))
		}
	}

	// Pins marked unheld go straight to pin/add. One marked by mistake,
	// which kubo holds already, is pinned all the same.
	fresh := []api.Pin{recursivePin(putBlock(t, c)), recursivePin(held), recursivePin(putBlock(t, c))}
	p.seen()
	for i, err := range pinMany(t, c, fresh, []bool{true, true, true}) {
		if err != nil {
			t.Fatalf("unheld pin %d: %v", i, err)
		}
	}
	if got := p.seen(); !slices.Equal(got, []string{"pin/add"}) {
		t.Fatalf("PinMany of unheld pins called %v, want one pin/add", got)
	}
	for _, pin := range fresh {
		if st, err := c.PinLsCid(ctx, pin); err != nil || st != api.IPFSPinStatusRecursive {
			t.Fatalf("%s is %q (%v) after an unheld pin, want recursive", pin.Cid, st, err)
		}
	}

	// A direct pin of a CID kubo pins recursively is held already; a CID
	// nobody has fails (it stalls); the others in their requests are
	// pinned, and reported before the one that stalls has failed.
	missing := missingCid(t)
	next := []api.Pin{directPin(putBlock(t, c)), directPin(held), directPin(putBlock(t, c)),
		recursivePin(putBlock(t, c)), recursivePin(missing), recursivePin(putBlock(t, c))}
	var mu sync.Mutex
	var order []api.Cid
	errs := make([]error, len(next))
	c.PinMany(ctx, next, nil, func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		errs[i] = err
		order = append(order, next[i].Cid)
	})
	if len(order) != len(next) || order[len(order)-1] != missing {
		t.Errorf("outcomes reported in the order %v, want all %d, the missing CID %s last", order, len(next), missing)
	}
	for i, err := range errs {
		switch next[i].Cid {
		case held:
			if st, _ := c.PinLsCid(ctx, next[i]); err != nil || st != api.IPFSPinStatusRecursive {
				t.Errorf("direct pin of a recursively pinned CID: %v, kubo holds it as %q; want held, recursively", err, st)
			}
		case missing:
			if !errors.Is(err, ErrPinStalled) || !strings.Contains(err.Error(), missing.String()) {
				t.Errorf("pin of a missing CID: %v, want a stall naming it", err)
			}
		default:
			if err != nil {
				t.Errorf("pin %d failed beside the failing ones: %v", i, err)
			} else if st, _ := c.PinLsCid(ctx, next[i]); st != kuboMode(next[i]) {
				t.Errorf("pin %d: kubo holds it as %q", i, st)
			}
		}
	}

	// Pins with origins or an update go on their own, as Pin does them.
	upd := recursivePin(putBlock(t, c))
	upd.PinUpdate = held
	p.seen()
	if errs := pinMany(t, c, []api.Pin{upd}, []bool{true}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got := p.seen(); !slices.Contains(got, "pin/update") {
		t.Fatalf("PinMany of a pin update called %v", got)
	}
}

// pinMany runs PinMany and returns each pin's outcome, checking that each
// was reported exactly once.
func pinMany(t testing.TB, c *Connector, pins []api.Pin, unheld []bool) []error {
	t.Helper()
	var mu sync.Mutex
	errs := make([]error, len(pins))
	calls := make([]int, len(pins))
	c.PinMany(ctxTimeout(t, 60*time.Second), pins, unheld, func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		errs[i] = err
		calls[i]++
	})
	for i, n := range calls {
		if n != 1 {
			t.Fatalf("pin %d reported %d times, want once", i, n)
		}
	}
	return errs
}
