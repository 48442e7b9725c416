package cluster_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/daemon/daemontest"
)

// A repin computed from a version that an unpin or an update of this peer
// replaced, committed after it (as another peer's sweep may), is undone:
// the acknowledged unpin and update stand.
func TestStaleRepinIsUndone(t *testing.T) {
	p := daemontest.Start(t, nil)
	cs := cids(t, p, 2)
	updated, unpinned := cs[0], cs[1]
	var old [2]api.Pin
	for i, ci := range cs {
		pin, err := p.Cluster.Pin(t.Context(), ci, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1, Name: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		old[i] = pin
	}
	if _, err := p.Cluster.Pin(t.Context(), updated, api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Cluster.Unpin(t.Context(), unpinned); err != nil {
		t.Fatal(err)
	}
	// Another peer's sweep moved the versions it still had.
	for _, pin := range old {
		pin.Moved = true
		if err := p.Consensus.LogPin(t.Context(), pin); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, "the update and the unpin restored", func() (bool, string) {
		got, err := p.Cluster.PinGet(t.Context(), updated)
		_, gone := p.Cluster.PinGet(t.Context(), unpinned)
		return err == nil && got.Name == "v2" && got.ReplicationFactorMin == -1 && gone != nil,
			fmt.Sprintf("updated: %s, unpinned still there: %t", got.Name, gone == nil)
	})
}

// With batching, a repin on the peer that committed an unpin not yet
// applied waits: the state still holds the pin, and the repin would put
// it back in the same batch. So does a second repin of a pin whose first
// repin is not applied yet.
func TestRepinWaitsForThisPeersUnpin(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, func(i int, cfg *config.Config) {
		cfg.Consensus.CRDT.Batching.MaxBatchSize = 1000
		cfg.Consensus.CRDT.Batching.MaxBatchAge = config.Duration(2 * time.Second)
	})
	a, b := peers[0], peers[1]
	ci := cids(t, a, 1)[0]
	if _, err := a.Cluster.Pin(t.Context(), ci, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1,
		UserAllocations: []peer.ID{b.Identity.ID}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the pin applied", func() (bool, string) {
		_, err := a.Cluster.PinGet(t.Context(), ci)
		return err == nil, "not in the pinset"
	})
	if _, err := a.Cluster.Unpin(t.Context(), ci); err != nil {
		t.Fatal(err)
	}
	// A sweep would move the pin away from b while the unpin waits in
	// the batch.
	if err := a.Cluster.RepinAway(t.Context(), ci, b.Identity.ID); !errors.Is(err, cluster.ErrBehind) {
		t.Fatalf("repin while the unpin waits: %v, want %v", err, cluster.ErrBehind)
	}
	waitUntil(t, 10*time.Second, "the unpin applied", func() (bool, string) {
		_, err := a.Cluster.PinGet(t.Context(), ci)
		return err != nil, "still pinned"
	})
	time.Sleep(3 * time.Second) // a batch more
	if _, err := a.Cluster.PinGet(t.Context(), ci); err == nil {
		t.Fatal("the repin brought the unpinned pin back")
	}

	// A second sweep before the first one's repin is applied leaves the
	// pin: it would move it again.
	moved := cids(t, a, 1)[0]
	if _, err := a.Cluster.Pin(t.Context(), moved, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1,
		UserAllocations: []peer.ID{b.Identity.ID}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the pin applied", func() (bool, string) {
		_, err := a.Cluster.PinGet(t.Context(), moved)
		return err == nil, "not in the pinset"
	})
	if err := a.Cluster.RepinAway(t.Context(), moved, b.Identity.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.Cluster.RepinAway(t.Context(), moved, b.Identity.ID); !errors.Is(err, cluster.ErrBehind) {
		t.Fatalf("second repin before the first is applied: %v, want %v", err, cluster.ErrBehind)
	}
	waitUntil(t, 10*time.Second, "the repin applied", func() (bool, string) {
		pin, err := a.Cluster.PinGet(t.Context(), moved)
		return err == nil && pin.Moved && len(pin.Allocations) == 1 && pin.Allocations[0] == a.Identity.ID,
			fmt.Sprintf("%v (%v)", pin.Allocations, err)
	})
	if err := a.Cluster.RepinAway(t.Context(), moved, b.Identity.ID); err != nil {
		t.Fatalf("repin once the first is applied: %v", err)
	}
}

// A sweep on a peer that has not merged another peer's update or unpin
// yet (its state still holds the version before) leaves the pin: the
// other peer says it knows a newer change, applied or still pending in
// its batch.
func TestRepinLeavesWhatAnotherPeerChanged(t *testing.T) {
	a, b := startWithBatchingPeer(t)
	cs := identityCids(t, "behind", 4)
	updated, unpinned, pendingUpdate, pendingUnpin := cs[0], cs[1], cs[2], cs[3]
	old := map[api.Cid]api.Pin{}
	for _, ci := range cs {
		pin, err := a.Cluster.Pin(t.Context(), ci, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1,
			UserAllocations: []peer.ID{b.Identity.ID}, Name: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		old[ci] = pin
	}
	waitPinset(t, 10*time.Second, b, cs)
	v2 := api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1, UserAllocations: []peer.ID{b.Identity.ID}, Name: "v2"}
	if _, err := b.Cluster.Pin(t.Context(), updated, v2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Cluster.Unpin(t.Context(), unpinned); err != nil {
		t.Fatal(err)
	}
	waitPinset(t, 10*time.Second, a, []api.Cid{updated, pendingUpdate, pendingUnpin})
	// a's state falls behind, as a peer's does that missed the changes.
	for _, ci := range []api.Cid{updated, unpinned} {
		if err := a.DB.PutApplied(old[ci]); err != nil {
			t.Fatal(err)
		}
	}
	for _, ci := range []api.Cid{updated, unpinned} {
		if err := a.Cluster.RepinAway(t.Context(), ci, b.Identity.ID); !errors.Is(err, cluster.ErrBehind) {
			t.Fatalf("repin of %s, changed on b: %v, want %v", ci, err, cluster.ErrBehind)
		}
	}
	// Changes still in b's batch count as well.
	if _, err := b.Cluster.Pin(t.Context(), pendingUpdate, v2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Cluster.Unpin(t.Context(), pendingUnpin); err != nil {
		t.Fatal(err)
	}
	for _, ci := range []api.Cid{pendingUpdate, pendingUnpin} {
		if err := a.Cluster.RepinAway(t.Context(), ci, b.Identity.ID); !errors.Is(err, cluster.ErrBehind) {
			t.Fatalf("repin of %s, changed in b's batch: %v, want %v", ci, err, cluster.ErrBehind)
		}
	}
	waitUntil(t, 10*time.Second, "b's batch applied on a", func() (bool, string) {
		pin, err := a.Cluster.PinGet(t.Context(), pendingUpdate)
		_, gone := a.Cluster.PinGet(t.Context(), pendingUnpin)
		return err == nil && pin.Name == "v2" && gone != nil, fmt.Sprintf("name %q, unpinned still there: %t", pin.Name, gone == nil)
	})
	// Nothing was moved: every pin b holds is still allocated to b alone.
	for _, ci := range []api.Cid{updated, pendingUpdate} {
		pin, err := b.Cluster.PinGet(t.Context(), ci)
		if err != nil || pin.Moved || len(pin.Allocations) != 1 || pin.Allocations[0] != b.Identity.ID {
			t.Fatalf("%s on b: %+v (%v), want v2 allocated to b", ci, pin, err)
		}
	}
}

// Two peers change a pin at about the same time, each without knowing
// the other's change (here b's waits in its batch): the later change
// stands, a pin, an update or an unpin, whichever the shared pinset
// merged last. A pin added again after an unpin stays.
func TestConcurrentChangesLaterOneStands(t *testing.T) {
	a, b := startWithBatchingPeer(t)
	cs := identityCids(t, "concurrent", 3)
	unpinned, updated, readded := cs[0], cs[1], cs[2]
	created := identityCids(t, "concurrent-new", 1)[0] // pinned new on both
	// Pinned new on both, then unpinned on a: the unpin is the latest.
	newThenUnpinned := identityCids(t, "concurrent-new-unpinned", 1)[0]
	opts := func(name string) api.PinOptions {
		return api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, Name: name}
	}
	for _, ci := range cs {
		if _, err := a.Cluster.Pin(t.Context(), ci, opts("v1")); err != nil {
			t.Fatal(err)
		}
	}
	waitPinset(t, 10*time.Second, b, cs)
	// b's updates wait in its batch; a's later unpin and update go out
	// at once.
	for _, ci := range []api.Cid{unpinned, updated, created, newThenUnpinned} {
		if _, err := b.Cluster.Pin(t.Context(), ci, opts("b")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond) // a's changes are later by the clock
	if _, err := a.Cluster.Unpin(t.Context(), unpinned); err != nil {
		t.Fatal(err)
	}
	for _, ci := range []api.Cid{updated, created, newThenUnpinned} {
		if _, err := a.Cluster.Pin(t.Context(), ci, opts("a")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Cluster.Unpin(t.Context(), newThenUnpinned); err != nil {
		t.Fatal(err)
	}
	// An unpin, then a new pin made knowing it: the pin stays.
	if _, err := a.Cluster.Unpin(t.Context(), readded); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the unpin reached b", func() (bool, string) {
		_, err := b.Cluster.PinGet(t.Context(), readded)
		return err != nil, "still pinned"
	})
	if _, err := b.Cluster.Pin(t.Context(), readded, opts("again")); err != nil {
		t.Fatal(err)
	}
	peers := []*daemontest.Peer{a, b}
	for _, p := range peers {
		waitUntil(t, 15*time.Second, p.Config.Cluster.Peername+" keeps the later changes", func() (bool, string) {
			_, gone := p.Cluster.PinGet(t.Context(), unpinned)
			up, err := p.Cluster.PinGet(t.Context(), updated)
			again, err2 := p.Cluster.PinGet(t.Context(), readded)
			both, err3 := p.Cluster.PinGet(t.Context(), created)
			_, gone2 := p.Cluster.PinGet(t.Context(), newThenUnpinned)
			return gone != nil && err == nil && up.Name == "a" && err2 == nil && again.Name == "again" && err3 == nil && both.Name == "a" && gone2 != nil,
				fmt.Sprintf("unpinned still there: %t, updated: %q (%v), added again: %q (%v), new on both: %q (%v), new then unpinned still there: %t",
					gone == nil, up.Name, err, again.Name, err2, both.Name, err3, gone2 == nil)
		})
	}
	time.Sleep(2 * time.Second) // a batch and a correction more
	for _, p := range peers {
		_, gone := p.Cluster.PinGet(t.Context(), unpinned)
		up, err := p.Cluster.PinGet(t.Context(), updated)
		again, err2 := p.Cluster.PinGet(t.Context(), readded)
		both, err3 := p.Cluster.PinGet(t.Context(), created)
		_, gone2 := p.Cluster.PinGet(t.Context(), newThenUnpinned)
		if gone == nil || err != nil || up.Name != "a" || err2 != nil || again.Name != "again" || err3 != nil || both.Name != "a" || gone2 == nil {
			t.Fatalf("%s later: unpinned still there: %t, updated: %q (%v), added again: %q (%v), new on both: %q (%v), new then unpinned still there: %t",
				p.Config.Cluster.Peername, gone == nil, up.Name, err, again.Name, err2, both.Name, err3, gone2 == nil)
		}
	}
}

// startWithBatchingPeer starts two peers; the second one's changes wait in
// its batch for 2 s.
func startWithBatchingPeer(t *testing.T) (a, b *daemontest.Peer) {
	t.Helper()
	peers := daemontest.StartCluster(t, 2, func(i int, cfg *config.Config) {
		if i == 1 {
			cfg.Consensus.CRDT.Batching.MaxBatchSize = 1000
			cfg.Consensus.CRDT.Batching.MaxBatchAge = config.Duration(2 * time.Second)
		}
	})
	return peers[0], peers[1]
}

// An unpin waiting in a batch does not take with it a pin made after it
// and merged before the batch is committed: the later pin stands.
func TestBatchedUnpinGivesWayToALaterPin(t *testing.T) {
	a, b := startWithBatchingPeer(t)
	ci := identityCids(t, "later-pin", 1)[0]
	opts := func(name string) api.PinOptions {
		return api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, Name: name}
	}
	if _, err := a.Cluster.Pin(t.Context(), ci, opts("v1")); err != nil {
		t.Fatal(err)
	}
	waitPinset(t, 10*time.Second, b, []api.Cid{ci})
	if _, err := b.Cluster.Unpin(t.Context(), ci); err != nil { // waits in b's batch
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := a.Cluster.Pin(t.Context(), ci, opts("later")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*daemontest.Peer{a, b} {
		waitUntil(t, 10*time.Second, p.Config.Cluster.Peername+" has the later pin", func() (bool, string) {
			pin, err := p.Cluster.PinGet(t.Context(), ci)
			return err == nil && pin.Name == "later", fmt.Sprintf("%q (%v)", pin.Name, err)
		})
	}
	time.Sleep(3 * time.Second) // b's batch is committed by now
	for _, p := range []*daemontest.Peer{a, b} {
		if pin, err := p.Cluster.PinGet(t.Context(), ci); err != nil || pin.Name != "later" {
			t.Fatalf("%s after b's batch: %q (%v), want the later pin", p.Config.Cluster.Peername, pin.Name, err)
		}
	}
}

// A change of this peer's that a restart commits again from the journal
// (the consensus calls Resume, then commits) is put right like any recent
// change when a concurrent version made before it wins the merge: here a
// version committed higher in the DAG on the other side of a partition.
func TestResumedChangeIsPutRight(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, nil)
	a, b := peers[0], peers[1]
	cs := identityCids(t, "resumed", 3)
	ci := cs[0]
	opts := func(name string) api.PinOptions {
		return api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, Name: name}
	}
	first, err := a.Cluster.Pin(t.Context(), ci, opts("first"))
	if err != nil {
		t.Fatal(err)
	}
	waitPinset(t, 10*time.Second, b, cs[:1])
	heal := partition(t, []*daemontest.Peer{a}, []*daemontest.Peer{b})

	resumed := first
	resumed.Name, resumed.Replaced, resumed.Timestamp = "resumed", first.Timestamp, time.Now().UTC()
	b.Cluster.Resume(ci, resumed.Replaced, resumed.Timestamp, resumed.Timestamp)
	if err := b.Consensus.LogPin(t.Context(), resumed); err != nil {
		t.Fatal(err)
	}
	// a, not knowing it, commits two other pins, then a version of ci
	// made before b's: it sits higher in the DAG and wins the merge.
	for _, other := range cs[1:] {
		if _, err := a.Cluster.Pin(t.Context(), other, opts("other")); err != nil {
			t.Fatal(err)
		}
	}
	earlier := first
	earlier.Name, earlier.Replaced, earlier.Timestamp = "earlier", first.Timestamp, resumed.Timestamp.Add(-50*time.Millisecond)
	if err := a.Consensus.LogPin(t.Context(), earlier); err != nil {
		t.Fatal(err)
	}
	heal()
	for _, p := range peers {
		waitUntil(t, 20*time.Second, p.Config.Cluster.Peername+" keeps the resumed change", func() (bool, string) {
			pin, err := p.Cluster.PinGet(t.Context(), ci)
			return err == nil && pin.Name == "resumed" && p.DB.Len() == len(cs), fmt.Sprintf("%q (%v), %d pins", pin.Name, err, p.DB.Len())
		})
	}
	time.Sleep(time.Second) // a correction more would show by now
	for _, p := range peers {
		if pin, err := p.Cluster.PinGet(t.Context(), ci); err != nil || pin.Name != "resumed" {
			t.Fatalf("%s later: %q (%v), want the resumed change", p.Config.Cluster.Peername, pin.Name, err)
		}
	}
}

// An unpin stands against an update made before it on another peer and
// committed after it (it waited in that peer's batch), even when the
// peer that unpinned restarted in between: the pinset does not say when a
// removal was made, so that peer recalls its recent unpins at start.
func TestUnpinStandsAcrossARestart(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, func(i int, cfg *config.Config) {
		if i == 1 {
			cfg.Consensus.CRDT.Batching.MaxBatchSize = 1000
			cfg.Consensus.CRDT.Batching.MaxBatchAge = config.Duration(4 * time.Second)
		}
	})
	a, b := peers[0], peers[1]
	ci := identityCids(t, "unpin-restart", 1)[0]
	opts := func(name string) api.PinOptions {
		return api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1, Name: name}
	}
	if _, err := a.Cluster.Pin(t.Context(), ci, opts("v1")); err != nil {
		t.Fatal(err)
	}
	waitPinset(t, 10*time.Second, b, []api.Cid{ci})
	if _, err := b.Cluster.Pin(t.Context(), ci, opts("earlier update")); err != nil { // waits in b's batch
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(10 * time.Millisecond)
	if _, err := a.Cluster.Unpin(t.Context(), ci); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "b applied the unpin", func() (bool, string) {
		_, err := b.Cluster.PinGet(t.Context(), ci)
		return err != nil, "still pinned"
	})
	a = a.Restart(t, daemon.Options{Bootstrap: []string{b.ClusterAddr()}})
	if time.Since(start) > 3*time.Second {
		t.Fatalf("the restart took %s: b's batch may have been committed before it", time.Since(start))
	}
	time.Sleep(time.Until(start.Add(5 * time.Second))) // b's batch is committed
	for _, p := range []*daemontest.Peer{a, b} {
		waitUntil(t, 15*time.Second, p.Config.Cluster.Peername+" keeps the unpin", func() (bool, string) {
			pin, err := p.Cluster.PinGet(t.Context(), ci)
			return err != nil, fmt.Sprintf("pinned as %q", pin.Name)
		})
	}
	time.Sleep(2 * time.Second) // the update has reached both by now
	for _, p := range []*daemontest.Peer{a, b} {
		if pin, err := p.Cluster.PinGet(t.Context(), ci); err == nil {
			t.Fatalf("%s later: pinned as %q, want the unpin to stand", p.Config.Cluster.Peername, pin.Name)
		}
	}
}
