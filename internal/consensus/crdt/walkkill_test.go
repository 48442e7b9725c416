package crdt

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

// The walking child: a peer that catches up from another one and kills
// itself (SIGKILL) when it is given a chosen pin to apply, that is, while
// go-ds-crdt walks down the branch that holds it.
const (
	walkChildDirEnv     = "CRDT_TEST_WALK_CHILD_DIR"
	walkChildKeyEnv     = "CRDT_TEST_WALK_CHILD_KEY"
	walkChildPeerEnv    = "CRDT_TEST_WALK_CHILD_PEER"
	walkChildTriggerEnv = "CRDT_TEST_WALK_CHILD_TRIGGER"
)

// killingApplier kills the process when it is given the trigger pin.
type killingApplier struct {
	*testApplier
	trigger string
}

func (a *killingApplier) ApplyPin(p api.Pin) error {
	if p.Cid.String() == a.trigger {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return a.testApplier.ApplyPin(p)
}

// runWalkChild runs the walking child on dir, with the identity and the
// peer to connect to that the parent gave.
func runWalkChild(dir string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "walk child:", err)
		return 1
	}
	raw, err := hex.DecodeString(os.Getenv(walkChildKeyEnv))
	if err != nil {
		return fail(err)
	}
	key, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return fail(err)
	}
	other, err := peer.AddrInfoFromString(os.Getenv(walkChildPeerEnv))
	if err != nil {
		return fail(err)
	}
	_, h, err := startChildPeer(dir, key, testConfig(), func(db *state.DB) Applier {
		return &killingApplier{testApplier: newTestApplier(db), trigger: os.Getenv(walkChildTriggerEnv)}
	})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, *other); err != nil {
		return fail(err)
	}
	time.Sleep(30 * time.Second)
	return fail(errors.New("not killed: the walk never reached the trigger pin"))
}

// TestKillMidWalkCatchesUp: peer A is down while B commits a chain of 400
// deltas. A comes back, walks the chain from B's head, newest first, and
// is killed (SIGKILL) halfway down: the newest 299 nodes are merged and
// marked processed, the oldest 101 are not, and A's heads are still the
// ones from before the chain. Restarted, A must end up with every pin of
// B.
func TestKillMidWalkCatchesUp(t *testing.T) {
	cfg := testConfig()
	b := newTestPeer(t, "B", cfg)
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &testPeer{t: t, name: "A", dir: t.TempDir(), key: key, cfg: cfg}
	a.start()
	t.Cleanup(a.stop)
	connect(t, a, b)

	// Take the block of chain[100] away from B, so that A's walk waits
	// there, with chain[399..101] merged, until A kills itself on
	// applying chain[101]: a kill in the middle of the walk, made
	// deterministic.
	want, chain, gap := chainWithGap(t, a, b, 400, 100)
	rawKey, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: b.id(), Addrs: b.h.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		walkChildDirEnv+"="+a.dir,
		walkChildKeyEnv+"="+hex.EncodeToString(rawKey),
		walkChildPeerEnv+"="+addrs[0].String(),
		walkChildTriggerEnv+"="+chain[101].Cid.String(),
	)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("the walking child exited without being killed")
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the walking child did not die of SIGKILL: %v", cmd.ProcessState)
	}
	// B has the whole chain again.
	if err := b.c.bserv.Blockstore().Put(t.Context(), gap); err != nil {
		t.Fatal(err)
	}

	a.start()
	connect(t, a, b)
	waitHoldsAll(t, a, want, "restarted after a kill -9 in the middle of a walk")
}

// chainNode returns the block depth links below p's single head, on a
// DAG where each node has a single link.
func chainNode(t *testing.T, p *testPeer, depth int) blocks.Block {
	t.Helper()
	heads := p.c.crdt.InternalStats(t.Context()).Heads
	if len(heads) != 1 {
		t.Fatalf("%s has %d heads", p.name, len(heads))
	}
	c := heads[0]
	for i := 0; ; i++ {
		blk, err := p.c.bserv.Blockstore().Get(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if i == depth {
			return blk
		}
		n, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Links()) != 1 {
			t.Fatalf("node %s has %d links", c, len(n.Links()))
		}
		c = n.Links()[0].Cid
	}
}

// TestFailedWalkCatchesUp: as TestKillMidWalkCatchesUp, but A's walk is
// not killed: the fetch of chain[100]'s node times out, which marks the
// store dirty. Once the node can be fetched again, the repair and the next
// announcements must give A every pin of B.
func TestFailedWalkCatchesUp(t *testing.T) {
	cfg := testConfig()
	cfg.DAGSyncTimeout = 2 * time.Second
	b := newTestPeer(t, "B", cfg)
	a := newTestPeer(t, "A", cfg)
	connect(t, a, b)

	want, _, gap := chainWithGap(t, a, b, 200, 100)
	a.start()
	connect(t, a, b)
	waitFor(t, 20*time.Second, "A's walk fails", func() bool {
		s, err := a.c.Stats(t.Context())
		return err == nil && s.Dirty
	})
	if err := b.c.bserv.Blockstore().Put(t.Context(), gap); err != nil {
		t.Fatal(err)
	}
	waitHoldsAll(t, a, want, "after a failed walk")
}

// chainWithGap has B commit 10 pins, which A merges, then, with A stopped,
// n more, one delta each: a chain of n nodes above A's head. It removes
// from B the block of the node at depth gapAt from the chain's bottom, so
// that A's walk of the chain stops there, and returns the pins A should
// end with, the chain and the removed block.
func chainWithGap(t *testing.T, a, b *testPeer, n, gapAt int) (want []string, chain []api.Pin, gap blocks.Block) {
	t.Helper()
	var base []api.Pin
	for i := range 10 {
		base = append(base, testPin(i, "base"))
	}
	for i := range n {
		chain = append(chain, testPin(1000+i, "chain"))
	}
	logPins(t, b.c, base, 1)
	waitSamePinset(t, 10*time.Second, lines(base...), a)
	a.stop() // cleanly: A's head is B's head after base
	logPins(t, b.c, chain, 1)
	// Let gossipsub forget the announcements of the chain's nodes: its
	// gossip would hand them to A, which would walk the chain from those
	// older heads too. In the reported case minutes pass.
	time.Sleep(6 * time.Second)
	gap = chainNode(t, b, n-1-gapAt)
	if err := b.c.bserv.Blockstore().DeleteBlock(t.Context(), gap.Cid()); err != nil {
		t.Fatal(err)
	}
	return lines(append(base, chain...)...), chain, gap
}

// waitHoldsAll waits up to 15s for a's pinset and CRDT to hold want.
func waitHoldsAll(t *testing.T, a *testPeer, want []string, when string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !equal(a.pinset(), want) || !equal(a.crdtPinset(), want) {
		if time.Now().After(deadline) {
			s, _ := a.c.Stats(t.Context())
			t.Fatalf("%s, A holds %d of %d pins (%d in its CRDT); %+v", when,
				len(a.pinset()), len(want), len(a.crdtPinset()), s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
