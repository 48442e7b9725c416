// Package pintracker drives kubo to hold what the shared pinset allocates to
// this peer: it queues pin and unpin operations, runs them with bounded
// concurrency, records every CID's local status in an index (so status
// filters and recover cost what they return, not the size of the pinset),
// and retries failures with backoff.
package pintracker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

// IPFS is what the tracker needs from the kubo connector.
type IPFS interface {
	// PinMany pins several at once and calls done with the index and
	// outcome of each pin as soon as it is known, possibly from several
	// goroutines at once; it returns after the last call. unheld[i]
	// says kubo is known not to hold pins[i], which spares kubo a check.
	PinMany(ctx context.Context, pins []api.Pin, unheld []bool, done func(i int, err error))
	Unpin(ctx context.Context, c api.Cid) error
	// PinLs streams kubo's pins of the comma-separated types.
	PinLs(ctx context.Context, types string, fn func(api.IPFSPinInfo) error) error
	// PinLsCid says how kubo holds one pin, in the pin's own mode.
	PinLsCid(ctx context.Context, pin api.Pin) (api.IPFSPinStatus, error)
	// ID answers when kubo is up.
	ID(ctx context.Context) (api.IPFSID, error)
}

// Records keeps the tracker's per-CID status, indexed by status.
type Records interface {
	SetStatus(c api.Cid, s state.LocalStatus) error
	GetStatus(c api.Cid) (state.LocalStatus, bool, error)
	DeleteStatus(c api.Cid) error
	ListByStatus(ctx context.Context, filter api.TrackerStatus, fn func(api.Cid, state.LocalStatus) error) error
	// ListWithStatus streams every pin of the pinset with its record.
	ListWithStatus(ctx context.Context, fn func(api.Pin, state.LocalStatus, bool) error) error
}

// Pinset is the shared pinset as applied on this peer.
type Pinset interface {
	Get(c api.Cid) (api.Pin, error)
}

// ErrQueueFull is returned when max_pin_queue_size operations wait already.
var ErrQueueFull = errors.New("pin/unpin operation queue is full. Try increasing max_pin_queue_size")

// Config holds the tracker's settings.
type Config struct {
	Peer               peer.ID
	PeerName           string
	ConcurrentPins     int
	MaxQueueSize       int
	PriorityMaxAge     time.Duration
	PriorityMaxRetries int
	RetryMinDelay      time.Duration
	RetryMaxDelay      time.Duration
	// Retry, when set, decides what happens to a pin that failed: its
	// queue and delay, or a final failure. It returns false to leave the
	// decision to the built-in rule (exponential backoff, priority while
	// young and rarely failed). It is called with a shard lock held, from
	// many goroutines at once.
	Retry func(pin api.Pin, attempts int, cause error) (Retry, bool)
	// Handoff, when set, is asked before this peer drops a pin that is
	// now allocated elsewhere; an error keeps the copy (the release fails
	// and is retried with the backoff). The cluster answers whether the
	// new allocations hold it, so that a peer back from an outage does
	// not delete the copy they are still fetching from it. It is called
	// from the unpin workers, without a lock held.
	Handoff func(ctx context.Context, pin api.Pin) error
}

// heldBackError is a release that Handoff refused: the copy stays until
// the new allocations hold the pin, an expected wait rather than a fault.
type heldBackError struct{ error }

func (e heldBackError) Unwrap() error { return e.error }

// RetryClass is where a failed pin goes next.
type RetryClass int

const (
	// RetryPriority retries in the priority queue.
	RetryPriority RetryClass = iota + 1
	// RetryNormal retries in the normal queue.
	RetryNormal
	// RetryFailed stops retrying: the pin stays in pin_error until an
	// explicit recover or a new pin of the CID.
	RetryFailed
)

// Retry is a decision about a failed pin. A zero Delay means the built-in
// backoff; Reason explains a final failure in the pin's status.
type Retry struct {
	Class  RetryClass
	Delay  time.Duration
	Reason string
}

type opType int

const (
	opPin opType = iota
	opUnpin
)

type phase int

const (
	phaseQueued phase = iota
	phaseInProgress
)

// operation is one queued or running pin or unpin. Its fields are guarded
// by the lock of the shard that holds it.
type operation struct {
	typ      opType
	pin      api.Pin
	phase    phase
	attempts int
	priority bool
	// policyQueue: priority was chosen by the retry policy and stands.
	policyQueue bool
	ts          time.Time
	cancel      context.CancelFunc
	// toRemote: after a successful unpin, record the CID as remote (it is
	// still in the pinset, allocated elsewhere) instead of forgetting it.
	toRemote bool
	// unheld: kubo is known not to hold the pin (the tracker had no
	// record of this peer holding it, or kubo's pin list lacked it). It is
	// set when the operation is made and never changes, so it may be read
	// without the lock.
	unheld bool
}

func (op *operation) status() api.TrackerStatus {
	switch {
	case op.typ == opPin && op.phase == phaseQueued:
		return api.TrackerStatusPinQueued
	case op.typ == opPin:
		return api.TrackerStatusPinning
	case op.phase == phaseQueued:
		return api.TrackerStatusUnpinQueued
	default:
		return api.TrackerStatusUnpinning
	}
}

const shardCount = 256

// shard serialises everything that happens to the CIDs hashed to it: the
// operation map and the status writes, so a record never goes backwards.
// running holds the CIDs with a kubo call in flight: an operation that
// supersedes a running one waits for that call to return before it calls
// kubo, so that a pin/add still running cannot undo the pin/rm that follows
// it.
type shard struct {
	mu      sync.Mutex
	ops     map[string]*operation
	running map[string]chan struct{}
}

// Tracker is the pin tracker. All methods are safe for concurrent use;
// operations on one CID are serialised, different CIDs proceed in parallel.
type Tracker struct {
	cfg     Config
	ipfs    IPFS
	records Records
	pinset  Pinset
	log     zerolog.Logger

	seed    maphash.Seed
	shards  [shardCount]shard
	pinQ    *opQueue
	unpinQ  *opQueue
	waiting atomic.Int64
	retries *retryScheduler
	batch   batchSizer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// reconciled is closed when the startup sweep against kubo ends.
	reconciled chan struct{}
}

// New builds a tracker; Start launches its workers.
func New(cfg Config, ipfs IPFS, records Records, pinset Pinset, log zerolog.Logger) *Tracker {
	t := &Tracker{
		cfg: cfg, ipfs: ipfs, records: records, pinset: pinset, log: log,
		seed:       maphash.MakeSeed(),
		pinQ:       newOpQueue(),
		unpinQ:     newOpQueue(),
		retries:    newRetryScheduler(),
		reconciled: make(chan struct{}),
		batch:      batchSizer{size: initialPinBatch},
	}
	for i := range t.shards {
		t.shards[i].ops = make(map[string]*operation)
		t.shards[i].running = make(map[string]chan struct{})
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

// Start requeues the operations a previous run left unfinished, schedules
// the retries of failed ones (both proportional to their number), starts
// the workers, and reconciles the pinset against kubo in the background:
// the tracker answers at once, before that sweep ends.
func (t *Tracker) Start() error {
	if err := t.resume(); err != nil {
		return err
	}
	for i := 0; i < t.cfg.ConcurrentPins; i++ {
		t.goWorker(t.pinQ)
		t.goWorker(t.unpinQ)
	}
	t.wg.Add(3)
	go func() { defer t.wg.Done(); t.pinQ.closeOnDone(t.ctx) }()
	go func() { defer t.wg.Done(); t.unpinQ.closeOnDone(t.ctx) }()
	go func() { defer t.wg.Done(); t.retries.Run(t.ctx, t.retryDue) }()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(t.reconciled)
		start := time.Now()
		n, err := t.Reconcile(t.ctx, nil)
		if err != nil {
			if t.ctx.Err() == nil {
				t.log.Warn().Err(err).Msg("startup reconciliation with kubo failed; failed items are retried and recover runs periodically")
			}
			return
		}
		t.log.Info().Int("pins", n).Dur("took", time.Since(start)).Msg("pinset reconciled with kubo")
	}()
	return nil
}

// Reconciled is closed when the startup sweep has finished (or failed).
func (t *Tracker) Reconciled() <-chan struct{} { return t.reconciled }

// Close cancels running operations and waits for the workers. Operations
// cut short keep a queued status and resume at the next Start.
func (t *Tracker) Close() {
	t.cancel()
	t.wg.Wait()
}

// goWorker starts a worker on q. A pin worker takes the pins waiting
// behind the one it popped, up to the batch size, and hands them to kubo
// together.
func (t *Tracker) goWorker(q *opQueue) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		var ops []*operation
		for {
			op := q.Pop()
			if op == nil {
				return
			}
			ops = append(ops[:0], op)
			if q == t.pinQ {
				ops = q.TryPop(ops, t.batch.get()-1)
			}
			t.waiting.Add(-int64(len(ops)))
			if len(ops) == 1 {
				t.run(op)
			} else {
				t.runPins(ops)
			}
			clear(ops)
		}
	}()
}

func (t *Tracker) shard(c api.Cid) *shard {
	return &t.shards[maphash.String(t.seed, c.KeyString())%shardCount]
}

// QueueSize is the number of operations waiting for a worker.
func (t *Tracker) QueueSize() int { return int(t.waiting.Load()) }

// Track makes this peer hold pin as its allocations say: queue a pin when
// it is allocated here, or release it when it is allocated elsewhere.
func (t *Tracker) Track(pin api.Pin) error {
	sh := t.shard(pin.Cid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	key := pin.Cid.KeyString()
	cur := sh.ops[key]

	if pin.Type == api.MetaType {
		t.dropLocked(sh, key, cur)
		return t.setStatus(pin.Cid, state.LocalStatus{Status: api.TrackerStatusSharded, TS: time.Now()})
	}
	if pin.IsRemote(t.cfg.Peer) {
		if cur != nil && cur.typ == opUnpin {
			cur.toRemote = true
			return nil
		}
		t.dropLocked(sh, key, cur)
		rec, ok, err := t.records.GetStatus(pin.Cid)
		if err != nil {
			return fmt.Errorf("track %s: %w", pin.Cid, err)
		}
		if ok && rec.Status != api.TrackerStatusRemote && rec.Status != api.TrackerStatusSharded {
			// This peer held it or was fetching it: release it.
			return t.enqueueLocked(sh, &operation{typ: opUnpin, pin: pin, toRemote: true})
		}
		return t.setStatus(pin.Cid, state.LocalStatus{Status: api.TrackerStatusRemote, TS: time.Now()})
	}
	if cur != nil && cur.typ == opPin && cur.pin.MaxDepth == pin.MaxDepth {
		cur.pin = pin
		return nil
	}
	rec, ok, err := t.records.GetStatus(pin.Cid)
	if cur == nil && err == nil && ok && rec.Status == api.TrackerStatusPinned && rec.Direct == (pin.MaxDepth == 0) {
		// kubo holds it as this version of the pin wants (a new name,
		// new allocations elsewhere): nothing to do, and the status stays
		// pinned rather than going through the queue again.
		return nil
	}
	t.dropLocked(sh, key, cur)
	attempts := 0
	if err == nil && ok && rec.Status == api.TrackerStatusPinError {
		attempts = rec.Attempts
	}
	unheld := err == nil && (!ok || rec.Status == api.TrackerStatusRemote)
	return t.enqueueLocked(sh, &operation{typ: opPin, pin: pin, attempts: attempts, unheld: unheld})
}

// Untrack releases a CID that left the pinset.
func (t *Tracker) Untrack(pin api.Pin) error {
	sh := t.shard(pin.Cid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	key := pin.Cid.KeyString()
	cur := sh.ops[key]
	if cur != nil && cur.typ == opUnpin {
		cur.toRemote = false
		return nil
	}
	t.dropLocked(sh, key, cur)
	rec, ok, err := t.records.GetStatus(pin.Cid)
	if err != nil {
		return fmt.Errorf("untrack %s: %w", pin.Cid, err)
	}
	if !ok || rec.Status == api.TrackerStatusRemote || rec.Status == api.TrackerStatusSharded {
		t.retries.Cancel(pin.Cid)
		return t.deleteStatus(pin.Cid)
	}
	return t.enqueueLocked(sh, &operation{typ: opUnpin, pin: pin, attempts: attemptsIf(rec, api.TrackerStatusUnpinError)})
}

func attemptsIf(rec state.LocalStatus, st api.TrackerStatus) int {
	if rec.Status == st {
		return rec.Attempts
	}
	return 0
}

// dropLocked cancels and forgets the current operation of a CID.
func (t *Tracker) dropLocked(sh *shard, key string, op *operation) {
	if op == nil {
		return
	}
	if op.cancel != nil {
		op.cancel()
	}
	delete(sh.ops, key)
}

func (t *Tracker) isPriority(op *operation) bool {
	return op.typ == opPin &&
		time.Since(op.pin.Timestamp) < t.cfg.PriorityMaxAge &&
		op.attempts <= t.cfg.PriorityMaxRetries
}

// enqueueLocked records op as queued and hands it to a worker queue. When
// the queue is full the CID is recorded as failed and retried later, so
// nothing is dropped.
func (t *Tracker) enqueueLocked(sh *shard, op *operation) error {
	c := op.pin.Cid
	t.retries.Cancel(c)
	if int(t.waiting.Load()) >= t.cfg.MaxQueueSize {
		t.failLocked(op, ErrQueueFull)
		return fmt.Errorf("track %s: %w", c, ErrQueueFull)
	}
	op.phase = phaseQueued
	op.ts = time.Now()
	if !op.policyQueue {
		op.priority = t.isPriority(op)
	}
	sh.ops[c.KeyString()] = op
	if err := t.setStatus(c, t.opRecord(op)); err != nil {
		return err
	}
	t.waiting.Add(1)
	if op.typ == opPin {
		t.pinQ.Push(op, op.priority)
	} else {
		t.unpinQ.Push(op, false)
	}
	return nil
}

// releasing reports whether op gives up a pin allocated elsewhere, rather
// than one that left the pinset. Track and Untrack change it under the
// shard lock.
func (t *Tracker) releasing(op *operation) bool {
	sh := t.shard(op.pin.Cid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return op.toRemote
}

func (t *Tracker) opRecord(op *operation) state.LocalStatus {
	return state.LocalStatus{Status: op.status(), Attempts: op.attempts, TS: op.ts, Priority: op.priority}
}

// run executes one operation unless it was superseded while it waited.
func (t *Tracker) run(op *operation) {
	var (
		ctx    context.Context
		cancel context.CancelFunc
		pin    api.Pin
	)
	for {
		ctx, cancel = context.WithCancel(t.ctx)
		var ok bool
		var busy <-chan struct{}
		pin, ok, busy = t.begin(op, cancel)
		if ok {
			break
		}
		cancel()
		if busy == nil {
			return
		}
		select {
		case <-busy:
		case <-t.ctx.Done():
			return // still queued: the next start resumes it
		}
	}
	start := time.Now()
	var err error
	if op.typ == opPin {
		t.ipfs.PinMany(ctx, []api.Pin{pin}, []bool{op.unheld}, func(_ int, e error) { err = e })
		t.batch.observe(1, time.Since(start))
	} else {
		if t.releasing(op) && t.cfg.Handoff != nil {
			if err = t.cfg.Handoff(ctx, pin); err != nil {
				err = heldBackError{err}
			}
		}
		if err == nil {
			err = t.ipfs.Unpin(ctx, pin.Cid)
		}
	}
	cancel()
	t.finish(op, err)
}

// runPins pins ops, which were queued together, with one PinMany call.
// Those whose CID has a kubo call in flight run on their own afterwards.
func (t *Tracker) runPins(ops []*operation) {
	var started, later []*operation
	var pins []api.Pin
	var unheld []bool
	for _, op := range ops {
		// One call serves them all: a superseded one cannot be cancelled
		// alone, and what supersedes it waits for the call to return.
		pin, ok, busy := t.begin(op, nil)
		switch {
		case ok:
			started = append(started, op)
			pins = append(pins, pin)
			unheld = append(unheld, op.unheld)
		case busy != nil:
			later = append(later, op)
		}
	}
	if len(pins) > 0 {
		start := time.Now()
		// Each pin is finished as soon as its outcome is known: one
		// that kubo cannot find does not hold the others of its batch
		// in pinning.
		t.ipfs.PinMany(t.ctx, pins, unheld, func(i int, err error) { t.finish(started[i], err) })
		t.batch.observe(len(pins), time.Since(start))
	}
	for _, op := range later {
		t.run(op)
	}
}

// begin marks op in progress and returns its pin, unless op was superseded
// while it waited (false, nil) or another kubo call for its CID is still in
// flight (false and a channel closed when that call returns).
func (t *Tracker) begin(op *operation, cancel context.CancelFunc) (api.Pin, bool, <-chan struct{}) {
	c := op.pin.Cid
	key := c.KeyString()
	sh := t.shard(c)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.ops[key] != op || op.phase != phaseQueued {
		return api.Pin{}, false, nil
	}
	if busy := sh.running[key]; busy != nil {
		return api.Pin{}, false, busy
	}
	sh.running[key] = make(chan struct{})
	op.phase, op.cancel, op.ts = phaseInProgress, cancel, time.Now()
	if err := t.setStatus(c, t.opRecord(op)); err != nil {
		t.log.Error().Err(err).Stringer("cid", c).Msg("record status")
	}
	return op.pin, true, nil
}

// finish records the outcome of op's kubo call.
func (t *Tracker) finish(op *operation, err error) {
	c := op.pin.Cid
	key := c.KeyString()
	sh := t.shard(c)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	close(sh.running[key])
	delete(sh.running, key)
	if sh.ops[key] != op {
		return // superseded: the newer operation owns the record
	}
	delete(sh.ops, key)
	if t.ctx.Err() != nil {
		// Shutting down: leave it queued so the next start resumes it.
		op.phase = phaseQueued
		if err := t.setStatus(c, t.opRecord(op)); err != nil {
			t.log.Error().Err(err).Stringer("cid", c).Msg("record status")
		}
		return
	}
	if err != nil {
		t.failLocked(op, err)
		return
	}
	var werr error
	switch {
	case op.typ == opPin:
		werr = t.setStatus(c, state.LocalStatus{Status: api.TrackerStatusPinned, Attempts: op.attempts, TS: time.Now(),
			Priority: op.priority, Direct: op.pin.MaxDepth == 0})
		t.log.Debug().Stringer("cid", c).Msg("pinned")
	case op.toRemote:
		werr = t.setStatus(c, state.LocalStatus{Status: api.TrackerStatusRemote, TS: time.Now()})
	default:
		werr = t.deleteStatus(c)
		t.log.Debug().Stringer("cid", c).Msg("unpinned")
	}
	if werr != nil {
		t.log.Error().Err(werr).Stringer("cid", c).Msg("record status")
	}
}

// failLocked records a failed operation and schedules its retry, as the
// retry policy decides for pins.
func (t *Tracker) failLocked(op *operation, cause error) {
	c := op.pin.Cid
	op.attempts++
	rec := state.LocalStatus{Status: api.TrackerStatusPinError, Attempts: op.attempts, Error: cause.Error(), TS: time.Now()}
	if op.typ == opUnpin {
		rec.Status = api.TrackerStatusUnpinError
	}
	delay := t.backoff(op.attempts)
	if op.typ == opPin && t.cfg.Retry != nil {
		if r, ok := t.cfg.Retry(op.pin, op.attempts, cause); ok {
			if r.Delay > 0 {
				delay, rec.RetryDelay = r.Delay, r.Delay
			}
			rec.PolicyQueue, rec.Priority = true, r.Class == RetryPriority
			if r.Class == RetryFailed {
				rec.Terminal = true
				rec.Error = fmt.Sprintf("failed for good by the retry policy: %s (last error: %s)", r.Reason, cause)
			}
		}
	}
	ev := t.log.Warn()
	if errors.As(cause, new(heldBackError)) { // an expected wait
		ev = t.log.Info()
	}
	ev = ev.Err(cause).Stringer("cid", c).Str("status", rec.Status.String()).Int("attempts", op.attempts)
	if rec.Terminal {
		ev.Msg("operation failed for good: the retry policy stops it")
	} else {
		ev.Dur("retry_in", delay).Msg("operation failed")
	}
	if err := t.setStatus(c, rec); err != nil {
		t.log.Error().Err(err).Stringer("cid", c).Msg("record status")
	}
	if !rec.Terminal {
		t.retries.Schedule(c, time.Now().Add(delay))
	}
}

// backoff doubles from RetryMinDelay with each attempt, up to RetryMaxDelay.
func (t *Tracker) backoff(attempts int) time.Duration {
	d := t.cfg.RetryMinDelay
	for i := 1; i < attempts && d < t.cfg.RetryMaxDelay; i++ {
		d *= 2
	}
	return min(d, t.cfg.RetryMaxDelay)
}

// retryDue requeues a failed CID when its backoff has passed.
func (t *Tracker) retryDue(c api.Cid) {
	if _, err := t.recover(c, 0); err != nil && t.ctx.Err() == nil {
		t.log.Warn().Err(err).Stringer("cid", c).Msg("retry")
	}
}

// recoverMode says how far recover goes.
type recoverMode int

const (
	// recoverMissing also repins a CID that kubo lost.
	recoverMissing recoverMode = 1 << iota
	// recoverFinal also requeues failures the retry policy made final:
	// an operator asked.
	recoverFinal
)

// recover requeues c if it failed. It returns whether something was
// queued.
func (t *Tracker) recover(c api.Cid, mode recoverMode) (bool, error) {
	sh := t.shard(c)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.ops[c.KeyString()] != nil {
		return false, nil
	}
	rec, ok, err := t.records.GetStatus(c)
	if err != nil {
		return false, fmt.Errorf("recover %s: %w", c, err)
	}
	missing := mode&recoverMissing != 0
	switch {
	case ok && rec.Terminal && mode&recoverFinal == 0:
		return false, nil
	case ok && rec.Status == api.TrackerStatusUnpinError:
		// Out of the pinset: dropped. Still in it, allocated elsewhere:
		// released, which leaves the record remote and waits for the
		// new allocations. Allocated here again: pinned.
		op := &operation{typ: opUnpin, pin: api.Pin{Cid: c}, attempts: rec.Attempts}
		pin, err := t.pinset.Get(c)
		switch {
		case err == nil && pin.IsRemote(t.cfg.Peer):
			op.pin, op.toRemote = pin, true
		case err == nil:
			op = &operation{typ: opPin, pin: pin}
		case !errors.Is(err, state.ErrNotFound):
			return false, fmt.Errorf("recover %s: %w", c, err)
		}
		return true, t.enqueueLocked(sh, op)
	case ok && (rec.Status == api.TrackerStatusPinError || rec.Status == api.TrackerStatusUnexpectedlyUnpinned),
		!ok && missing:
		pin, err := t.pinset.Get(c)
		if errors.Is(err, state.ErrNotFound) {
			return false, t.deleteStatus(c)
		}
		if err != nil {
			return false, fmt.Errorf("recover %s: %w", c, err)
		}
		if pin.IsRemote(t.cfg.Peer) {
			return false, t.setStatus(c, state.LocalStatus{Status: api.TrackerStatusRemote, TS: time.Now()})
		}
		op := &operation{typ: opPin, pin: pin, attempts: rec.Attempts}
		if rec.PolicyQueue && !rec.Terminal {
			op.policyQueue, op.priority = true, rec.Priority
		}
		return true, t.enqueueLocked(sh, op)
	}
	return false, nil
}

// Recover requeues c at once if it is in an error state, and returns its
// status afterwards.
func (t *Tracker) Recover(ctx context.Context, c api.Cid) (api.PinInfo, error) {
	if _, err := t.recover(c, recoverMissing|recoverFinal); err != nil {
		return api.PinInfo{}, err
	}
	return t.Status(ctx, c)
}

// recoverable are the statuses recover acts on.
const recoverable = api.TrackerStatusPinError | api.TrackerStatusUnpinError | api.TrackerStatusUnexpectedlyUnpinned

// RecoverAll first reconciles the records with kubo's pin list, which
// queues again the pins kubo lost, then requeues every CID in an error
// state, visiting only those (an index walk); it reports each one it
// queued. Failures the retry policy made final are requeued only when an
// operator asks (final).
func (t *Tracker) RecoverAll(ctx context.Context, final bool, fn func(api.PinInfo) error) error {
	// kubo's pin list may take long to stream, but a hung kubo must not
	// hold the caller (a cluster-wide recover waits for every peer).
	if err := t.kuboAnswers(ctx); err != nil {
		return fmt.Errorf("recover all: kubo does not answer: %w", err)
	}
	var mode recoverMode
	if final {
		mode = recoverFinal
	}
	report := func(c api.Cid) error {
		info, err := t.Status(ctx, c)
		if err != nil {
			return err
		}
		return fn(info)
	}
	if _, err := t.Reconcile(ctx, report); err != nil {
		return fmt.Errorf("recover all: %w", err)
	}
	return t.records.ListByStatus(ctx, recoverable, func(c api.Cid, _ state.LocalStatus) error {
		queued, err := t.recover(c, mode)
		if err != nil {
			return err
		}
		if !queued {
			return nil
		}
		return report(c)
	})
}

// resume requeues what a previous run left queued or in progress and
// schedules the retries of failed items.
func (t *Tracker) resume() error {
	inflight := api.TrackerStatusPinQueued | api.TrackerStatusPinning | api.TrackerStatusUnpinQueued | api.TrackerStatusUnpinning
	var pins, unpins []api.Cid
	err := t.records.ListByStatus(t.ctx, inflight, func(c api.Cid, rec state.LocalStatus) error {
		if rec.Status&(api.TrackerStatusPinQueued|api.TrackerStatusPinning) != 0 {
			pins = append(pins, c)
		} else {
			unpins = append(unpins, c)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("resume tracker: %w", err)
	}
	for _, c := range pins {
		pin, err := t.pinset.Get(c)
		if err != nil {
			if errors.Is(err, state.ErrNotFound) {
				unpins = append(unpins, c)
				continue
			}
			return fmt.Errorf("resume %s: %w", c, err)
		}
		if err := t.Track(pin); err != nil {
			return err
		}
	}
	for _, c := range unpins {
		if err := t.Untrack(api.Pin{Cid: c}); err != nil {
			return err
		}
	}
	errs := api.TrackerStatusPinError | api.TrackerStatusUnpinError
	err = t.records.ListByStatus(t.ctx, errs, func(c api.Cid, rec state.LocalStatus) error {
		if !rec.Terminal {
			delay := rec.RetryDelay // the retry policy's choice
			if delay == 0 {
				delay = t.backoff(rec.Attempts)
			}
			t.retries.Schedule(c, rec.TS.Add(delay))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("resume tracker: %w", err)
	}
	if n := len(pins) + len(unpins); n > 0 {
		t.log.Info().Int("pins", len(pins)).Int("unpins", len(unpins)).Msg("resumed unfinished operations")
	}
	return nil
}

func (t *Tracker) setStatus(c api.Cid, s state.LocalStatus) error {
	if err := t.records.SetStatus(c, s); err != nil {
		return fmt.Errorf("record status of %s: %w", c, err)
	}
	return nil
}

func (t *Tracker) deleteStatus(c api.Cid) error {
	if err := t.records.DeleteStatus(c); err != nil {
		return fmt.Errorf("forget status of %s: %w", c, err)
	}
	return nil
}
