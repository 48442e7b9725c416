package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"ipfs-cluster/internal/api"
)

// expiry wakes the expiry loop when a pin that expires sooner than every
// other is applied. Its methods are safe for concurrent use.
type expiry struct {
	mu   sync.Mutex
	next time.Time     // the earliest expiry known; zero for none
	wake chan struct{} // capacity 1
}

// note records a pin's expiry, waking the loop if it comes first.
func (e *expiry) note(t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.next.IsZero() && !t.Before(e.next) {
		return
	}
	e.next = t
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// swept records what a sweep that started at start found next, keeping an
// earlier expiry noted meanwhile, and returns the earliest expiry.
func (e *expiry) swept(start, found time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.next.Before(start) || (!found.IsZero() && found.Before(e.next)) {
		e.next = found
	}
	return e.next
}

func (e *expiry) earliest() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.next
}

// expiryLoop unpins each pin when its expire_at passes: it sweeps the
// pinset at start (pins that expired while the peer was down), then
// sleeps until the earliest expiry it knows of, which sweeps find and
// ApplyPin brings forward. It also sweeps every state_sync_interval, as
// the reference does. Every peer does this: the first unpin of a pin
// wins, and the others find it gone.
func (c *Cluster) expiryLoop() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	tick := time.NewTicker(c.cfg.StateSyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.expiry.wake:
			timer.Reset(time.Until(c.expiry.earliest()))
			continue
		case <-timer.C:
		case <-tick.C:
		}
		start := time.Now()
		found, err := c.unpinExpired(c.ctx)
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("state sync")
			}
			// The next tick tries again, rather than a loop now.
			found = time.Time{}
		}
		if next := c.expiry.swept(start, found); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// unpinExpired unpins the pins whose expiry has passed and returns the
// earliest expiry still to come (zero for none).
func (c *Cluster) unpinExpired(ctx context.Context) (time.Time, error) {
	now := time.Now()
	var expired []api.Pin
	var next time.Time
	err := c.state.ListType(ctx, api.AllType, func(p api.Pin) error {
		switch {
		case p.ExpiredAt(now):
			expired = append(expired, p)
		case !p.ExpireAt.IsZero() && (next.IsZero() || p.ExpireAt.Before(next)):
			next = p.ExpireAt
		}
		return nil
	})
	if err != nil {
		return next, fmt.Errorf("state sync: %w", err)
	}
	for _, p := range expired {
		if _, err := c.Unpin(ctx, p.Cid); err != nil && !errors.Is(err, ErrNotFound) {
			return next, fmt.Errorf("state sync: unpin expired %s: %w", p.Cid, err)
		}
		c.log.Info().Stringer("cid", p.Cid).Time("expire_at", p.ExpireAt).Msg("unpinned expired pin")
	}
	return next, nil
}
