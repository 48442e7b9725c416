package pintracker

import (
	"sync"
	"time"
)

const (
	// maxPinBatch bounds the pins a worker hands to kubo in one request.
	// kubo spends about 300 µs of CPU on a request of its own beside what
	// each pin costs: batches of 10 save most of it, 32 nearly all.
	maxPinBatch = 32
	// initialPinBatch is the batch size a tracker starts with.
	initialPinBatch = 8
	// fastPin is the time per pin under which a batch counts as fast. kubo
	// pins the CIDs of a request one after the other, so one CID that has
	// to be fetched holds up the others: slower batches shrink, down to one
	// pin per request, and fast ones grow again.
	fastPin = 50 * time.Millisecond
)

// batchSizer adapts the number of queued pins that go to kubo together:
// it doubles while pins take less than fastPin each and halves otherwise.
// It is safe for concurrent use.
type batchSizer struct {
	mu   sync.Mutex
	size int
}

func (b *batchSizer) get() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size
}

// observe records that n pins took d together.
func (b *batchSizer) observe(n int, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d/time.Duration(n) < fastPin {
		b.size = min(maxPinBatch, 2*b.size)
	} else {
		b.size = max(1, b.size/2)
	}
}
