package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
)

// repinFrom allocates elsewhere the pins of a peer that went down, for the
// pins whose closest live peer is this one, so that exactly one peer acts
// for each pin. It visits only the dead peer's pins (the allocation index).
func (c *Cluster) repinFrom(dead peer.ID) {
	live := slices.DeleteFunc(c.peerset(), func(p peer.ID) bool { return p == dead })
	var mine []api.Cid
	err := c.state.ListAllocatedTo(c.ctx, dead, func(ci api.Cid) error {
		if closestPeer(ci, live) == c.cfg.Peer {
			mine = append(mine, ci)
		}
		return nil
	})
	if err != nil {
		c.log.Warn().Err(err).Stringer("peer", dead).Msg("repin: list allocations")
		return
	}
	moved := 0
	for _, ci := range mine {
		if err := c.repin(c.ctx, ci, dead); err != nil {
			c.log.Warn().Err(err).Stringer("cid", ci).Stringer("peer", dead).Msg("repin")
			continue
		}
		moved++
	}
	if len(mine) > 0 {
		c.log.Info().Stringer("peer", dead).Int("pins", len(mine)).Int("repinned", moved).Msg("repinned the pins of a peer that is down")
	}
}

// repin re-allocates one pin without the dead peer; current allocations
// that are still live are kept, and only a pin below its minimum gets new
// ones.
func (c *Cluster) repin(ctx context.Context, ci api.Cid, dead peer.ID) error {
	pin, err := c.state.Get(ci)
	if err != nil {
		return err
	}
	current := slices.DeleteFunc(slices.Clone(pin.Allocations), func(p peer.ID) bool { return p == dead })
	if len(current) >= pin.ReplicationFactorMin {
		return nil
	}
	allocs, err := c.allocateExcluding(ctx, pin, current, []peer.ID{dead})
	if err != nil {
		return err
	}
	pin.Allocations = allocs
	return c.consensus.LogPin(ctx, pin)
}

// Handoff returns nil once this peer may drop its copy of pin, which is now
// allocated elsewhere: when at least replication_factor_min of the pin's
// allocations (all of them if fewer) report it PINNED. Until then the
// copy stays. A peer back from an outage finds its pins moved to others
// that may still be fetching them from its kubo, the only one holding
// them; dropping its copy at once could lose the pin's last one. The
// pin tracker asks before each such release and retries with its backoff.
func (c *Cluster) Handoff(ctx context.Context, pin api.Pin) error {
	need := min(max(pin.ReplicationFactorMin, 1), len(pin.Allocations))
	if need == 0 || c.rpc == nil {
		return nil
	}
	held := 0
	var waiting []string
	for _, r := range p2p.CallAll[api.PinInfo](ctx, c.rpc, pin.Allocations, rpcStatus, pin.Cid, peerCallTimeout) {
		switch {
		case r.Err != nil:
			waiting = append(waiting, fmt.Sprintf("%s: %v", r.Peer, r.Err))
		case r.Value.Status == api.TrackerStatusPinned:
			held++
		default:
			waiting = append(waiting, fmt.Sprintf("%s: %s", r.Peer, r.Value.Status))
		}
	}
	if held >= need {
		return nil
	}
	return fmt.Errorf("%w: kept here until %d of its allocations pin it, %d do (%s)",
		ErrHandoffPending, need, held, strings.Join(waiting, "; "))
}

// PeerRemove takes a stopped peer out of the cluster's placement: every
// pin allocated to it that can be is allocated elsewhere at once (whatever
// disable_repinning says: the operator asked), and this peer forgets its
// addresses. A peer that still answers is refused: it would announce itself
// again with its next ping, and its pins would have moved for nothing.
func (c *Cluster) PeerRemove(ctx context.Context, p peer.ID) error {
	if p == c.cfg.Peer {
		return fmt.Errorf("%w: a peer cannot remove itself: stop it, then remove it from another peer", ErrInvalidRequest)
	}
	var pins []api.Cid
	err := c.state.ListAllocatedTo(ctx, p, func(ci api.Cid) error {
		pins = append(pins, ci)
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove peer %s: %w", p, err)
	}
	// A mistyped ID must not look removed.
	if len(pins) == 0 && !slices.Contains(c.peerset(), p) {
		return fmt.Errorf("remove peer %s: %w", p, ErrUnknownPeer)
	}
	if c.answers(ctx, p) {
		return fmt.Errorf("%w: remove peer %s: it is running; stop it first", ErrInvalidRequest, p)
	}
	// A pin that cannot move (too few peers left for its minimum) keeps
	// its allocations and shows under-replicated in status: it must not
	// keep the peer, and every other pin, in place.
	failed := 0
	for _, ci := range pins {
		if err := c.repin(ctx, ci, p); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("remove peer %s: repin %s: %w", p, ci, err)
			}
			failed++
			c.log.Warn().Err(err).Stringer("cid", ci).Stringer("peer", p).Msg("remove peer: pin not re-allocated")
		}
	}
	// Forgotten, it is neither listed, alerted on, nor dialed again.
	c.monitor.Forget(p)
	if c.host != nil {
		c.host.Network().ClosePeer(p)
		c.host.Peerstore().ClearAddrs(p)
	}
	c.log.Info().Stringer("peer", p).Int("pins", len(pins)).Int("not_reallocated", failed).Msg("peer removed")
	return nil
}

// answers reports whether peer p replies to an identity call within
// peerAnswerTimeout.
func (c *Cluster) answers(ctx context.Context, p peer.ID) bool {
	if c.rpc == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, peerAnswerTimeout)
	defer cancel()
	return c.rpc.Call(ctx, p, rpcID, struct{}{}, nil) == nil
}
