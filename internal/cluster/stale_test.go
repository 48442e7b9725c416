package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
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
// it back in the same batch.
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
	// A sweep moves the pin away from b while the unpin waits in the batch.
	if err := a.Cluster.RepinAway(t.Context(), ci, b.Identity.ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the unpin applied", func() (bool, string) {
		_, err := a.Cluster.PinGet(t.Context(), ci)
		return err != nil, "still pinned"
	})
	time.Sleep(3 * time.Second) // a batch more
	if _, err := a.Cluster.PinGet(t.Context(), ci); err == nil {
		t.Fatal("the repin brought the unpinned pin back")
	}
}
