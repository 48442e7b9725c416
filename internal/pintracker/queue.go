package pintracker

import (
	"context"
	"sync"
)

// opQueue is a FIFO of operations with a priority lane: Pop always takes a
// priority item first. Entries may be stale (their operation superseded);
// the worker checks before acting, so Push never has to search.
//
// It is safe for concurrent use.
type opQueue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	priority fifo
	normal   fifo
	closed   bool
}

func newOpQueue() *opQueue {
	q := &opQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Len is the number of entries waiting.
func (q *opQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.priority.len() + q.normal.len()
}

// Push appends op to its lane.
func (q *opQueue) Push(op *operation, priority bool) {
	q.mu.Lock()
	if priority {
		q.priority.push(op)
	} else {
		q.normal.push(op)
	}
	q.mu.Unlock()
	q.cond.Signal()
}

// Pop blocks until an entry is available or the queue is closed (nil).
func (q *opQueue) Pop() *operation {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return nil
		}
		if op := q.priority.pop(); op != nil {
			return op
		}
		if op := q.normal.pop(); op != nil {
			return op
		}
		q.cond.Wait()
	}
}

// TryPop appends to dst up to n entries that are waiting now, priority
// first, without blocking.
func (q *opQueue) TryPop(dst []*operation, n int) []*operation {
	q.mu.Lock()
	defer q.mu.Unlock()
	for ; n > 0 && !q.closed; n-- {
		op := q.priority.pop()
		if op == nil {
			op = q.normal.pop()
		}
		if op == nil {
			break
		}
		dst = append(dst, op)
	}
	return dst
}

// Close wakes every waiting Pop, which then returns nil.
func (q *opQueue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// closeOnDone closes q when ctx ends.
func (q *opQueue) closeOnDone(ctx context.Context) {
	<-ctx.Done()
	q.Close()
}

// fifo is a slice-backed queue that releases memory as it drains.
type fifo struct {
	items []*operation
	head  int
}

func (f *fifo) len() int { return len(f.items) - f.head }

func (f *fifo) push(op *operation) { f.items = append(f.items, op) }

func (f *fifo) pop() *operation {
	if f.head == len(f.items) {
		return nil
	}
	op := f.items[f.head]
	f.items[f.head] = nil
	f.head++
	if f.head == len(f.items) {
		f.items, f.head = f.items[:0], 0
	} else if f.head > 1024 && f.head*2 > len(f.items) {
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return op
}
