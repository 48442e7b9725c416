package cluster

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/allocator"
	"ipfs-cluster/internal/api"
)

// Allocator ranks the peers that should hold a pin.
type Allocator interface {
	MetricNames() []string
	Allocate(req allocator.Request) ([]peer.ID, error)
}

// allocate chooses the peers that hold pin from the latest valid metrics
// of each peer: current allocations that still qualify are kept, new ones
// are ranked by the balanced allocator until replication_factor_max.
// A pin replicated everywhere has no allocations.
func (c *Cluster) allocate(ctx context.Context, pin api.Pin, current []peer.ID) ([]peer.ID, error) {
	return c.allocateExcluding(ctx, pin, current, nil)
}

// allocateExcluding is allocate that never chooses the excluded peers.
func (c *Cluster) allocateExcluding(_ context.Context, pin api.Pin, current, excluded []peer.ID) ([]peer.ID, error) {
	if pin.IsPinEverywhere() {
		return nil, nil
	}
	names := c.allocator.MetricNames()
	metrics := make(map[string][]api.Metric, len(names))
	for _, name := range names {
		metrics[name] = c.monitor.LatestMetrics(name)
	}
	if c.cfg.PinOnlyOnTrustedPeers && c.isTrusted != nil {
		for _, m := range metrics[names[0]] {
			if !c.isTrusted(m.Peer) {
				excluded = append(excluded, m.Peer)
			}
		}
	}
	allocs, err := c.allocator.Allocate(allocator.Request{Pin: pin, Current: current, Metrics: metrics, Excluded: excluded})
	if err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	return allocs, nil
}
