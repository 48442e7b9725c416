package cluster

import (
	"sync"

	"ipfs-cluster/internal/api"
)

// A repin that a peer commits before it learns that the pin was removed
// is concurrent with the removal, and the shared pinset keeps concurrent
// additions over removals: the pin would come back, moved, on every peer.
// A repin keeps the pin's timestamp and marks the version moved, so a peer
// that saw the version with that timestamp removed knows the pin that
// comes back is that one moved, not pinned again, and removes it again. A
// new pin or an update carries another timestamp, and a restore from an
// export is not marked moved: they stay.

// reRemovals queues the pins to remove again for one worker. It is safe
// for concurrent use.
type reRemovals struct {
	mu   sync.Mutex
	pins []api.Pin
	wake chan struct{} // capacity 1
}

// checkRemoved is called with every pin applied here: it queues the pin
// for removal when it is a removed version that came back moved, and
// drops the removal record when the pin is pinned again.
func (c *Cluster) checkRemoved(pin api.Pin) {
	removedAt, ok, err := c.state.RemovedAt(pin.Cid)
	switch {
	case err != nil:
		c.log.Warn().Err(err).Stringer("cid", pin.Cid).Msg("read removal record")
	case !ok:
	case pin.Moved && removedAt.Equal(pin.Timestamp):
		c.log.Info().Stringer("cid", pin.Cid).Msg("a removed pin came back re-allocated: removing it again")
		c.removeAgain.mu.Lock()
		c.removeAgain.pins = append(c.removeAgain.pins, pin)
		c.removeAgain.mu.Unlock()
		select {
		case c.removeAgain.wake <- struct{}{}:
		default: // a wake-up is pending
		}
	default:
		if err := c.state.ForgetRemoved(pin.Cid); err != nil {
			c.log.Warn().Err(err).Stringer("cid", pin.Cid).Msg("forget removal record")
		}
	}
}

// removeAgainLoop commits the removals checkRemoved queued.
func (c *Cluster) removeAgainLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.removeAgain.wake:
		}
		c.removeAgain.mu.Lock()
		pins := c.removeAgain.pins
		c.removeAgain.pins = nil
		c.removeAgain.mu.Unlock()
		for _, pin := range pins {
			if err := c.consensus.LogUnpin(c.ctx, pin); err != nil && c.ctx.Err() == nil {
				c.log.Warn().Err(err).Stringer("cid", pin.Cid).Msg("remove a removed pin again")
			}
		}
	}
}
