package crdt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

// TestLateJoinerWalksALongChain gives a late joiner a history of 1,500
// deltas in one chain (one pin per commit). Through bitswap alone that is
// one round trip of at least 20 ms per delta, over 30 s; fetched in
// branches it takes a few round trips.
func TestLateJoinerWalksALongChain(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	pins := make([]api.Pin, 1500)
	for i := range pins {
		pins[i] = testPin(i, "chain")
	}
	logPins(t, a.c, pins, 1)

	d := newTestPeer(t, "D", testConfig())
	start := time.Now()
	connect(t, a, d)
	waitSamePinset(t, 12*time.Second, lines(pins...), d)
	t.Logf("late joiner received a chain of %d deltas in %s", len(pins), time.Since(start).Round(time.Millisecond))
	checkCalls(t, []*testPeer{d}, pins, 1, 0)
}

// chainOf stores a chain of n dag-pb nodes in bs, each linking to the one
// before, and returns them, the newest first.
func chainOf(t testing.TB, bs blockstore.Blockstore, n int) []blocks.Block {
	t.Helper()
	var out []blocks.Block
	var prev *merkledag.ProtoNode
	for i := range n {
		nd := merkledag.NodeWithData([]byte{byte(i), byte(i >> 8)})
		if prev != nil {
			if err := nd.AddNodeLink("prev", prev); err != nil {
				t.Fatal(err)
			}
		}
		if err := bs.Put(context.Background(), nd); err != nil {
			t.Fatal(err)
		}
		out = append([]blocks.Block{nd}, out...)
		prev = nd
	}
	return out
}

// newBranchPeer is a host that serves the branch protocol from an empty
// block store, with no fallback exchange and no candidate peers.
func newBranchPeer(t *testing.T) *branchExchange {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHost(key, &gater{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	bs := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	x := newBranchExchange(nil, bs, h, func() []peer.ID { return nil }, zerolog.Nop())
	t.Cleanup(x.close)
	return x
}

// openIdle opens n branch requests from cli to srv that never send their
// request, so each holds one of srv's serving places until it is reset.
func openIdle(t *testing.T, cli, srv *branchExchange, n int) []network.Stream {
	t.Helper()
	var out []network.Stream
	for range n {
		s, err := cli.h.NewStream(t.Context(), srv.h.ID(), branchProtocol)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{1}) // the first byte opens the stream on the server
		out = append(out, s)
	}
	waitFor(t, 5*time.Second, "the server serves the idle requests", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.serving) == n
	})
	return out
}

// TestBranchFetchGrowsAndStops asks for a chain of 300 nodes: the first
// fetch brings branchMinBlocks of them, the next ones twice as many each
// time, and every block stored is the server's.
func TestBranchFetchGrowsAndStops(t *testing.T) {
	srv := newBranchPeer(t)
	cli := newBranchPeer(t)
	connectHosts(t, cli, srv)
	nodes := chainOf(t, srv.bstore, 300)

	got, err := cli.askBranch(t.Context(), srv.h.ID(), nodes[0].Cid(), branchMinBlocks, nil)
	if err != nil || len(got) != branchMinBlocks {
		t.Fatalf("askBranch: %d blocks, %v; want %d", len(got), err, branchMinBlocks)
	}
	for i, b := range got {
		if !b.Cid().Equals(nodes[i].Cid()) {
			t.Fatalf("block %d is %s, want %s", i, b.Cid(), nodes[i].Cid())
		}
	}
	cli.peers = func() []peer.ID { return []peer.ID{srv.h.ID()} }
	fetches := 0
	for c := nodes[0].Cid(); ; fetches++ {
		b := cli.fetchBranch(t.Context(), c)
		if b == nil || !b.Cid().Equals(c) {
			t.Fatalf("fetch %d of %s: %v", fetches, c, b)
		}
		last := nodes[len(nodes)-1].Cid()
		if ok, _ := cli.bstore.Has(t.Context(), last); ok {
			break
		}
		// Walk on from the deepest block stored.
		for i := len(nodes) - 1; i >= 0; i-- {
			if ok, _ := cli.bstore.Has(t.Context(), nodes[i].Cid()); ok {
				c = nodes[i+1].Cid()
				break
			}
		}
	}
	// 64 + 128 + 256 >= 300.
	if fetches != 2 {
		t.Fatalf("%d more fetches after the first, want 2", fetches)
	}
	if w := cli.want.Load(); w != branchMinBlocks {
		t.Fatalf("after the end of the chain the next fetch asks for %d, want %d", w, branchMinBlocks)
	}
	if b := cli.fetchBranch(t.Context(), merkledag.NodeWithData([]byte("nowhere")).Cid()); b != nil {
		t.Fatal("fetched a block no peer has")
	}
}

// TestBranchStopsAtHeads checks that a fetch brings the nodes above the
// asking peer's heads and none at or below them: a peer that missed an
// announcement receives what it lacks, not the history behind it.
func TestBranchStopsAtHeads(t *testing.T) {
	srv := newBranchPeer(t)
	cli := newBranchPeer(t)
	connectHosts(t, cli, srv)
	nodes := chainOf(t, srv.bstore, 100)
	if err := cli.bstore.PutMany(t.Context(), nodes[10:]); err != nil {
		t.Fatal(err)
	}
	cli.peers = func() []peer.ID { return []peer.ID{srv.h.ID()} }
	cli.setHeads(func() []cid.Cid { return []cid.Cid{nodes[10].Cid()} })

	got, err := cli.askBranch(t.Context(), srv.h.ID(), nodes[0].Cid(), branchMinBlocks, cli.known())
	if err != nil || len(got) != 10 {
		t.Fatalf("askBranch naming the head 10 nodes down: %d blocks, %v; want 10", len(got), err)
	}
	for i, b := range got {
		if !b.Cid().Equals(nodes[i].Cid()) {
			t.Fatalf("block %d is %s, want %s", i, b.Cid(), nodes[i].Cid())
		}
	}
	if b := cli.fetchBranch(t.Context(), nodes[0].Cid()); b == nil {
		t.Fatal("fetchBranch brought nothing")
	}
	for i, n := range nodes[:10] {
		if ok, _ := cli.bstore.Has(t.Context(), n.Cid()); !ok {
			t.Fatalf("node %d above the head is missing after the fetch", i)
		}
	}
	if w := cli.want.Load(); w != branchMinBlocks {
		t.Fatalf("after a short reply the next fetch asks for %d, want %d", w, branchMinBlocks)
	}
}

// TestBranchRequestWithoutHeads checks that a request ending after the
// requested CID, as the protocol's first form had it, still decodes.
func TestBranchRequestWithoutHeads(t *testing.T) {
	c := merkledag.NodeWithData([]byte("root")).Cid()
	short := appendBranchRequest(nil, 64, c, nil)
	short = short[:len(short)-1] // drop the zero count of heads
	limit, root, known, err := readBranchRequest(bufio.NewReader(bytes.NewReader(short)))
	if err != nil || limit != 64 || !root.Equals(c) || len(known) != 0 {
		t.Fatalf("readBranchRequest = %d, %s, %v, %v; want 64, %s, none", limit, root, known, err, c)
	}
}

// TestBranchReplyChecked serves replies that break the protocol: a block
// whose data does not match its CID, and a block the requested one does not
// link to. Neither is stored.
func TestBranchReplyChecked(t *testing.T) {
	cli := newBranchPeer(t)
	for name, reply := range map[string]func(want blocks.Block) []blocks.Block{
		"flipped byte": func(want blocks.Block) []blocks.Block {
			data := append([]byte(nil), want.RawData()...)
			data[len(data)-1] ^= 1
			b, _ := blocks.NewBlockWithCid(data, want.Cid())
			return []blocks.Block{b}
		},
		"unrelated block": func(want blocks.Block) []blocks.Block {
			return []blocks.Block{want, merkledag.NodeWithData([]byte("stranger"))}
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newBranchPeer(t)
			connectHosts(t, cli, srv)
			want := chainOf(t, srv.bstore, 1)[0]
			srv.h.SetStreamHandler(branchProtocol, func(s network.Stream) {
				defer s.Close()
				w := bufio.NewWriter(s)
				for _, b := range reply(want) {
					writeBranchBlock(w, b)
				}
				w.WriteByte(0)
				w.Flush()
			})
			got, err := cli.askBranch(t.Context(), srv.h.ID(), want.Cid(), branchMinBlocks, nil)
			if !errors.Is(err, errBranchReply) {
				t.Fatalf("err = %v, want errBranchReply", err)
			}
			cli.peers = func() []peer.ID { return []peer.ID{srv.h.ID()} }
			if b := cli.fetchBranch(t.Context(), want.Cid()); len(got) == 0 && b != nil {
				t.Fatal("a reply without the valid requested block was used")
			}
			for _, b := range reply(want) {
				if ok, _ := cli.bstore.Has(t.Context(), b.Cid()); ok && !b.Cid().Equals(want.Cid()) {
					t.Fatalf("stored %s, which the requested block does not link to", b.Cid())
				}
			}
		})
	}
}

// TestBranchStalledPeer asks a peer that never replies: the fetch gives up
// after half the time its context has, leaving the rest to other peers and
// bitswap.
func TestBranchStalledPeer(t *testing.T) {
	srv := newBranchPeer(t)
	cli := newBranchPeer(t)
	connectHosts(t, cli, srv)
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	srv.h.SetStreamHandler(branchProtocol, func(s network.Stream) {
		defer s.Reset()
		select {
		case <-stall:
		case <-time.After(time.Minute):
		}
	})
	cli.peers = func() []peer.ID { return []peer.ID{srv.h.ID()} }
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	start := time.Now()
	if b := cli.fetchBranch(ctx, merkledag.NodeWithData([]byte("stalled")).Cid()); b != nil {
		t.Fatal("a peer that sent nothing gave a block")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("gave up on a stalled peer after %s, want about 2 s", took)
	}
	if ctx.Err() != nil {
		t.Fatal("the stalled peer used up the whole context")
	}
}

// TestBranchServersBounded refuses a request while branchServers others
// are being served, and serves it once one ends.
func TestBranchServersBounded(t *testing.T) {
	srv := newBranchPeer(t)
	cli := newBranchPeer(t)
	connectHosts(t, cli, srv)
	head := chainOf(t, srv.bstore, 2)[0].Cid()
	idle := openIdle(t, cli, srv, branchServers)
	if got, err := cli.askBranch(t.Context(), srv.h.ID(), head, branchMinBlocks, nil); len(got) != 0 || err == nil {
		t.Fatalf("a busy peer answered: %d blocks, %v", len(got), err)
	}
	idle[0].Reset()
	waitFor(t, 5*time.Second, "the reset request ends", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.serving) < branchServers
	})
	if got, err := cli.askBranch(t.Context(), srv.h.ID(), head, branchMinBlocks, nil); len(got) != 2 || err != nil {
		t.Fatalf("after one request ended: %d blocks, %v; want 2", len(got), err)
	}
}

// TestBranchCloseEndsServes closes a peer while it serves requests that
// wait for their client: close ends them and returns once none runs, so
// nothing reads the block store after the consensus closed it.
func TestBranchCloseEndsServes(t *testing.T) {
	srv := newBranchPeer(t)
	cli := newBranchPeer(t)
	connectHosts(t, cli, srv)
	openIdle(t, cli, srv, 2)
	start := time.Now()
	srv.close()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("close took %s", took)
	}
	if len(srv.serving) != 0 {
		t.Fatalf("%d requests still served after close", len(srv.serving))
	}
	head := chainOf(t, srv.bstore, 1)[0].Cid()
	if got, err := cli.askBranch(t.Context(), srv.h.ID(), head, branchMinBlocks, nil); len(got) != 0 || err == nil {
		t.Fatalf("a closed peer answered: %d blocks, %v", len(got), err)
	}
}

func connectHosts(t *testing.T, a, b *branchExchange) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// FuzzBranchReply feeds arbitrary bytes as the reply to a request for the
// head of a three-node chain: reading must never panic, and every block it
// returns must match its CID, the first being the head and each other one
// linked from a block before it.
func FuzzBranchReply(f *testing.F) {
	bs := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	nodes := chainOf(f, bs, 3)
	var good bytes.Buffer
	w := bufio.NewWriter(&good)
	for _, b := range nodes {
		writeBranchBlock(w, b)
	}
	w.WriteByte(0)
	w.Flush()
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/2])
	flipped := bytes.Clone(good.Bytes())
	flipped[len(flipped)-3] ^= 1
	f.Add(flipped)
	f.Add([]byte{0})
	f.Add([]byte{})
	head := nodes[0].Cid()
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _ := readBranch(bufio.NewReader(bytes.NewReader(data)), head, 8)
		linked := map[cid.Cid]bool{head: true}
		for i, b := range got {
			if !linked[b.Cid()] {
				t.Fatalf("block %d (%s) is not linked from the blocks before it", i, b.Cid())
			}
			if sum, err := b.Cid().Prefix().Sum(b.RawData()); err != nil || !sum.Equals(b.Cid()) {
				t.Fatalf("block %d does not match its CID", i)
			}
			for _, l := range links(b) {
				linked[l] = true
			}
		}
		if len(got) > 9 {
			t.Fatalf("%d blocks for a limit of 8", len(got))
		}
	})
}

// FuzzBranchRequest feeds arbitrary bytes as a branch request: decoding
// must never panic, and what it accepts must hold a CID and at most
// branchMaxKnown heads, and encode to a request that decodes the same.
func FuzzBranchRequest(f *testing.F) {
	a := merkledag.NodeWithData([]byte("a")).Cid()
	b := merkledag.NodeWithData([]byte("b")).Cid()
	f.Add(appendBranchRequest(nil, 64, a, nil))
	f.Add(appendBranchRequest(nil, 4096, a, []cid.Cid{a, b}))
	f.Add(appendBranchRequest(nil, 1, b, []cid.Cid{a})[:20])
	f.Add([]byte{0x40, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	decode := func(data []byte) (uint64, cid.Cid, []cid.Cid, error) {
		return readBranchRequest(bufio.NewReader(bytes.NewReader(data)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		limit, root, known, err := decode(data)
		if err != nil {
			return
		}
		if !root.Defined() || len(known) > branchMaxKnown {
			t.Fatalf("accepted a request for %s naming %d heads", root, len(known))
		}
		limit2, root2, known2, err := decode(appendBranchRequest(nil, int(limit), root, known))
		if err != nil || limit2 != limit || !root2.Equals(root) || !slices.Equal(known2, known) {
			t.Fatalf("request %x: re-encoded, decodes as %d, %s, %v, %v", data, limit2, root2, known2, err)
		}
	})
}
