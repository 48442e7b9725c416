package crdt

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// mergeLock makes go-ds-crdt's merges of one delta atomic with respect to
// each other. go-ds-crdt reads the current elements and priorities of a key
// and then writes the new value in a batch; it serialises that for added
// elements but not for tombstones, so a tombstone merged while an element of
// the same key is merged (a local commit racing a remote delta, or two merge
// workers) can delete a value that stays alive everywhere else. Every such
// read-modify-write runs between the creation and the commit of a batch on
// the observed store, so the store holds this lock from Batch to Commit.
//
// A batch that go-ds-crdt abandons after a datastore error is never
// committed: the lock is then a lease that the next batch takes over after
// timeout, so a failing datastore costs a pause instead of a hang.
type mergeLock struct {
	timeout time.Duration
	log     zerolog.Logger
	sem     chan struct{} // full while held

	mu    sync.Mutex
	lease uint64 // the current holder's lease
}

func newMergeLock(timeout time.Duration, log zerolog.Logger) *mergeLock {
	return &mergeLock{timeout: timeout, log: log, sem: make(chan struct{}, 1)}
}

// lock waits for the lock and returns the lease to unlock it with.
func (l *mergeLock) lock() uint64 {
	select {
	case l.sem <- struct{}{}:
	default:
		t := time.NewTimer(l.timeout)
		select {
		case l.sem <- struct{}{}:
		case <-t.C:
			// The lock stays full and passes to this caller.
			l.log.Error().Dur("timeout", l.timeout).Msg("a CRDT merge neither committed nor released its batch; taking over")
		}
		t.Stop()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lease++
	return l.lease
}

// unlock releases the lock if lease still holds it; a lease that was taken
// over or already released does nothing.
func (l *mergeLock) unlock(lease uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lease != l.lease {
		return
	}
	l.lease++
	<-l.sem
}
