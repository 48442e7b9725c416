package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
)

// repinFrom allocates elsewhere the pins of a peer that is down, for the
// pins this peer is responsible for: the closest (XOR) to the CID of the
// repinners, so exactly one peer acts for each pin. It visits only the
// dead peer's pins (the allocation index).
func (c *Cluster) repinFrom(dead peer.ID) {
	// The alert and the sweep may both act on the same dead peer at once;
	// one after the other, the second finds the pins moved.
	c.repinMu.Lock()
	defer c.repinMu.Unlock()
	repinners := c.repinners()
	if !slices.Contains(repinners, c.cfg.Peer) {
		return
	}
	var mine []api.Cid
	err := c.state.ListAllocatedTo(c.ctx, dead, func(ci api.Cid) error {
		if closestPeer(ci, repinners) == c.cfg.Peer {
			mine = append(mine, ci)
		}
		return nil
	})
	if err != nil {
		c.log.Warn().Err(err).Stringer("peer", dead).Msg("repin: list allocations")
		return
	}
	live := c.peerset()
	// Most pins of a peer long down have moved, or keep enough live
	// allocations: only the others are worth asking other peers about.
	mine = slices.DeleteFunc(mine, func(ci api.Cid) bool {
		pin, err := c.state.Get(ci)
		return errors.Is(err, ErrNotFound) || err == nil && len(liveAllocations(pin, dead, live)) >= pin.ReplicationFactorMin
	})
	if len(mine) == 0 {
		return
	}
	seen := c.peerVersions(c.ctx, mine, c.others(live))
	// The sweep retries the pins that cannot move (too few peers, say)
	// every state_sync_interval: one line per run, naming the first.
	failed, behind := 0, 0
	var firstErr error
	for _, ci := range mine {
		err := c.repin(c.ctx, ci, dead, live, seen[ci.KeyString()], false)
		switch {
		case errors.Is(err, errBehind):
			behind++
		case err != nil:
			if failed++; firstErr == nil {
				firstErr = fmt.Errorf("repin %s: %w", ci, err)
			}
		}
	}
	if behind > 0 {
		c.log.Info().Stringer("peer", dead).Int("pins", behind).Msg("repin: newer changes of some pins of a peer that is down are not merged here yet; they move once they are")
	}
	switch {
	case failed > 0:
		c.log.Warn().Err(firstErr).Stringer("peer", dead).Int("pins", len(mine)).Int("failed", failed).Msg("some pins of a peer that is down could not move")
	case behind < len(mine):
		c.log.Info().Stringer("peer", dead).Int("pins", len(mine)-behind).Msg("repinned the pins of a peer that is down")
	}
}

// errBehind: a change of the pin is not merged here yet, this peer's own
// or one another peer knows (see stale.go).
var errBehind = errors.New("a newer change of the pin is not merged here yet")

// repinners are the live peers that repin: their pings say repinning is
// on, and this peer merges their changes. Trusted peers share their
// trusted_peers and see the same pings, so they agree on the set, and on
// the one peer of it closest to each CID. A peer that would never act (it
// does not repin, or its changes are dropped here) is never given a pin.
func (c *Cluster) repinners() []peer.ID {
	var out []peer.ID
	for _, m := range c.monitor.LatestMetrics(pingMetric) {
		p, err := decodePing(m.Value)
		if err != nil || !p.Repinning {
			continue
		}
		if m.Peer != c.cfg.Peer && c.isTrusted != nil && !c.isTrusted(m.Peer) {
			continue
		}
		out = append(out, m.Peer)
	}
	return out
}

// repinSweep repins from every peer that holds allocations and is down.
// A ping alert runs it at once; it also runs every state_sync_interval,
// since a peer that died before this one started never raises the alert
// here.
func (c *Cluster) repinSweep() {
	peers, err := c.state.AllocatedPeers(c.ctx)
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("repin sweep")
		}
		return
	}
	live := c.peerset()
	for _, p := range peers {
		if !slices.Contains(live, p) {
			c.repinFrom(p)
		}
	}
}

// repin re-allocates one pin away from peer gone. Only allocations to
// live peers count: those kept, and the pin is re-allocated when fewer
// than its minimum are left. Otherwise it is left as it is, the peers that
// are down included (they may come back), unless removed is set: a peer
// removed from the cluster leaves the allocations either way. seen is
// what other peers know of the pin: when it is newer than the version
// here, the pin is left and errBehind returned.
func (c *Cluster) repin(ctx context.Context, ci api.Cid, gone peer.ID, live []peer.ID, seen pinVersion, removed bool) error {
	if c.cfg.FollowerMode {
		return ErrFollowerMode
	}
	defer c.pinLocks.LockKey(ci.KeyString())()
	if c.recent.pending(ci) {
		// This peer's own change or repin of the pin is not applied
		// yet: the state holds the version before it (see stale.go). A
		// later sweep moves the new version (a change that another
		// peer's concurrent one overrode stays pending for its window).
		return errBehind
	}
	pin, err := c.state.Get(ci)
	if errors.Is(err, ErrNotFound) {
		return nil // unpinned meanwhile
	}
	if err != nil {
		return err
	}
	if seen.newer(pin.Timestamp) {
		return errBehind
	}
	current := liveAllocations(pin, gone, live)
	if len(current) >= pin.ReplicationFactorMin {
		if !removed {
			return nil
		}
		pin.Allocations = slices.DeleteFunc(pin.Allocations, func(p peer.ID) bool { return p == gone })
	} else {
		if pin.Allocations, err = c.allocateExcluding(ctx, pin, current, []peer.ID{gone}); err != nil {
			return err
		}
	}
	// The timestamp stays: see stale.go.
	pin.Moved = true
	c.recent.moving(ci, true)
	if err := c.consensus.LogPin(ctx, pin); err != nil {
		c.recent.moving(ci, false)
		return err
	}
	return nil
}

// liveAllocations returns the allocations of pin to live peers other than
// gone, in a new slice.
func liveAllocations(pin api.Pin, gone peer.ID, live []peer.ID) []peer.ID {
	return slices.DeleteFunc(slices.Clone(pin.Allocations), func(p peer.ID) bool {
		return p == gone || !slices.Contains(live, p)
	})
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
// disable_repinning says: the operator asked), and this peer and the
// others it reaches forget it. When some pins could not move, the peer is
// removed all the same and the error says how many stay allocated to it.
// A peer that still answers is refused: it would announce itself again
// with its next ping, and its pins would have moved for nothing.
func (c *Cluster) PeerRemove(ctx context.Context, p peer.ID) error {
	if c.cfg.FollowerMode {
		return ErrFollowerMode // it would move pins
	}
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
	// A mistyped ID must not look removed. A peer that ever sent a ping
	// is known, down or not: with every pin replicated everywhere it has
	// no allocations, yet shows in every status until removed.
	if _, known := c.peerNames()[p]; len(pins) == 0 && !known {
		return fmt.Errorf("remove peer %s: %w", p, ErrUnknownPeer)
	}
	if c.answers(ctx, p) {
		return fmt.Errorf("%w: remove peer %s: it is running; stop it first", ErrInvalidRequest, p)
	}
	// A pin that cannot move (too few peers left for its minimum) keeps
	// its allocations and shows under-replicated in status: it must not
	// keep the peer, and every other pin, in place. The caller is told,
	// after the removal.
	failed := 0
	var firstErr error
	live := c.peerset()
	for _, ci := range pins {
		if err := c.repin(ctx, ci, p, live, pinVersion{}, true); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("remove peer %s: repin %s: %w", p, ci, err)
			}
			if failed++; firstErr == nil {
				firstErr = fmt.Errorf("repin %s: %w", ci, err)
			}
			c.log.Warn().Err(err).Stringer("cid", ci).Stringer("peer", p).Msg("remove peer: pin not re-allocated")
		}
	}
	c.forget(p)
	for _, r := range p2p.CallAll[struct{}](ctx, c.rpc, c.others(live), rpcForgetPeer, p, peerCallTimeout) {
		if r.Err != nil {
			c.log.Warn().Err(r.Err).Stringer("peer", r.Peer).Stringer("removed", p).Msg("remove peer: a peer was not told; it lists the removed peer until it restarts")
		}
	}
	c.log.Info().Stringer("peer", p).Int("pins", len(pins)).Int("not_reallocated", failed).Msg("peer removed")
	if failed > 0 {
		return fmt.Errorf("remove peer %s: removed, but %d of its %d pins could not move and keep it among their allocations until they can (first: %w)",
			p, failed, len(pins), firstErr)
	}
	return nil
}

// forget drops what this peer knows of a removed peer: it is neither
// listed, shown in status, alerted on, nor dialed again, until it sends a
// ping again (restarted, it rejoins).
func (c *Cluster) forget(p peer.ID) {
	if p == c.cfg.Peer {
		return
	}
	c.monitor.Forget(p)
	if c.host != nil {
		c.host.Network().ClosePeer(p)
		c.host.Peerstore().ClearAddrs(p)
	}
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
