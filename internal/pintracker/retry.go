package pintracker

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"ipfs-cluster/internal/api"
)

// retryScheduler fires a callback for each CID when its retry time comes.
// Scheduling a CID again replaces its earlier time. It is safe for
// concurrent use.
type retryScheduler struct {
	mu    sync.Mutex
	items retryHeap
	byKey map[string]*retryItem
	wake  chan struct{}
}

type retryItem struct {
	cid   api.Cid
	due   time.Time
	index int
}

func newRetryScheduler() *retryScheduler {
	return &retryScheduler{byKey: map[string]*retryItem{}, wake: make(chan struct{}, 1)}
}

// Schedule sets c to fire at due.
func (r *retryScheduler) Schedule(c api.Cid, due time.Time) {
	r.mu.Lock()
	key := c.KeyString()
	if it, ok := r.byKey[key]; ok {
		it.due = due
		heap.Fix(&r.items, it.index)
	} else {
		it := &retryItem{cid: c, due: due}
		heap.Push(&r.items, it)
		r.byKey[key] = it
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Cancel forgets c.
func (r *retryScheduler) Cancel(c api.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.byKey[c.KeyString()]; ok {
		heap.Remove(&r.items, it.index)
		delete(r.byKey, c.KeyString())
	}
}

// Len is the number of scheduled retries.
func (r *retryScheduler) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items)
}

// Run calls fire for every due CID until ctx ends.
func (r *retryScheduler) Run(ctx context.Context, fire func(api.Cid)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due []api.Cid
		next := time.Hour
		r.mu.Lock()
		now := time.Now()
		for len(r.items) > 0 && !r.items[0].due.After(now) {
			it := heap.Pop(&r.items).(*retryItem)
			delete(r.byKey, it.cid.KeyString())
			due = append(due, it.cid)
		}
		if len(r.items) > 0 {
			next = r.items[0].due.Sub(now)
		}
		r.mu.Unlock()
		for _, c := range due {
			fire(c)
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

type retryHeap []*retryItem

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *retryHeap) Push(x any) {
	it := x.(*retryItem)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
