package cluster_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/internal/kubo/kubotest"
)

func cids(t *testing.T, p *daemontest.Peer, n int) []api.Cid {
	t.Helper()
	var out []api.Cid
	for _, s := range kubotest.AddFiles(t, p.Kubo, n) {
		c, err := api.DecodeCid(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestReplicationDefaultsAndValidation(t *testing.T) {
	p := daemontest.Start(t, func(c *config.Config) {
		c.Cluster.ReplicationFactorMin, c.Cluster.ReplicationFactorMax = 1, 1
	})
	cs := cids(t, p, 1)
	pin, err := p.Cluster.Pin(t.Context(), cs[0], api.PinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pin.ReplicationFactorMin != 1 || pin.ReplicationFactorMax != 1 || len(pin.Allocations) != 1 || pin.Allocations[0] != p.Identity.ID {
		t.Fatalf("defaults not applied: %+v", pin)
	}
	for _, bad := range []api.PinOptions{
		{ReplicationFactorMin: 3, ReplicationFactorMax: 2},
		{ReplicationFactorMin: -1, ReplicationFactorMax: 2},
		{ReplicationFactorMin: -2, ReplicationFactorMax: -2},
	} {
		_, err := p.Cluster.Pin(t.Context(), cs[0], bad)
		if !errors.Is(err, cluster.ErrInvalidRequest) {
			t.Errorf("%+v: want an invalid request, got %v", bad, err)
		}
		// Only a factor left at 0 takes the default: the hint says so
		// then, and only then.
		if strings.Contains(err.Error(), "left at 0") {
			t.Errorf("%+v: no factor was left at 0, yet: %v", bad, err)
		}
	}
	_, err = p.Cluster.Pin(t.Context(), cs[0], api.PinOptions{ReplicationFactorMin: 3})
	if !errors.Is(err, cluster.ErrInvalidRequest) || !strings.Contains(err.Error(), "a factor left at 0 takes the cluster default 1/1") {
		t.Errorf("min 3, max left at 0: %v", err)
	}
}

func TestNotEnoughPeersGivesNumbers(t *testing.T) {
	p := daemontest.Start(t, nil)
	c := cids(t, p, 1)[0]
	_, err := p.Cluster.Pin(t.Context(), c, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 3})
	if !errors.Is(err, cluster.ErrNotEnoughPeers) ||
		!strings.Contains(err.Error(), "Needed at least: 2. Wanted at most: 3. Available candidates: 1") {
		t.Fatalf("error: %v", err)
	}
	if _, err := p.Cluster.PinGet(t.Context(), c); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("a refused pin reached the pinset: %v", err)
	}
}

func TestRepinKeepsOneEntryAndRefusesRecursiveToDirect(t *testing.T) {
	p := daemontest.Start(t, nil)
	c := cids(t, p, 1)[0]
	if _, err := p.Cluster.Pin(t.Context(), c, api.PinOptions{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Cluster.Pin(t.Context(), c, api.PinOptions{Name: "b", Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := p.Cluster.Pins(t.Context(), api.AllType, func(pin api.Pin) error {
		n++
		if pin.Name != "b" || pin.Metadata["k"] != "v" {
			t.Errorf("pin not updated: %+v", pin)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("pinset has %d entries (%v), want 1", n, err)
	}
	_, err = p.Cluster.Pin(t.Context(), c, api.PinOptions{Mode: api.PinModeDirect})
	if !errors.Is(err, cluster.ErrInvalidRequest) || !strings.Contains(err.Error(), "unpin it first") {
		t.Fatalf("recursive to direct: %v", err)
	}
}

func TestPinUpdateCarriesOptionsOver(t *testing.T) {
	p := daemontest.Start(t, nil)
	cs := cids(t, p, 2)
	from, to := cs[0], cs[1]
	exp := time.Now().Add(time.Hour).UTC()
	if _, err := p.Cluster.Pin(t.Context(), from, api.PinOptions{Name: "v1", Metadata: map[string]string{"app": "x"}, ExpireAt: exp}); err != nil {
		t.Fatal(err)
	}
	p.WaitStatus(t, from, api.TrackerStatusPinned)
	pin, err := p.Cluster.Pin(t.Context(), to, api.PinOptions{Name: "v2", PinUpdate: from})
	if err != nil {
		t.Fatal(err)
	}
	if pin.Name != "v2" || pin.Metadata["app"] != "x" || !pin.ExpireAt.Equal(exp) || pin.Cid != to || pin.PinUpdate != from {
		t.Fatalf("update: %+v", pin)
	}
	p.WaitStatus(t, to, api.TrackerStatusPinned)
	if !kubotest.Pins(t, p.Kubo, "recursive")[to.String()] {
		t.Fatal("kubo does not hold the updated CID")
	}
	missing := cids(t, p, 1)[0]
	if _, err := p.Cluster.Pin(t.Context(), missing, api.PinOptions{PinUpdate: missing}); !errors.Is(err, cluster.ErrInvalidRequest) {
		t.Fatalf("update from a CID not in the pinset: %v", err)
	}
}

func TestUserAllocationsMustBePeers(t *testing.T) {
	p := daemontest.Start(t, nil)
	c := cids(t, p, 1)[0]
	stranger, _ := config.NewIdentity()
	_, err := p.Cluster.Pin(t.Context(), c, api.PinOptions{
		ReplicationFactorMin: 1, ReplicationFactorMax: 1,
		UserAllocations: []peer.ID{stranger.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Cluster.PinGet(t.Context(), c)
	if err != nil || len(got.Allocations) != 1 || got.Allocations[0] != p.Identity.ID {
		t.Fatalf("allocations %v (%v): an unknown peer must not be allocated", got.Allocations, err)
	}
}

func TestUnpinUnknownIsNotFound(t *testing.T) {
	p := daemontest.Start(t, nil)
	c := cids(t, p, 1)[0]
	if _, err := p.Cluster.Unpin(t.Context(), c); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("unpin of a CID not in the pinset: %v", err)
	}
}

func TestPeerBelowFreeSpaceFloorGetsNoAllocation(t *testing.T) {
	p := daemontest.Start(t, func(c *config.Config) { c.Allocator.Balanced.MinFreeSpace = 1 << 60 })
	c := cids(t, p, 1)[0]
	_, err := p.Cluster.Pin(t.Context(), c, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1})
	if !errors.Is(err, cluster.ErrNotEnoughPeers) || !strings.Contains(err.Error(), "below the free-space floor") {
		t.Fatalf("error: %v", err)
	}
	// Pins replicated everywhere are not allocated, so the floor does not apply.
	if _, err := p.Cluster.Pin(t.Context(), c, api.PinOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestReposizeInformerAllocatesWithoutTheFloor: a 1.1.x configuration whose
// disk informer publishes reposize has no freespace metric for the floor
// to read; the floor then does not apply instead of refusing every pin.
func TestReposizeInformerAllocatesWithoutTheFloor(t *testing.T) {
	p := daemontest.Start(t, func(c *config.Config) {
		c.Informer.Disk.MetricType = "reposize"
		c.Allocator.Balanced.AllocateBy = []string{"tag:group", "reposize"}
		c.Allocator.Balanced.MinFreeSpace = 1 << 60
	})
	c := cids(t, p, 1)[0]
	pin, err := p.Cluster.Pin(t.Context(), c, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Allocations) != 1 || pin.Allocations[0] != p.Identity.ID {
		t.Fatalf("allocations %v, want this peer", pin.Allocations)
	}
}
