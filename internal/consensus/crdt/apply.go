package crdt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/stripe"
)

// Applier receives every effective change of the shared pinset, this peer's
// and the others'. The cluster core implements it. Calls for one CID never
// overlap and come in commit order; calls for different CIDs may run
// concurrently. An error leaves the change pending: it is given again on the
// next start. The methods must not call LogPin or LogUnpin: a local
// operation applies its own change before it returns.
//
// Resume is called at start, before the commit, for each operation of this
// peer's that an earlier run acknowledged and the journal commits again:
// a pin or an update of ci (version is its timestamp) or an unpin (version
// zero), replacing the version stamped replaced, asked at at. The new
// process so knows its own pending changes as the earlier one did, and can
// put them right when a concurrent change made before them undoes them.
type Applier interface {
	ApplyPin(pin api.Pin) error
	ApplyUnpin(pin api.Pin) error
	Resume(ci api.Cid, replaced, version, at time.Time)
}

// Apply marker values: one byte of kind, then the pin encoding (the new
// value for a pin, the removed one for an unpin).
const (
	markPin   byte = 'p'
	markUnpin byte = 'u'
)

// applyWorkers is the number of goroutines handing changes to the Applier.
// Applying a pin is a synced state write: concurrent applies share fsyncs.
const applyWorkers = 8

// applyRetry spaces the new attempts at changes the Applier failed, as it
// does while the disk is full. Their markers stay, so a restart retries
// them too.
const applyRetry = 5 * time.Second

// applyQueue detects the effective changes of the CRDT's materialized values
// and hands them to the Applier. See the package doc.
//
// commitMu serialises, per key stripe, the read of the previous value, the
// commit, and the removal of an applied marker; applyMu serialises the
// applies of one key. A goroutine holding an applyMu stripe may take a
// commitMu stripe, never the reverse.
type applyQueue struct {
	store       *pebbleds.Datastore
	applier     Applier
	log         zerolog.Logger
	valuePrefix string // "<ns>/s/k/": go-ds-crdt's materialized values
	markPrefix  string // "<ns>/a"

	commitMu stripe.Locks
	applyMu  stripe.Locks

	mu     sync.Mutex
	cond   *sync.Cond
	dirty  map[string]struct{} // keys whose marker may be pending
	failed map[string]int      // keys whose last apply failed, and how often
	closed bool
	stop   chan struct{} // closed by close: ends the retry loop
	wg     sync.WaitGroup
}

func newApplyQueue(store *pebbleds.Datastore, ns string, applier Applier, log zerolog.Logger) *applyQueue {
	q := &applyQueue{
		store:       store,
		applier:     applier,
		log:         log,
		valuePrefix: ns + "/s/k/",
		markPrefix:  ns + "/a",
		dirty:       map[string]struct{}{},
		failed:      map[string]int{},
		stop:        make(chan struct{}),
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// elementOf returns the CRDT key whose materialized value is stored at k,
// or false when k is not such a value key ("<ns>/s/k/<key>/v").
func (q *applyQueue) elementOf(k ds.Key) (string, bool) {
	s := k.String()
	if !strings.HasPrefix(s, q.valuePrefix) || !strings.HasSuffix(s, "/v") || len(s) <= len(q.valuePrefix)+2 {
		return "", false
	}
	return "/" + s[len(q.valuePrefix):len(s)-2], true
}

func (q *applyQueue) valueKey(key string) ds.Key {
	return ds.RawKey(q.valuePrefix + key[1:] + "/v")
}

func (q *applyQueue) markerKey(key string) ds.Key { return ds.RawKey(q.markPrefix + key) }

// change is the last write of one materialized value in a batch.
type change struct {
	value   []byte
	deleted bool
}

// commit commits inner, which holds the given value changes, together with
// an apply marker for each effective one, then queues those.
func (q *applyQueue) commit(ctx context.Context, inner ds.Batch, changes map[string]change) error {
	var set stripe.Set
	for key := range changes {
		set.Add(stripe.Of(key))
	}
	set.Lock(&q.commitMu)
	var effective []string
	for key, ch := range changes {
		old, err := q.store.Get(ctx, q.valueKey(key))
		if err != nil && !errors.Is(err, ds.ErrNotFound) {
			set.Unlock(&q.commitMu)
			return fmt.Errorf("read value of %s: %w", key, err)
		}
		var mark []byte
		switch {
		case ch.deleted && old != nil:
			mark = append([]byte{markUnpin}, old...)
		case !ch.deleted && !bytes.Equal(old, ch.value):
			mark = append([]byte{markPin}, ch.value...)
		default:
			continue
		}
		if err := inner.Put(ctx, q.markerKey(key), mark); err != nil {
			set.Unlock(&q.commitMu)
			return fmt.Errorf("mark %s: %w", key, err)
		}
		effective = append(effective, key)
	}
	err := inner.Commit(ctx)
	set.Unlock(&q.commitMu)
	if err != nil {
		return err
	}
	q.enqueue(effective...)
	return nil
}

// loadMarkers queues the changes committed but not applied before the last
// stop.
func (q *applyQueue) loadMarkers(db *pebble.DB) error {
	lower := []byte(q.markPrefix + "/")
	upper := []byte(q.markPrefix + "0") // '0' follows '/'
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("list apply markers: %w", err)
	}
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Key()[len(q.markPrefix):]))
	}
	err = errors.Join(it.Error(), it.Close())
	if err != nil {
		return fmt.Errorf("list apply markers: %w", err)
	}
	if len(keys) > 0 {
		q.log.Info().Int("changes", len(keys)).Msg("applying changes left over from the last run")
	}
	q.enqueue(keys...)
	return nil
}

func (q *applyQueue) enqueue(keys ...string) {
	if len(keys) == 0 {
		return
	}
	q.mu.Lock()
	for _, k := range keys {
		q.dirty[k] = struct{}{}
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// start launches the apply workers and the retry loop.
func (q *applyQueue) start() {
	q.wg.Add(1)
	go q.retryLoop()
	q.wg.Add(applyWorkers)
	for range applyWorkers {
		go func() {
			defer q.wg.Done()
			for {
				key, ok := q.next()
				if !ok {
					return
				}
				q.apply(key)
			}
		}()
	}
}

// next takes a queued key, waiting for one; it returns false once the
// queue is closed and empty.
func (q *applyQueue) next() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.dirty) == 0 && !q.closed {
		q.cond.Wait()
	}
	for k := range q.dirty {
		delete(q.dirty, k)
		return k, true
	}
	return "", false
}

// retryLoop queues the failed keys again every applyRetry, until close.
func (q *applyQueue) retryLoop() {
	defer q.wg.Done()
	t := time.NewTicker(applyRetry)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
		}
		q.mu.Lock()
		again := 0
		for k, n := range q.failed {
			q.dirty[k] = struct{}{}
			if n > 1 {
				again++
			}
		}
		retried := len(q.failed)
		q.mu.Unlock()
		if retried == 0 {
			continue
		}
		// One line per round, not per key: a full disk fails them all.
		if again > 0 {
			q.log.Warn().Int("changes", retried).Int("failed_again", again).Dur("every", applyRetry).Msg("retrying changes that failed to apply")
		}
		q.cond.Broadcast()
	}
}

// failedApply records that key's apply failed; it logs the first failure
// of a key only, the retry loop reports the rest.
func (q *applyQueue) failedApply(key string, err error) {
	q.mu.Lock()
	q.failed[key]++
	first := q.failed[key] == 1
	q.mu.Unlock()
	if first {
		q.log.Error().Err(err).Str("key", key).Dur("retry_every", applyRetry).Msg("apply change; retrying")
	}
}

// forget drops key from the failed keys: it has nothing left to apply.
func (q *applyQueue) forget(key string) {
	q.mu.Lock()
	delete(q.failed, key)
	q.mu.Unlock()
}

// pending is the number of keys waiting for a worker.
func (q *applyQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.dirty)
}

// close applies what is queued and stops the workers. Nothing may commit
// after close is called.
func (q *applyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	close(q.stop)
	q.cond.Broadcast()
	q.wg.Wait()
}

// apply hands the pending change of key, if any, to the Applier and removes
// its marker unless a newer change replaced it meanwhile.
func (q *applyQueue) apply(key string) {
	defer q.applyMu.LockKey(key)()
	ctx := context.Background()
	mk := q.markerKey(key)
	mark, err := q.store.Get(ctx, mk)
	switch {
	case errors.Is(err, ds.ErrNotFound):
		q.forget(key)
		return
	case err != nil:
		q.log.Error().Err(err).Str("key", key).Msg("read apply marker")
		return
	}
	if err := q.applyMark(mark); err != nil {
		q.failedApply(key, err)
		return
	}
	q.forget(key)
	defer q.commitMu.LockKey(key)()
	cur, err := q.store.Get(ctx, mk)
	if err == nil && bytes.Equal(cur, mark) {
		err = q.store.Delete(ctx, mk)
	}
	if err != nil && !errors.Is(err, ds.ErrNotFound) {
		q.log.Error().Err(err).Str("key", key).Msg("remove apply marker")
	}
}

func (q *applyQueue) applyMark(mark []byte) error {
	if len(mark) < 2 {
		q.log.Error().Hex("marker", mark).Msg("dropping malformed apply marker")
		return nil
	}
	var pin api.Pin
	if err := pin.UnmarshalBinary(mark[1:]); err != nil {
		// A peer committed a value that is not a pin: nothing to apply.
		q.log.Error().Err(err).Msg("dropping change that is not a pin")
		return nil
	}
	switch mark[0] {
	case markPin:
		return q.applier.ApplyPin(pin)
	case markUnpin:
		return q.applier.ApplyUnpin(pin)
	}
	q.log.Error().Hex("marker", mark).Msg("dropping malformed apply marker")
	return nil
}

// observedStore is the datastore given to go-ds-crdt: go-ds-pebble guarded
// against a full disk, with the writes of materialized values routed
// through the apply queue, and batches serialised by the merge lock.
type observedStore struct {
	*guardedStore
	q     *applyQueue
	merge *mergeLock
}

// Put writes one key; a materialized value goes through the apply queue.
func (s *observedStore) Put(ctx context.Context, k ds.Key, v []byte) error {
	if _, ok := s.q.elementOf(k); !ok {
		return s.guardedStore.Put(ctx, k, v)
	}
	b, err := s.Batch(ctx)
	if err != nil {
		return err
	}
	if err := b.Put(ctx, k, v); err != nil {
		return err
	}
	return b.Commit(ctx)
}

// Delete removes one key; a materialized value goes through the apply
// queue.
func (s *observedStore) Delete(ctx context.Context, k ds.Key) error {
	if _, ok := s.q.elementOf(k); !ok {
		return s.guardedStore.Delete(ctx, k)
	}
	b, err := s.Batch(ctx)
	if err != nil {
		return err
	}
	if err := b.Delete(ctx, k); err != nil {
		return err
	}
	return b.Commit(ctx)
}

// Batch returns a batch that records its materialized-value writes. It
// holds the merge lock until it is committed.
func (s *observedStore) Batch(ctx context.Context) (ds.Batch, error) {
	lease := s.merge.lock()
	inner, err := s.guardedStore.Batch(ctx)
	if err != nil {
		s.merge.unlock(lease)
		return nil, err
	}
	return &observedBatch{Batch: inner, q: s.q, merge: s.merge, lease: lease}, nil
}

// Close does nothing: the state package owns the database, and closing the
// go-ds-pebble wrapper would close it.
func (s *observedStore) Close() error { return nil }

// observedBatch is a go-ds-pebble batch that remembers the last write of
// every materialized value. It is used by one goroutine, like any batch.
type observedBatch struct {
	ds.Batch
	q       *applyQueue
	merge   *mergeLock
	lease   uint64
	changes map[string]change
}

func (b *observedBatch) record(k ds.Key, ch change) {
	key, ok := b.q.elementOf(k)
	if !ok {
		return
	}
	if b.changes == nil {
		b.changes = map[string]change{}
	}
	b.changes[key] = ch
}

func (b *observedBatch) Put(ctx context.Context, k ds.Key, v []byte) error {
	if err := b.Batch.Put(ctx, k, v); err != nil {
		return err
	}
	b.record(k, change{value: bytes.Clone(v)})
	return nil
}

func (b *observedBatch) Delete(ctx context.Context, k ds.Key) error {
	if err := b.Batch.Delete(ctx, k); err != nil {
		return err
	}
	b.record(k, change{deleted: true})
	return nil
}

func (b *observedBatch) Commit(ctx context.Context) error {
	defer b.merge.unlock(b.lease)
	if len(b.changes) == 0 {
		return b.Batch.Commit(ctx)
	}
	return b.q.commit(ctx, b.Batch, b.changes)
}
