package cluster

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"ipfs-cluster/internal/api"
)

// expiry knows when each pin with an expiry expires, so that the pins
// due can be unpinned without reading the whole pinset: an entry per
// noted expiry, ordered by time, and the latest expiry of each CID, which
// tells the entries of an expiry since changed (skipped when due). Its
// methods are safe for concurrent use.
type expiry struct {
	mu     sync.Mutex
	due    expiryHeap
	latest map[api.Cid]time.Time
	wake   chan struct{} // capacity 1: an expiry sooner than every other was noted
}

type expiryEntry struct {
	at  time.Time
	cid api.Cid
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// note records that c expires at t (a pin applied, or found by a sweep).
func (e *expiry) note(c api.Cid, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.latest == nil {
		e.latest = map[api.Cid]time.Time{}
	}
	if at, ok := e.latest[c]; ok && at.Equal(t) {
		return
	}
	e.latest[c] = t
	heap.Push(&e.due, expiryEntry{at: t, cid: c})
	if e.due[0].cid == c && e.due[0].at.Equal(t) {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// takeDue removes and returns the CIDs whose latest expiry is at or before
// now, and the next expiry (zero for none).
func (e *expiry) takeDue(now time.Time) ([]api.Cid, time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var cids []api.Cid
	for len(e.due) > 0 && !e.due[0].at.After(now) {
		d := heap.Pop(&e.due).(expiryEntry)
		if at, ok := e.latest[d.cid]; ok && at.Equal(d.at) {
			delete(e.latest, d.cid)
			cids = append(cids, d.cid)
		}
	}
	if len(e.due) == 0 {
		return cids, time.Time{}
	}
	return cids, e.due[0].at
}

// expiryLoop unpins each pin when its expire_at passes. A sweep of the
// pinset at start unpins what expired while the peer was down and notes
// every expiry to come; ApplyPin notes the expiries of pins applied
// later. The loop then sleeps until the next expiry and unpins the pins
// due, without reading the pinset again. Every state_sync_interval it
// sweeps again, as the reference does. Every peer does this: the first
// unpin of a pin wins, and the others find it gone.
func (c *Cluster) expiryLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	tick := time.NewTicker(c.cfg.StateSyncInterval)
	defer tick.Stop()
	sweep := true
	for {
		if sweep {
			if err := c.sweepExpired(c.ctx); err != nil && c.ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("state sync")
			}
		}
		due, next := c.expiry.takeDue(time.Now())
		for _, ci := range due {
			c.unpinIfExpired(c.ctx, ci)
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.expiry.wake:
			sweep = false
		case <-timer.C:
			sweep = false
		case <-tick.C:
			sweep = true
		}
	}
}

// sweepExpired reads the whole pinset: it unpins the pins whose expiry has
// passed and notes the expiries to come.
func (c *Cluster) sweepExpired(ctx context.Context) error {
	now := time.Now()
	var expired []api.Pin
	err := c.state.ListType(ctx, api.AllType, func(p api.Pin) error {
		switch {
		case p.ExpiredAt(now):
			expired = append(expired, p)
		case !p.ExpireAt.IsZero():
			c.expiry.note(p.Cid, p.ExpireAt)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state sync: %w", err)
	}
	for _, p := range expired {
		c.unpinIfExpired(ctx, p.Cid)
	}
	return nil
}

// unpinIfExpired unpins ci if the pinset still holds it with an expiry
// that has passed (it may have been unpinned, or pinned again without).
func (c *Cluster) unpinIfExpired(ctx context.Context, ci api.Cid) {
	p, err := c.state.Get(ci)
	if err != nil || !p.ExpiredAt(time.Now()) {
		return
	}
	if _, err := c.Unpin(ctx, ci); err != nil && !errors.Is(err, ErrNotFound) {
		if ctx.Err() == nil {
			c.log.Warn().Err(err).Stringer("cid", ci).Msg("unpin expired pin")
		}
		return
	}
	c.log.Info().Stringer("cid", ci).Time("expire_at", p.ExpireAt).Msg("unpinned expired pin")
}
