package crdt

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// committer groups journaled operations into CRDT deltas. It has two modes:
//
//   - batching (maxAge > 0): operations are acknowledged once journaled and
//     committed when maxSize of them wait or maxAge after the first one;
//   - group commit (maxAge == 0): each caller waits for its operation to be
//     committed, and the operations that arrive while a commit runs go
//     together into the next delta. Under load this cuts the number of DAG
//     nodes, so peers fetch and merge fewer of them, without delaying a
//     lone operation.
//
// add is safe for concurrent use; run is the one committing goroutine.
type committer struct {
	commit   func(ctx context.Context, ops []op) error
	maxSize  int
	maxAge   time.Duration
	maxQueue int
	log      zerolog.Logger

	mu      sync.Mutex
	queued  int          // batching: reserved or pending, not yet committed
	pending []op         // journaled, in journal order per key
	waiters []chan error // group commit: one per pending op

	started chan struct{} // the first op of a batch arrived
	full    chan struct{} // the batch reached maxSize
}

// newBatcher returns a committer in batching mode.
func newBatcher(cfg BatchingConfig, commit func(context.Context, []op) error, log zerolog.Logger) *committer {
	b := newGroupCommitter(commit, log)
	b.maxSize, b.maxAge, b.maxQueue = cfg.MaxBatchSize, cfg.MaxBatchAge, cfg.MaxQueueSize
	return b
}

// groupCommitSize bounds the operations of one group commit.
const groupCommitSize = 1000

// newGroupCommitter returns a committer in group-commit mode.
func newGroupCommitter(commit func(context.Context, []op) error, log zerolog.Logger) *committer {
	return &committer{
		commit:  commit,
		maxSize: groupCommitSize,
		log:     log,
		started: make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
	}
}

func (b *committer) batching() bool { return b.maxAge > 0 }

// reserve takes a place in the batching queue; it fails with ErrQueueFull
// when max_queue_size operations already wait.
func (b *committer) reserve() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queued >= b.maxQueue {
		return ErrQueueFull
	}
	b.queued++
	return nil
}

// release gives back a reservation that was not used.
func (b *committer) release() {
	b.mu.Lock()
	b.queued--
	b.mu.Unlock()
}

// add queues a journaled op. In batching mode it returns nil (the op is
// committed later); in group-commit mode it returns a channel that receives
// the outcome of the commit.
func (b *committer) add(o op) <-chan error {
	var done chan error
	if !b.batching() {
		done = make(chan error, 1)
	}
	b.mu.Lock()
	b.pending = append(b.pending, o)
	b.waiters = append(b.waiters, done)
	n := len(b.pending)
	b.mu.Unlock()
	if n == 1 {
		signal(b.started)
	}
	if n >= b.maxSize {
		signal(b.full)
	}
	return done
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// size is the number of batched operations waiting for a commit.
func (b *committer) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queued
}

// run commits until ctx is done; what is pending then is left for flush.
func (b *committer) run(ctx context.Context) {
	age := time.NewTimer(time.Hour)
	age.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.started:
		}
		if b.batching() {
			age.Reset(b.maxAge)
			select {
			case <-ctx.Done():
				age.Stop()
				return
			case <-age.C:
			case <-b.full:
				age.Stop()
			}
		}
		if err := b.flush(ctx); err != nil && b.batching() {
			b.log.Error().Err(err).Msg("commit batch; retrying with the next one")
		}
	}
}

// flush commits up to maxSize pending operations (all of them in batching
// mode). A failed batch stays pending and journaled, and the next batch
// retries it; a failed group commit is reported to its callers.
func (b *committer) flush(ctx context.Context) error {
	b.mu.Lock()
	n := len(b.pending)
	if !b.batching() {
		n = min(n, b.maxSize)
	}
	ops, waiters := b.pending[:n:n], b.waiters[:n:n]
	b.pending, b.waiters = b.pending[n:], b.waiters[n:]
	select { // a stale "full" would cut the next batch short
	case <-b.full:
	default:
	}
	more := len(b.pending) > 0
	b.mu.Unlock()
	if more {
		signal(b.started)
	}
	if len(ops) == 0 {
		return nil
	}
	err := b.commit(ctx, ops)
	switch {
	case err != nil && b.batching():
		b.mu.Lock()
		b.pending = append(ops, b.pending...)
		b.waiters = append(waiters, b.waiters...)
		b.mu.Unlock()
		signal(b.started)
	case b.batching():
		b.mu.Lock()
		b.queued -= len(ops)
		b.mu.Unlock()
	default:
		for _, w := range waiters {
			w <- err
		}
	}
	return err
}
