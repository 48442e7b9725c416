package crdt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	crdt "github.com/ipfs/go-ds-crdt"
	pebbleds "github.com/ipfs/go-ds-pebble"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
	"ipfs-cluster/internal/stripe"
)

// journalReleaseInterval is how often the resolved operations are made
// durable in pebble and dropped from the journal.
const journalReleaseInterval = time.Second

// mergeLockTimeout is how long a merge may hold its batch open before the
// next one takes its lock over (see mergeLock). Merges take milliseconds.
const mergeLockTimeout = time.Minute

// Sentinel errors callers branch on.
var (
	// ErrShutdown is returned by calls made after Shutdown.
	ErrShutdown = errors.New("crdt consensus is shut down")
	// ErrQueueFull is returned by LogPin and LogUnpin when batching and
	// max_queue_size operations already wait for a commit. The text is the
	// reference's.
	ErrQueueFull = errors.New("batching max_queue_size reached. Too many operations are waiting to be batched. Try increasing the max_queue_size or adjusting the batching options")
)

// spaceChecker is the state's free-space guard (see state.MinFreeSpace).
type spaceChecker interface {
	CheckSpace() error // before a new operation
	CheckWrite() error // before any write
}

// Consensus is the CRDT consensus of one peer. LogPin, LogUnpin, Peers,
// IsTrusted, Trust and Stats are safe for concurrent use; Shutdown must be
// called once, and the other calls fail with ErrShutdown afterwards.
type Consensus struct {
	cfg   Config
	self  peer.ID
	log   zerolog.Logger
	db    *pebble.DB
	space spaceChecker
	trust *trustSet

	crdt     *crdt.Datastore
	bcast    *broadcaster
	branches *branchExchange
	bserv    blockservice.BlockService
	applies  *applyQueue
	journal  *journal
	commits  *committer

	// resolved is the last journal sequence number up to which every
	// operation is committed or was reported failed. released is where
	// the journal was last cut; only releaseJournal touches it, from one
	// goroutine at a time (start, the release loop, then Shutdown).
	resolved atomic.Uint64
	released uint64

	// unclean says the last run did not shut down cleanly. Set in New.
	unclean bool

	// keyMu serialises the operations on one key from journal write to
	// acknowledgement (see the package doc).
	keyMu stripe.Locks

	// opMu is held for reading by every operation and for writing by
	// Shutdown, which so waits for the operations in flight.
	opMu   sync.RWMutex
	closed bool

	ctx    context.Context // cancelled by Shutdown; ends the loops
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts the CRDT consensus of the peer h on db. ps must sign and
// strictly verify messages (the gossipsub defaults): trust is decided on the
// signer. applier hears every effective change of the pinset (see Applier).
// New commits the operations an earlier run journaled but did not commit
// before returning, and repairs the DAG in the background after an unclean
// stop.
func New(cfg Config, h host.Host, ps *pubsub.PubSub, db *state.DB, applier Applier, log zerolog.Logger) (*Consensus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ps == nil || h == nil || db == nil || applier == nil {
		return nil, errors.New("crdt consensus: host, pubsub, state and applier are required")
	}
	trust, _ := cfg.trust()
	topic, err := cfg.Topic()
	if err != nil {
		return nil, err
	}
	c := &Consensus{
		cfg:   cfg,
		self:  h.ID(),
		log:   log,
		db:    db.Pebble(),
		space: db,
		trust: trust,
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.start(h, ps, topic, applier, journalDir(db, cfg.DatastoreNamespace)); err != nil {
		if serr := c.stop(context.Background()); serr != nil {
			log.Error().Err(serr).Msg("crdt consensus: stop after a failed start")
		}
		return nil, fmt.Errorf("crdt consensus: %w", err)
	}
	return c, nil
}

// start builds the components in order; stop tears down whatever start
// built.
func (c *Consensus) start(h host.Host, ps *pubsub.PubSub, topic string, applier Applier, journalDir string) error {
	ns := c.cfg.DatastoreNamespace
	// The wrapper writes without syncing; see the package doc. It is never
	// closed: that would close the shared database.
	pds, err := pebbleds.NewDatastore("", pebbleds.WithPebbleDB(c.db))
	if err != nil {
		return fmt.Errorf("wrap database: %w", err)
	}
	c.unclean, err = c.markOpen()
	if err != nil {
		return err
	}
	resolved, err := c.loadResolved()
	if err != nil {
		return err
	}
	c.resolved.Store(resolved)
	c.released = resolved

	c.applies = newApplyQueue(pds, ns, applier, c.log)
	if err := c.applies.loadMarkers(c.db); err != nil {
		return err
	}
	c.applies.start()

	guarded := &guardedStore{Datastore: pds, check: c.space.CheckWrite}
	bstore := dagBlocks(guarded, ns)
	// Bitswap outlives c.ctx: the merge workers fetch until crdt.Close.
	exchange := bitswap.New(context.Background(), bsnet.NewFromIpfsHost(h), nil, bstore)
	// c.bcast is set before go-ds-crdt, the only caller, starts.
	c.branches = newBranchExchange(exchange, bstore, h, func() []peer.ID { return c.bcast.peers() }, c.log)
	c.bserv = blockservice.New(bstore, c.branches)

	c.bcast, err = joinTopic(ps, topic, c.self, c.validate, c.bserv, c.log)
	if err != nil {
		return err
	}

	opts := crdt.DefaultOptions()
	opts.Logger = crdtLogger{c.log}
	opts.RebroadcastInterval = c.cfg.RebroadcastInterval
	opts.DAGSyncerTimeout = c.cfg.DAGSyncTimeout
	// Repairs are scheduled by repairLoop.
	opts.RepairInterval = 0
	store := &observedStore{guardedStore: guarded, q: c.applies, merge: newMergeLock(mergeLockTimeout, c.log)}
	c.crdt, err = crdt.New(store, ds.NewKey(ns), merkledag.NewDAGService(c.bserv), c.bcast, opts)
	if err != nil {
		return fmt.Errorf("open crdt store: %w", err)
	}
	heads := func() []cid.Cid { return c.crdt.InternalStats(c.ctx).Heads }
	c.branches.setHeads(heads)
	if err := c.bcast.welcome(heads); err != nil {
		return err
	}
	if c.unclean {
		c.log.Warn().Msg("the last run did not shut down cleanly: repairing the DAG")
		c.crdt.MarkDirty(c.ctx)
	}

	if err := c.replayPebbleJournal(); err != nil {
		return err
	}
	if err := c.replay(journalDir, resolved, applier); err != nil {
		return err
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.repairLoop()
	}()
	go func() {
		defer c.wg.Done()
		c.releaseLoop()
	}()
	if c.cfg.batching() {
		c.commits = newBatcher(c.cfg.Batching, c.commitJournaled, c.log)
	} else {
		c.commits = newGroupCommitter(c.groupCommit, c.log)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.commits.run(c.ctx)
	}()
	c.log.Info().Str("topic", topic).Bool("batching", c.cfg.batching()).Msg("crdt consensus started")
	return nil
}

// dagBlocks is the block store of the CRDT DAG in d, under namespace ns
// (see the package doc).
func dagBlocks(d ds.Datastore, ns string) blockstore.Blockstore {
	return blockstore.NewBlockstore(namespace.Wrap(d, ds.NewKey(ns+"/b")))
}

// openKey marks a database a Consensus runs on; finding it at start means
// the last run did not shut down cleanly.
func (c *Consensus) openKey() []byte { return openKey(c.cfg.DatastoreNamespace) }

func openKey(namespace string) []byte { return []byte(namespace + "/o") }

// leftOpen reports whether the open marker is set: a Consensus runs on db,
// or the last one did not shut down cleanly.
func leftOpen(db *pebble.DB, namespace string) (bool, error) {
	_, closer, err := db.Get(openKey(namespace))
	switch {
	case err == nil:
		_ = closer.Close()
		return true, nil
	case errors.Is(err, pebble.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("read open marker: %w", err)
	}
}

func (c *Consensus) markOpen() (unclean bool, err error) {
	if unclean, err = leftOpen(c.db, c.cfg.DatastoreNamespace); err != nil {
		return false, err
	}
	// Synced: a crash soon after the start must still be seen as one.
	if err := c.db.Set(c.openKey(), nil, pebble.Sync); err != nil {
		return false, fmt.Errorf("write open marker: %w", err)
	}
	return unclean, nil
}

// resolvedKey holds the journal sequence number up to which every
// operation is resolved (big-endian uint64).
func (c *Consensus) resolvedKey() []byte { return resolvedKey(c.cfg.DatastoreNamespace) }

func resolvedKey(namespace string) []byte { return []byte(namespace + "/r") }

func (c *Consensus) loadResolved() (uint64, error) {
	return readResolved(c.db, c.resolvedKey())
}

func readResolved(db *pebble.DB, key []byte) (uint64, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read resolved journal position: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("read resolved journal position: %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// resolve records that the operations numbered up to seq need no commit at
// the next start: they are committed, or their callers were told that they
// failed. The record is not synced: pebble writes reach the disk in order,
// so after a crash it never claims more than what survived, and
// releaseJournal syncs before the journal forgets anything.
func (c *Consensus) resolve(seq uint64) {
	if err := c.db.Set(c.resolvedKey(), binary.BigEndian.AppendUint64(nil, seq), pebble.NoSync); err != nil {
		c.log.Error().Err(err).Uint64("seq", seq).Msg("record resolved journal operations; the next start commits them again")
		return
	}
	c.resolved.Store(seq)
}

// releaseJournal makes the resolved operations durable in pebble and drops
// them from the journal.
func (c *Consensus) releaseJournal() error {
	upTo := c.resolved.Load()
	if upTo == c.released {
		return nil
	}
	if err := c.sync(); err != nil {
		return err
	}
	if err := c.journal.release(upTo); err != nil {
		return err
	}
	c.released = upTo
	return nil
}

func (c *Consensus) releaseLoop() {
	t := time.NewTicker(journalReleaseInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if err := c.releaseJournal(); err != nil {
			c.log.Error().Err(err).Msg("release the journal")
		}
	}
}

// replay opens the journal and commits the operations an earlier run (or
// state import) journaled past resolved, a delta per groupCommitSize.
func (c *Consensus) replay(dir string, resolved uint64, applier Applier) error {
	n := 0
	var err error
	c.journal, err = openJournal(dir, c.cfg.FsyncAcks, resolved, c.log, func(ops []op) error {
		n += len(ops)
		c.resume(ops, applier)
		return c.commitJournaled(c.ctx, ops)
	})
	if err != nil {
		return err
	}
	if n > 0 {
		c.log.Info().Int("operations", n).Msg("committed the journaled operations of the last run")
	}
	return c.releaseJournal()
}

// resume tells applier of the journaled ops about to be committed again
// (see Applier.Resume). Repins are not changes of their own, and an unpin
// journaled by an older version, without its times, cannot be placed in
// time: both are left out.
func (c *Consensus) resume(ops []op, applier Applier) {
	for _, o := range ops {
		if o.pin {
			var pin api.Pin
			if pin.UnmarshalBinary(o.value) != nil || pin.Moved {
				continue
			}
			applier.Resume(pin.Cid, pin.Replaced, pin.Timestamp, pin.Timestamp)
			continue
		}
		ci, err := api.DecodeCid(strings.TrimPrefix(o.key, "/"))
		removed, at, ok := decodeUnpin(o.value)
		if err == nil && ok {
			applier.Resume(ci, removed, time.Time{}, at)
		}
	}
}

// commitJournaled commits journaled ops, in journal order, as one delta.
func (c *Consensus) commitJournaled(ctx context.Context, ops []op) error {
	if err := c.commitBatch(ctx, ops); err != nil {
		return err
	}
	c.resolve(ops[len(ops)-1].seq)
	return nil
}

// groupCommit journals and commits the operations of waiting callers. Once
// they are told the outcome, success or failure, their operations are
// resolved: a failed one is not committed at the next start.
func (c *Consensus) groupCommit(ctx context.Context, ops []op) error {
	err := c.journal.append(ops, nil)
	if err == nil {
		err = c.commitBatch(ctx, ops)
	}
	if last := ops[len(ops)-1].seq; last != 0 {
		c.resolve(last)
	}
	return err
}

// commitBatch commits ops as one CRDT delta, without syncing. Only the last
// op of each key counts: go-ds-crdt would otherwise keep the greatest of
// several values put in one delta, not the last.
func (c *Consensus) commitBatch(ctx context.Context, ops []op) error {
	ctx = context.WithoutCancel(ctx) // a commit half done is worse than a late one
	last := make(map[string]int, len(ops))
	for i, o := range ops {
		last[o.key] = i
	}
	b, err := c.crdt.Batch(ctx)
	if err != nil {
		return fmt.Errorf("open batch: %w", err)
	}
	for i, o := range ops {
		if last[o.key] != i {
			continue
		}
		switch {
		case c.laterVersion(ctx, o):
			c.log.Info().Str("key", o.key).Bool("unpin", !o.pin).Msg("a change gives way to a version made after it")
		case o.pin:
			err = b.Put(ctx, ds.NewKey(o.key), o.value)
		default:
			err = b.Delete(ctx, ds.NewKey(o.key))
		}
		if err != nil {
			return fmt.Errorf("batch %s: %w", o.key, err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch of %d: %w", len(ops), err)
	}
	return nil
}

// sync makes every write so far durable. Concurrent calls share fsyncs.
func (c *Consensus) sync() error {
	if err := c.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// LogPin commits pin to the shared pinset. It returns once the pin is
// durable on this peer, batching or not: it survives a crash of this peer's
// process from then on, and with fsync_acks a power failure too. Without
// batching the local state shows the pin when LogPin returns; with batching
// it shows it once the batch is committed.
func (c *Consensus) LogPin(ctx context.Context, pin api.Pin) error {
	value, err := pin.MarshalBinary()
	if err != nil {
		return fmt.Errorf("log pin %s: %w", pin.Cid, err)
	}
	return c.logOp(ctx, op{pin: true, key: keyOf(pin.Cid), value: value})
}

// LogUnpin removes pin, the version this peer holds, from the shared
// pinset, with the durability of LogPin. at is when the unpin was asked: a
// version made after it that is merged before the commit stays (see
// laterVersion).
func (c *Consensus) LogUnpin(ctx context.Context, pin api.Pin, at time.Time) error {
	return c.logOp(ctx, op{key: keyOf(pin.Cid), value: encodeUnpin(pin.Timestamp, at)})
}

// An unpin's journal value: the timestamp of the version it removes and
// when it was asked, each as Unix seconds (varint) and nanoseconds
// (uvarint). An unpin journaled without them (an older journal) removes
// whatever it finds.
func encodeUnpin(removed, at time.Time) []byte {
	var b []byte
	for _, t := range []time.Time{removed, at} {
		b = binary.AppendVarint(b, t.Unix())
		b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	return b
}

func decodeUnpin(v []byte) (removed, at time.Time, ok bool) {
	var ts [2]time.Time
	for i := range ts {
		sec, n := binary.Varint(v)
		if n <= 0 {
			return time.Time{}, time.Time{}, false
		}
		v = v[n:]
		nsec, n := binary.Uvarint(v)
		if n <= 0 || nsec >= 1e9 {
			return time.Time{}, time.Time{}, false
		}
		v = v[n:]
		ts[i] = time.Unix(sec, int64(nsec))
	}
	return ts[0], ts[1], len(v) == 0
}

// laterVersion reports whether o, about to be committed, would replace or
// remove a version of the pin made after o was: one merged meanwhile (o
// waited in a batch, or in the journal across a crash, or another peer's
// change arrived between this peer's read and its commit). A CRDT removal
// takes every version it finds, and a put stacks on whatever is there, so
// the later change would be lost; o gives way to it instead, as the earlier
// change. The version o names as the one it replaces (an update's
// Replaced, an unpin's removed version) and o's own version (a repin) are
// never in its way, whatever the clocks say: o was made knowing them.
func (c *Consensus) laterVersion(ctx context.Context, o op) bool {
	var replaced, own, made time.Time
	if o.pin {
		var pin api.Pin
		if pin.UnmarshalBinary(o.value) != nil {
			return false
		}
		replaced, own, made = pin.Replaced, pin.Timestamp, pin.Made()
	} else {
		var ok bool
		if replaced, made, ok = decodeUnpin(o.value); !ok {
			return false
		}
	}
	value, err := c.crdt.Get(ctx, ds.NewKey(o.key))
	if err != nil {
		return false // none, or unreadable: commit as asked
	}
	var cur api.Pin
	if cur.UnmarshalBinary(value) != nil || cur.Timestamp.Equal(replaced) || cur.Timestamp.Equal(own) {
		return false
	}
	return cur.Made().After(made)
}

// keyOf is the CRDT key of a pin.
func keyOf(c api.Cid) string { return "/" + c.String() }

// logOp journals o and commits it, in the configured mode. It returns
// ErrShutdown after Shutdown. The commit does not stop when ctx is done
// once the operation is queued.
func (c *Consensus) logOp(ctx context.Context, o op) error {
	if o.key == "/" {
		return errors.New("crdt consensus: pin without a cid")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// A full disk refuses the operation here, with a clear error, rather
	// than after it is journaled, where pebble would die of it.
	if err := c.space.CheckSpace(); err != nil {
		return fmt.Errorf("crdt consensus: %s: %w", o.key, err)
	}
	c.opMu.RLock()
	defer c.opMu.RUnlock()
	if c.closed {
		return ErrShutdown
	}
	defer c.keyMu.LockKey(o.key)()
	if c.commits.batching() {
		return c.logBatched(o)
	}
	// The group commit journals o before it commits it.
	if err := <-c.commits.add(o); err != nil {
		return fmt.Errorf("crdt consensus: commit %s: %w", o.key, err)
	}
	// The operation is durable: apply it here before acknowledging.
	c.applies.apply(o.key)
	return nil
}

// logBatched journals o and queues it for the next batch, in journal
// order.
func (c *Consensus) logBatched(o op) error {
	if err := c.commits.reserve(); err != nil {
		return err
	}
	ops, queued := []op{o}, false
	err := c.journal.append(ops, func() {
		c.commits.add(ops[0])
		queued = true
	})
	if !queued {
		c.commits.release()
	}
	return err
}

// Peers returns the peers known to be in the cluster: this peer and the
// peers subscribed to the cluster's pubsub topic, trusted or not. A peer
// that is down or partitioned away is not listed.
func (c *Consensus) Peers(context.Context) ([]peer.ID, error) {
	c.opMu.RLock()
	defer c.opMu.RUnlock()
	if c.closed {
		return nil, ErrShutdown
	}
	return append([]peer.ID{c.self}, c.bcast.peers()...), nil
}

// Stats shows how far this peer is in merging the DAG, so that a lagging
// peer is visible.
type Stats struct {
	Heads     int    // current DAG heads
	MaxHeight uint64 // height of the highest head
	// QueuedJobs is the number of DAG nodes fetched but not merged yet.
	QueuedJobs int
	// Dirty means a branch could not be fetched or merged and a repair is
	// due.
	Dirty bool
	// Batched is the number of operations waiting for a batch commit.
	Batched int
	// Unclean says this run started after a run that did not shut down
	// cleanly, and so began with a repair.
	Unclean bool
	// Unapplied is the number of committed changes waiting for the
	// Applier.
	Unapplied int
}

// Stats returns the current figures.
func (c *Consensus) Stats(ctx context.Context) (Stats, error) {
	c.opMu.RLock()
	defer c.opMu.RUnlock()
	if c.closed {
		return Stats{}, ErrShutdown
	}
	in := c.crdt.InternalStats(ctx)
	s := Stats{
		Heads:      len(in.Heads),
		MaxHeight:  in.MaxHeight,
		QueuedJobs: in.QueuedJobs,
		Dirty:      c.crdt.IsDirty(ctx),
		Unapplied:  c.applies.pending(),
		Batched:    c.commits.size(),
		Unclean:    c.unclean,
	}
	return s, nil
}

// repairLoop repairs a dirty store: the first attempt comes within a check
// interval (the shorter of rebroadcast_interval and repair_interval), and
// failing attempts back off up to repair_interval.
func (c *Consensus) repairLoop() {
	if c.cfg.RepairInterval == 0 {
		return
	}
	check := min(c.cfg.RebroadcastInterval, c.cfg.RepairInterval)
	backoff := check
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
		}
		next := check
		if c.crdt.IsDirty(c.ctx) {
			start := time.Now()
			// go-ds-crdt's repair walks from the heads only: first
			// unmark what a walk cut short left out of their reach.
			err := c.sweep()
			if err == nil {
				err = c.crdt.Repair(c.ctx)
			}
			switch {
			case c.ctx.Err() != nil:
				return
			case err != nil || c.crdt.IsDirty(c.ctx):
				c.log.Warn().Err(err).Dur("retry_in", backoff).Msg("DAG repair failed")
				next = backoff
				backoff = min(2*backoff, c.cfg.RepairInterval)
			default:
				c.log.Info().Dur("took", time.Since(start)).Msg("DAG repaired")
				backoff = check
			}
		}
		timer.Reset(next)
	}
}

// sweep removes the processed marks of the DAG nodes that no head leads
// to (see sweepOrphans).
func (c *Consensus) sweep() error {
	heads := c.crdt.InternalStats(c.ctx).Heads
	n, err := sweepOrphans(c.ctx, c.db, c.bserv.Blockstore(), c.cfg.DatastoreNamespace, heads)
	if err != nil {
		return fmt.Errorf("sweep orphaned DAG nodes: %w", err)
	}
	if n > 0 {
		c.log.Warn().Int("nodes", n).Msg("found DAG nodes merged by a walk that did not finish; they are merged again when announced")
	}
	return nil
}

// Shutdown stops the consensus: it waits for the operations in flight,
// commits the pending batch (unless ctx is already done: then it stays in
// the journal for the next start), stops merging, applies what is committed
// and leaves the topic. After a Shutdown the next start needs no repair.
func (c *Consensus) Shutdown(ctx context.Context) error {
	c.opMu.Lock()
	if c.closed {
		c.opMu.Unlock()
		return ErrShutdown
	}
	c.closed = true
	c.opMu.Unlock()
	if err := c.stop(ctx); err != nil {
		return fmt.Errorf("crdt consensus: shutdown: %w", err)
	}
	// Clean: the next start needs no repair. The sync also makes every
	// resolved operation durable, so the journal can forget them.
	if err := c.db.Delete(c.openKey(), pebble.Sync); err != nil {
		return fmt.Errorf("crdt consensus: shutdown: %w", err)
	}
	if err := c.journal.release(c.resolved.Load()); err != nil {
		return fmt.Errorf("crdt consensus: shutdown: %w", err)
	}
	c.log.Info().Msg("crdt consensus stopped")
	return nil
}

// stop tears down whatever start built, in reverse order.
func (c *Consensus) stop(ctx context.Context) error {
	c.cancel()
	c.wg.Wait()
	var errs []error
	if c.commits != nil && c.commits.batching() && ctx.Err() == nil {
		if err := c.commits.flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("commit pending batch: %w", err))
		}
	}
	if c.crdt != nil {
		// Stops the merge workers and the receiving loop.
		errs = append(errs, c.crdt.Close())
	}
	if c.bcast != nil {
		errs = append(errs, c.bcast.close())
	}
	if c.applies != nil {
		c.applies.close()
	}
	if c.branches != nil {
		c.branches.close()
	}
	if c.bserv != nil {
		errs = append(errs, c.bserv.Close())
	}
	if c.journal != nil {
		errs = append(errs, c.journal.close())
	}
	return errors.Join(errs...)
}

// journalDir is the folder of the journal of the consensus under namespace
// ns, inside the state database's folder.
func journalDir(db *state.DB, ns string) string {
	return filepath.Join(db.Dir(), "crdt-journal"+strings.ReplaceAll(ns, "/", "-"))
}
