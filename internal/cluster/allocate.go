package cluster

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// allocate chooses the peers that hold pin. Current allocations that are
// still peers are kept; new ones are taken from the user's priority peers
// first, then from the rest, until replication_factor_max. Fewer than
// replication_factor_min in all is an error with the numbers.
func (c *Cluster) allocate(ctx context.Context, pin api.Pin, current []peer.ID) ([]peer.ID, error) {
	if pin.IsPinEverywhere() {
		return nil, nil
	}
	peers, err := c.consensus.Peers(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocate: list peers: %w", err)
	}
	live := make(map[peer.ID]bool, len(peers))
	for _, p := range peers {
		live[p] = true
	}
	var keep []peer.ID
	for _, p := range current {
		if live[p] {
			keep = append(keep, p)
			delete(live, p)
		}
	}
	rmin, rmax := pin.ReplicationFactorMin, pin.ReplicationFactorMax
	if len(keep) >= rmax {
		return keep[:rmax], nil
	}
	if len(keep) >= rmin {
		return keep, nil
	}
	var candidates []peer.ID
	for _, p := range pin.UserAllocations {
		if live[p] {
			candidates = append(candidates, p)
			delete(live, p)
		}
	}
	for _, p := range peers {
		if live[p] {
			candidates = append(candidates, p)
		}
	}
	needed, wanted := rmin-len(keep), rmax-len(keep)
	if len(candidates) < needed {
		return nil, fmt.Errorf("%w. Needed at least: %d. Wanted at most: %d. Available candidates: %d (current allocations kept: %d, cluster peers: %d)",
			ErrNotEnoughPeers, needed, wanted, len(candidates), len(keep), len(peers))
	}
	return append(keep, candidates[:min(wanted, len(candidates))]...), nil
}
