package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/allocator"
	"ipfs-cluster/internal/api"
)

// Allocator ranks the peers that should hold a pin.
type Allocator interface {
	MetricNames() []string
	Allocate(req allocator.Request) ([]peer.ID, error)
	// Order lists every peer that may hold the pin, Allocate's choice
	// first: what the allocate policy reorders.
	Order(req allocator.Request) []peer.ID
}

// allocate chooses the peers that hold pin from the latest valid metrics
// of each peer: current allocations that still qualify are kept, new ones
// are ranked by the balanced allocator until replication_factor_max.
// The allocate policy may then reorder or drop peers. A pin replicated
// everywhere has no allocations.
func (c *Cluster) allocate(ctx context.Context, pin api.Pin, current []peer.ID) ([]peer.ID, error) {
	return c.allocateExcluding(ctx, pin, current, nil)
}

// warmUp bounds how long, after this peer started, an allocation short of
// peers waits for the metrics of the peers it knows (its peerstore, the
// bootstrap peers): the REST API answers at once, and the first requests
// would otherwise fail with no candidates. The others send their metrics
// when this peer connects, within moments.
const warmUp = 10 * time.Second

// awaitingMetrics says whether this peer started less than warmUp ago and
// lacks one of the allocator's metrics of itself or of a peer whose
// address it knows.
func (c *Cluster) awaitingMetrics() bool {
	if time.Since(c.started) >= warmUp || c.host == nil {
		return false
	}
	known := append(c.host.Peerstore().PeersWithAddrs(), c.cfg.Peer)
	for _, name := range c.allocator.MetricNames() {
		have := c.monitor.LatestMetrics(name)
		for _, p := range known {
			if !slices.ContainsFunc(have, func(m api.Metric) bool { return m.Peer == p }) {
				return true
			}
		}
	}
	return false
}

// allocateExcluding is allocate that never chooses the excluded peers.
func (c *Cluster) allocateExcluding(ctx context.Context, pin api.Pin, current, excluded []peer.ID) ([]peer.ID, error) {
	if pin.IsPinEverywhere() {
		return nil, nil
	}
	for {
		allocs, err := c.allocateOnce(ctx, pin, current, excluded)
		if !errors.Is(err, ErrNotEnoughPeers) || !c.awaitingMetrics() {
			return allocs, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) allocateOnce(ctx context.Context, pin api.Pin, current, excluded []peer.ID) ([]peer.ID, error) {
	names := c.allocator.MetricNames()
	metrics := make(map[string][]api.Metric, len(names))
	// A peer whose ping expired is down, even while other metrics of its
	// (with longer TTLs) are still valid: it is no candidate.
	live := c.peerset() // sorted
	for _, name := range names {
		metrics[name] = slices.DeleteFunc(c.monitor.LatestMetrics(name), func(m api.Metric) bool {
			_, up := slices.BinarySearch(live, m.Peer)
			return !up
		})
	}
	req := allocator.Request{Pin: pin, Current: current, Metrics: metrics, Excluded: excluded}
	if (c.cfg.PinOnlyOnTrustedPeers || c.cfg.PinOnlyOnUntrustedPeers) && c.isTrusted != nil {
		req.BarredBy = "not trusted"
		if c.cfg.PinOnlyOnUntrustedPeers {
			req.BarredBy = "trusted (pin_only_on_untrusted_peers)"
		}
		for _, m := range metrics[names[0]] {
			if c.isTrusted(m.Peer) != c.cfg.PinOnlyOnTrustedPeers {
				req.Barred = append(req.Barred, m.Peer)
			}
		}
	}
	allocs, err := c.allocator.Allocate(req)
	if err == nil {
		allocs, err = c.policyAllocate(ctx, req, metrics, allocs)
	}
	if err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	return allocs, nil
}
