package ipfsconn

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/kubo/kubotest"
)

func recursivePin(c api.Cid) api.Pin {
	return api.PinWithOpts(c, api.PinOptions{Mode: api.PinModeRecursive})
}

func directPin(c api.Cid) api.Pin {
	return api.PinWithOpts(c, api.PinOptions{Mode: api.PinModeDirect})
}

func TestIDRepoStatConfig(t *testing.T) {
	d := kubotest.Start(t)
	c := newConnector(t, d.APIAddr)
	ctx := ctxTimeout(t, 10*time.Second)

	id, err := c.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.ID != d.PeerID || len(id.Addresses) != 1 || !strings.HasPrefix(id.Addresses[0].String(), d.SwarmAddrs[0]) {
		t.Fatalf("ID = %+v, want %s at %s", id, d.PeerID, d.SwarmAddrs)
	}

	st, err := c.RepoStat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.StorageMax != 10_000_000_000 || st.RepoSize == 0 {
		t.Fatalf("RepoStat = %+v, want StorageMax 10GB and a non-zero size", st)
	}

	v, err := c.ConfigKey(ctx, "Datastore/StorageMax")
	if err != nil || v != "10GB" {
		t.Fatalf("ConfigKey(Datastore/StorageMax) = %v, %v; want 10GB", v, err)
	}
	if v, err := c.ConfigKey(ctx, "Datastore/NoSuchKey"); err == nil {
		t.Fatalf("ConfigKey of a missing key = %v, want an error", v)
	}
}

// TestConnectionReuse checks that sequential calls share one connection:
// replies are read to their end so the transport can reuse it.
func TestConnectionReuse(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	c := newConnector(t, p.addr())
	ctx := ctxTimeout(t, 10*time.Second)
	pin := directPin(putBlock(t, c))
	for range 5 {
		if _, err := c.ID(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Pin(ctx, pin, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PinLsCid(ctx, pin); err != nil {
			t.Fatal(err)
		}
		if err := c.PinLs(ctx, PinTypePinned, func(api.IPFSPinInfo) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RepoStat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.connections(); n != 1 {
		t.Fatalf("%d connections for sequential calls, want 1", n)
	}
}

func TestPinRecursiveAndDirect(t *testing.T) {
	d := kubotest.Start(t)
	c := newConnector(t, d.APIAddr)
	ctx := ctxTimeout(t, 20*time.Second)
	root, _ := addTree(t, d)
	block := putBlock(t, c)

	var mu sync.Mutex
	var progress []uint64
	err := c.Pin(ctx, recursivePin(root), func(n uint64) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) == 0 || !slices.IsSorted(progress) {
		t.Errorf("progress reports = %v, want a growing block count", progress)
	}
	if err := c.Pin(ctx, directPin(block), nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		pin  api.Pin
		want api.IPFSPinStatus
	}{
		{recursivePin(root), api.IPFSPinStatusRecursive},
		{directPin(block), api.IPFSPinStatusDirect},
		{recursivePin(block), api.IPFSPinStatusUnpinned}, // pinned, but not in that mode
	} {
		got, err := c.PinLsCid(ctx, tc.pin)
		if err != nil || got != tc.want {
			t.Errorf("PinLsCid(%s, %s) = %q, %v; want %q", tc.pin.Cid, kuboMode(tc.pin), got, err, tc.want)
		}
	}
	if out := string(kuboRPC(t, d, "pin/ls?type=direct&stream=true", nil, "")); !strings.Contains(out, `"Cid":"`+block.String()+`","Type":"direct"`) {
		t.Fatalf("kubo's direct pins = %s, want %s", out, block)
	}

	got := map[string]api.IPFSPinStatus{}
	err = c.PinLs(ctx, PinTypePinned, func(p api.IPFSPinInfo) error {
		got[p.Cid.String()] = p.Type
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got[root.String()] != api.IPFSPinStatusRecursive || got[block.String()] != api.IPFSPinStatusDirect {
		t.Fatalf("PinLs(%s) = %v, want %s recursive and %s direct", PinTypePinned, got, root, block)
	}
	for _, p := range got {
		if p == api.IPFSPinStatusIndirect {
			t.Fatalf("PinLs(%s) listed indirect pins: %v", PinTypePinned, got)
		}
	}

	stopErr := errors.New("stop")
	calls := 0
	err = c.PinLs(ctx, PinTypePinned, func(api.IPFSPinInfo) error { calls++; return stopErr })
	if !errors.Is(err, stopErr) || calls != 1 {
		t.Fatalf("PinLs with a failing callback = %v after %d calls, want the callback's error after 1", err, calls)
	}
	if err := c.PinLs(ctx, "recursive,bogus", func(api.IPFSPinInfo) error { return nil }); err == nil {
		t.Fatal("PinLs accepted an invalid type")
	}

	for _, ci := range []api.Cid{root, block} {
		if err := c.Unpin(ctx, ci); err != nil {
			t.Fatal(err)
		}
		if err := c.Unpin(ctx, ci); err != nil {
			t.Fatalf("Unpin of a CID no longer pinned: %v", err)
		}
	}
	if st, err := c.PinLsCid(ctx, recursivePin(root)); err != nil || st != api.IPFSPinStatusUnpinned {
		t.Fatalf("after Unpin: PinLsCid = %q, %v", st, err)
	}
}

func TestPinFastPathAndUpdate(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	c := newConnector(t, p.addr())
	ctx := ctxTimeout(t, 20*time.Second)
	from, _ := addTree(t, d)
	to, _ := addTree(t, d)

	if err := c.Pin(ctx, recursivePin(from), nil); err != nil {
		t.Fatal(err)
	}
	if got := p.seen(); !slices.Equal(got, []string{"pin/ls", "pin/add"}) {
		t.Fatalf("first Pin called %v", got)
	}
	if err := c.Pin(ctx, recursivePin(from), nil); err != nil {
		t.Fatal(err)
	}
	if got := p.seen(); !slices.Equal(got, []string{"pin/ls"}) {
		t.Fatalf("Pin of a pinned CID called %v, want only pin/ls", got)
	}

	upd := recursivePin(to)
	upd.PinUpdate = from
	if err := c.Pin(ctx, upd, nil); err != nil {
		t.Fatal(err)
	}
	if got := p.seen(); !slices.Equal(got, []string{"pin/ls", "pin/ls", "pin/update"}) {
		t.Fatalf("Pin with PinUpdate called %v, want pin/update", got)
	}
	for _, ci := range []api.Cid{from, to} {
		if st, err := c.PinLsCid(ctx, recursivePin(ci)); err != nil || st != api.IPFSPinStatusRecursive {
			t.Fatalf("after update, %s is %q (%v), want recursive: the old pin is kept", ci, st, err)
		}
	}

	p.seen()

	// PinUpdate from a CID kubo does not pin falls back to pin/add.
	other, _ := addTree(t, d)
	upd = recursivePin(other)
	upd.PinUpdate = missingCid(t)
	if err := c.Pin(ctx, upd, nil); err != nil {
		t.Fatal(err)
	}
	if got := p.seen(); !slices.Equal(got, []string{"pin/ls", "pin/ls", "pin/add"}) {
		t.Fatalf("Pin with an unpinned PinUpdate called %v, want pin/add", got)
	}

	// So does a failed pin/update.
	p.set("pin/update", fail500)
	other, _ = addTree(t, d)
	upd = recursivePin(other)
	upd.PinUpdate = from
	if err := c.Pin(ctx, upd, nil); err != nil {
		t.Fatal(err)
	}
	if got := p.seen(); !slices.Equal(got, []string{"pin/ls", "pin/ls", "pin/update", "pin/add"}) {
		t.Fatalf("Pin with a failing pin/update called %v, want pin/add after it", got)
	}
}

func TestPinStalls(t *testing.T) {
	d := kubotest.Start(t)
	c := newConnector(t, d.APIAddr, func(cfg *Config) { cfg.PinTimeout = time.Second })
	ctx := ctxTimeout(t, 20*time.Second)

	var wg sync.WaitGroup
	for _, pin := range []api.Pin{recursivePin(missingCid(t)), directPin(missingCid(t))} {
		wg.Go(func() {
			start := time.Now()
			err := c.Pin(ctx, pin, nil)
			took := time.Since(start)
			want := "pin " + pin.Cid.String() + ": no progress for 1s"
			if !errors.Is(err, ErrPinStalled) || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Pin(%s) = %v, want an error starting %q", kuboMode(pin), err, want)
			}
			if took > 5*time.Second {
				t.Errorf("stalled Pin took %s with pin_timeout 1s", took)
			}
			if st, err := c.PinLsCid(ctx, pin); err != nil || st != api.IPFSPinStatusUnpinned {
				t.Errorf("after a stalled pin: %q, %v", st, err)
			}
		})
	}
	wg.Wait()
}

func TestPinCancelledByCaller(t *testing.T) {
	d := kubotest.Start(t)
	c := newConnector(t, d.APIAddr)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Pin(ctx, recursivePin(missingCid(t)), nil)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPinStalled) {
		t.Fatalf("Pin = %v, want the caller's deadline", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("cancelled Pin returned after %s", took)
	}
}

func TestPinFromOrigins(t *testing.T) {
	a, b := kubotest.Start(t), kubotest.Start(t)
	ca, cb := newConnector(t, a.APIAddr), newConnector(t, b.APIAddr)
	ctx := ctxTimeout(t, 20*time.Second)
	root, _ := addTree(t, a)

	// b has no routing: it finds the content only because Pin connects it
	// to the origin.
	origin, err := api.NewMultiaddr(a.SwarmAddrs[0] + "/p2p/" + a.PeerID.String())
	if err != nil {
		t.Fatal(err)
	}
	unreachable, err := api.NewMultiaddr("/ip4/127.0.0.1/tcp/1/p2p/" + randomPeer(t).String())
	if err != nil {
		t.Fatal(err)
	}
	pin := recursivePin(root)
	pin.Origins = []api.Multiaddr{unreachable, origin}
	if err := cb.Pin(ctx, pin, nil); err != nil {
		t.Fatal(err)
	}
	peers, err := cb.SwarmPeers(ctx)
	if err != nil || !slices.Contains(peers, a.PeerID) {
		t.Fatalf("b's peers = %v, %v; want %s", peers, err, a.PeerID)
	}
	peers, err = ca.SwarmPeers(ctx)
	if err != nil || !slices.Contains(peers, b.PeerID) {
		t.Fatalf("a's peers = %v, %v; want %s", peers, err, b.PeerID)
	}
}

func TestSwarmConnect(t *testing.T) {
	a, b := kubotest.Start(t), kubotest.Start(t)
	c := newConnector(t, a.APIAddr)
	ctx := ctxTimeout(t, 20*time.Second)
	peers, err := c.SwarmPeers(ctx)
	if err != nil || len(peers) != 0 {
		t.Fatalf("SwarmPeers before connecting = %v, %v", peers, err)
	}
	good, _ := api.NewMultiaddr(b.SwarmAddrs[0] + "/p2p/" + b.PeerID.String())
	bad, _ := api.NewMultiaddr("/ip4/127.0.0.1/tcp/1/p2p/" + randomPeer(t).String())
	err = c.SwarmConnect(ctx, []api.Multiaddr{bad, good})
	if err == nil || !strings.Contains(err.Error(), "/tcp/1/") || strings.Contains(err.Error(), b.SwarmAddrs[0]) {
		t.Fatalf("SwarmConnect = %v, want an error about the bad address only", err)
	}
	peers, err = c.SwarmPeers(ctx)
	if err != nil || !slices.Equal(peers, []peer.ID{b.PeerID}) {
		t.Fatalf("SwarmPeers = %v, %v; want %s", peers, err, b.PeerID)
	}
}

func TestResolve(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	c := newConnector(t, p.addr())
	ctx := ctxTimeout(t, 10*time.Second)
	root, leaf := addTree(t, d)

	for _, path := range []string{root.String(), "/ipfs/" + root.String(), "/ipfs/" + root.String() + "/"} {
		got, err := c.Resolve(ctx, path)
		if err != nil || got != root {
			t.Errorf("Resolve(%s) = %s, %v; want %s", path, got, err, root)
		}
	}
	if calls := p.seen(); len(calls) != 0 {
		t.Fatalf("resolving plain CIDs called kubo: %v", calls)
	}
	got, err := c.Resolve(ctx, "/ipfs/"+root.String()+"/sub/leaf.txt")
	if err != nil || got != leaf {
		t.Fatalf("Resolve(sub path) = %s, %v; want the leaf %s", got, err, leaf)
	}
	if _, err := c.Resolve(ctx, "/ipfs/"+root.String()+"/nope"); err == nil || !strings.Contains(err.Error(), `no link named "nope"`) {
		t.Fatalf("Resolve(missing link) = %v, want kubo's error", err)
	}
	if _, err := c.Resolve(ctx, "not-a-cid"); err == nil {
		t.Fatal("Resolve(not-a-cid) succeeded")
	}
}

func TestBlockPutAndRepoGC(t *testing.T) {
	d := kubotest.Start(t)
	c := newConnector(t, d.APIAddr)
	ctx := ctxTimeout(t, 20*time.Second)

	data := randomBytes(t, 100)
	for _, tc := range []struct {
		codec, mh string
		wantCodec uint64
		wantMh    uint64
	}{
		{"", "", 0x55, 0x12},
		{"raw", "sha2-512", 0x55, 0x13},
		{"dag-cbor", "sha2-256", 0x71, 0x12},
	} {
		block := data
		if tc.codec == "dag-cbor" {
			block = []byte{0xa1, 0x61, 0x61, 0x01} // {"a": 1}
		}
		ci, err := c.BlockPut(ctx, block, tc.codec, tc.mh)
		if err != nil {
			t.Fatalf("BlockPut(%q, %q): %v", tc.codec, tc.mh, err)
		}
		if pre := ci.Prefix(); pre.Codec != tc.wantCodec || pre.MhType != tc.wantMh {
			t.Errorf("BlockPut(%q, %q) = %s with codec %#x hash %#x", tc.codec, tc.mh, ci, pre.Codec, pre.MhType)
		}
		if got := kuboRPC(t, d, "block/get?arg="+ci.String(), nil, ""); !bytes.Equal(got, block) {
			t.Errorf("block get %s = %q, want %q", ci, got, block)
		}
	}
	if _, err := c.BlockPut(ctx, data, "no-such-codec", ""); err == nil {
		t.Error("BlockPut with an unknown codec succeeded")
	}

	garbage := putBlock(t, c)
	kept := putBlock(t, c)
	if err := c.Pin(ctx, directPin(kept), nil); err != nil {
		t.Fatal(err)
	}
	var collected []string
	err := c.RepoGC(ctx, func(gc api.IPFSRepoGC) error {
		if gc.Error != "" {
			t.Errorf("gc error: %s", gc.Error)
		}
		collected = append(collected, gc.Key.String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(collected, garbage.String()) || slices.Contains(collected, kept.String()) {
		t.Fatalf("gc collected %v, want %s and not the pinned %s", collected, garbage, kept)
	}
}

func TestKuboStopped(t *testing.T) {
	d := kubotest.Start(t)
	c := newConnector(t, d.APIAddr)
	ctx := ctxTimeout(t, 20*time.Second)
	if _, err := c.ID(ctx); err != nil {
		t.Fatal(err)
	}
	d.Kill()

	calls := map[string]func() error{
		"ID":      func() error { _, err := c.ID(ctx); return err },
		"Pin":     func() error { return c.Pin(ctx, recursivePin(missingCid(t)), nil) },
		"Unpin":   func() error { return c.Unpin(ctx, missingCid(t)) },
		"PinLs":   func() error { return c.PinLs(ctx, PinTypePinned, func(api.IPFSPinInfo) error { return nil }) },
		"RepoGC":  func() error { return c.RepoGC(ctx, func(api.IPFSRepoGC) error { return nil }) },
		"Resolve": func() error { _, err := c.Resolve(ctx, "/ipfs/"+missingCid(t).String()+"/a"); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "is kubo running at "+d.APIAddr) {
			t.Errorf("%s with kubo down = %v, want ErrUnreachable naming %s", name, err, d.APIAddr)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s with kubo down took %s", name, took)
		}
	}

	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ID(ctx); err != nil {
		t.Fatalf("ID after kubo restarted: %v", err)
	}
}

func TestFaults(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	c := newConnector(t, p.addr())
	ctx := ctxTimeout(t, 20*time.Second)
	block := putBlock(t, c)
	if err := c.Pin(ctx, directPin(block), nil); err != nil {
		t.Fatal(err)
	}
	listAll := func(ctx context.Context) error {
		return c.PinLs(ctx, PinTypePinned, func(api.IPFSPinInfo) error { return nil })
	}

	t.Run("kubo error", func(t *testing.T) {
		p.set("repo/stat", fail500)
		_, err := c.RepoStat(ctx)
		var rerr *RPCError
		if !errors.As(err, &rerr) || rerr.StatusCode != 500 || err.Error() != "repo/stat: injected failure" {
			t.Fatalf("RepoStat = %v, want kubo's message", err)
		}
	})
	t.Run("stream error trailer", func(t *testing.T) {
		p.set("pin/ls", trailer)
		defer p.set("pin/ls", forward)
		err := listAll(ctx)
		var rerr *RPCError
		if !errors.As(err, &rerr) || rerr.Message != "injected stream failure" {
			t.Fatalf("PinLs = %v, want the trailer's error", err)
		}
	})
	t.Run("not kubo", func(t *testing.T) {
		defer p.set("id", forward)
		for f, want := range map[fault]string{
			webPage:   "id: malformed reply: invalid character '<' looking for beginning of value (is node_multiaddress " + p.addr() + " kubo's RPC API?)",
			truncated: "id: malformed reply: the JSON ends early (is node_multiaddress " + p.addr() + " kubo's RPC API?)",
			errorPage: "id: 502 Bad Gateway: <html> <head><title>502 Bad Gateway</title></head> <body> <center><h1>502 Bad Gateway</h1></center> <!-- padding -->" + strings.Repeat(" x", 42) + "…" +
				" (not kubo's RPC error: is node_multiaddress " + p.addr() + " kubo's RPC API, of a kubo that has id?)",
		} {
			p.set("id", f)
			_, err := c.ID(ctx)
			if err == nil || err.Error() != want || errors.Is(err, ErrUnreachable) {
				t.Errorf("fault %d: ID = %v\nwant %s", f, err, want)
			}
		}
	})
	t.Run("connection closed", func(t *testing.T) {
		p.set("id", hangup)
		if _, err := c.ID(ctx); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("ID = %v, want ErrUnreachable", err)
		}
	})
	t.Run("stream cut", func(t *testing.T) {
		p.set("pin/ls", cutStream)
		defer p.set("pin/ls", forward)
		if err := listAll(ctx); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("PinLs = %v, want ErrUnreachable", err)
		}
	})
	t.Run("stalled reply", func(t *testing.T) {
		p.set("swarm/peers", stall)
		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.SwarmPeers(sctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
			t.Fatalf("SwarmPeers = %v after %s, want the caller's deadline", err, time.Since(start))
		}
	})
	t.Run("request timeout", func(t *testing.T) {
		c := newConnector(t, p.addr(), func(cfg *Config) { cfg.IPFSRequestTimeout = 200 * time.Millisecond })
		p.set("swarm/peers", stall)
		_, err := c.SwarmPeers(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ipfs_request_timeout") {
			t.Fatalf("SwarmPeers = %v, want a timeout naming ipfs_request_timeout", err)
		}
	})
	t.Run("unpin disabled", func(t *testing.T) {
		c := newConnector(t, p.addr(), func(cfg *Config) { cfg.UnpinDisable = true })
		p.seen()
		if err := c.Unpin(ctx, block); err == nil || !strings.Contains(err.Error(), "unpin_disable") {
			t.Fatalf("Unpin = %v, want unpin_disable error", err)
		}
		if calls := p.seen(); len(calls) != 0 {
			t.Fatalf("disabled Unpin called kubo: %v", calls)
		}
	})
}

// TestPoolsBoundConcurrency checks that max_concurrent_requests bounds the
// requests in flight and that stalled pins do not hold up short calls.
func TestPoolsBoundConcurrency(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	c := newConnector(t, p.addr(), func(cfg *Config) { cfg.MaxConcurrentRequests = 2 })
	ctx := ctxTimeout(t, 20*time.Second)

	p.set("pin/add", stall)
	pinCtx, stopPins := context.WithCancel(ctx)
	var pins sync.WaitGroup
	for range 4 {
		pins.Go(func() { c.Pin(pinCtx, recursivePin(missingCid(t)), nil) })
	}
	waitFor(t, "2 pin/add in flight", func() bool { return p.inFlightNow() == 2 })
	// With both long slots taken by stalled pins, short calls still run.
	for range 10 {
		if _, err := c.ID(ctx); err != nil {
			t.Fatal(err)
		}
	}

	p.set("id", stall)
	idCtx, cancelIDs := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelIDs()
	var ids sync.WaitGroup
	for range 5 {
		ids.Go(func() { c.ID(idCtx) })
	}
	ids.Wait()
	stopPins()
	pins.Wait()
	// 2 stalled pin/add plus 2 stalled id; the 10 quick ids overlapped the
	// stalled pins too, so 4 is the ceiling either way.
	if got := p.maxInFlight(); got != 4 {
		t.Fatalf("at most %d requests were in flight, want 4 (2 per pool)", got)
	}
}

// TestStalledAddsDoNotHoldPins: block streams whose upload stalled hold
// every slot of their own pool, and pins still run.
func TestStalledAddsDoNotHoldPins(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	c := newConnector(t, p.addr(), func(cfg *Config) { cfg.MaxConcurrentRequests = 2 })
	ctx := ctxTimeout(t, 20*time.Second)
	_, dag := testDAG(t, 4, 1024, 0x12)
	for i := range 2 {
		s := c.BlockStream(ctx)
		if err := s.Put(ctx, dag[i]); err != nil {
			t.Fatal(err)
		}
		// Open until the test ends: no more blocks come.
		t.Cleanup(func() { s.CloseWithError(errors.New("test over")) })
	}
	waitFor(t, "2 block streams in flight", func() bool { return p.inFlightNow() == 2 })
	for range 3 {
		ci := putBlock(t, c)
		if err := c.Pin(ctx, recursivePin(ci), nil); err != nil {
			t.Fatalf("pin while the adds stall: %v", err)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	d := kubotest.Start(t)
	sock := filepath.Join(t.TempDir(), "kubo.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, d.APIURL, l)
	c := newConnector(t, p.addr())
	id, err := c.ID(ctxTimeout(t, 10*time.Second))
	if err != nil || id.ID != d.PeerID {
		t.Fatalf("ID over %s = %v, %v", p.addr(), id.ID, err)
	}
}

func TestConfig(t *testing.T) {
	c, err := New(Config{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg != DefaultConfig() || c.baseURL != "http://127.0.0.1:5001/api/v0/" {
		t.Fatalf("zero Config gave %+v at %s, want the defaults", c.cfg, c.baseURL)
	}
	for _, addr := range []string{"/dns4/localhost/tcp/5001", "/ip6/::1/tcp/5001", "/unix/tmp/kubo.sock"} {
		if _, err := New(Config{NodeMultiaddress: addr}, zerolog.Nop()); err != nil {
			t.Errorf("New(%s): %v", addr, err)
		}
	}
	for _, cfg := range []Config{
		{NodeMultiaddress: "127.0.0.1:5001"},
		{NodeMultiaddress: "/ip4/127.0.0.1/udp/5001"},
		{PinTimeout: -time.Second},
		{MaxConcurrentRequests: -1},
	} {
		if _, err := New(cfg, zerolog.Nop()); err == nil {
			t.Errorf("New(%+v) accepted an invalid config", cfg)
		}
	}
}

// TestNoGoroutineLeak runs failing and cancelled calls and checks that no
// goroutine outlives them once the connector is closed.
func TestNoGoroutineLeak(t *testing.T) {
	d := kubotest.Start(t)
	p := startProxy(t, d.APIURL, nil)
	p.set("pin/add", stall)
	p.set("repo/stat", hangup)
	p.set("pin/ls", cutStream)
	ctx := ctxTimeout(t, 20*time.Second)
	before := runtime.NumGoroutine()

	c, err := New(Config{NodeMultiaddress: p.addr(), PinTimeout: 200 * time.Millisecond}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	origin, _ := api.NewMultiaddr("/ip4/127.0.0.1/tcp/1/p2p/" + randomPeer(t).String())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			pin := recursivePin(missingCid(t))
			pin.Origins = []api.Multiaddr{origin}
			c.Pin(ctx, pin, nil)
			c.RepoStat(ctx)
			c.PinLs(ctx, PinTypePinned, func(api.IPFSPinInfo) error { return nil })
			c.ID(ctx)
		})
	}
	wg.Wait()
	c.Close()
	p.closeIdle()
	waitFor(t, "goroutines to wind down", func() bool { return runtime.NumGoroutine() <= before })
}
