package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
)

// The shared pinset merges concurrent changes its own way: an addition
// wins over a concurrent removal, and of two concurrent versions the one
// committed higher in the DAG wins, whichever was made last. Two kinds of
// change would so undo an acknowledged pin, update or unpin:
//
//   - A repin reads a pin, re-allocates it and commits it back. When the
//     pin changed meanwhile, here or on another peer, the repin is
//     computed from a stale version.
//   - A change made on another peer without knowing this peer's change
//     (that peer had not merged it yet, or it waited in a batch), and
//     older than it: the later change should stand.
//
// A repin keeps the pin's timestamp and marks the version moved, so a
// moved version names the version it came from; an update names the
// version it replaced (api.Pin.Replaced), a new pin none. The guards:
//
//   - On this peer, pin changes and repins of one CID take turns
//     (pinLocks), and a repin waits for the apply of a change this peer
//     committed: until then, with batching, the state still holds the
//     version before it (recentOps.pending).
//   - A peer that committed a change remembers it for a while
//     (recentOps): the version it replaced, and when. A version applied
//     later that undoes it is put right: the peer removes the pin again,
//     or commits its version again. Such a version is a moved version of
//     the replaced one or an older one, or a version made before this
//     change and without knowing it: it did not update this change's
//     version (recentOp.undoneBy). Between two concurrent changes the
//     clocks of the peers that made them so decide: peers' clocks must
//     agree (NTP) to better than the time between two changes of a pin.
//   - A peer that applied a removal keeps its record (state.RemovedAt):
//     a moved version of the removed version that comes back is removed
//     again, on whichever peer sees it. A new pin or an update carries
//     another timestamp, and a restore from an export is not marked moved:
//     they stay.
//   - Before a sweep repins, it asks the other peers whether they know a
//     newer change (see pinVersion below).

const (
	// recentWindow is how long a peer remembers the versions its unpins
	// and updates replaced: longer than a repin takes to reach every peer.
	recentWindow = 10 * time.Minute
	// freshWindow is how long it remembers the new pins it committed (so
	// many, under ingest, that they are kept shorter): another peer's
	// concurrent new pin of the same CID arrives within a batch's age, or
	// soon after that peer resumes.
	freshWindow = time.Minute
)

// recentOp is a pin, an update or an unpin this peer committed.
type recentOp struct {
	replaced time.Time // timestamp of the version it replaced; zero for a new pin
	version  time.Time // timestamp of the new version; zero for an unpin
	at       time.Time // when it was asked
	noted    time.Time // when this process noted it: at, or a restart for a resumed op
	applied  bool      // applied here
}

// expired says whether op is past the time it is remembered for.
func (op recentOp) expired(now time.Time) bool {
	window := recentWindow
	if op.replaced.IsZero() {
		window = freshWindow
	}
	return now.Sub(op.noted) > window
}

// recentOps remembers them by CID key, and the repins this peer committed
// and has not applied yet (with batching, the state holds the version
// before them meanwhile, and another sweep would move the pin again). It
// is safe for concurrent use.
type recentOps struct {
	mu        sync.Mutex
	ops       map[string]recentOp
	moves     map[string]time.Time // when each repin was committed
	lastPrune time.Time
}

// prune drops what is past its time, at most every freshWindow/4. The
// caller holds r.mu.
func (r *recentOps) prune(now time.Time) {
	if now.Sub(r.lastPrune) <= freshWindow/4 {
		return
	}
	r.lastPrune = now
	for k, op := range r.ops {
		if op.expired(now) {
			delete(r.ops, k)
		}
	}
	for k, at := range r.moves {
		if now.Sub(at) > freshWindow {
			delete(r.moves, k)
		}
	}
}

// moving records a repin of ci about to be committed (on), or drops it:
// the commit failed, or a moved version or a removal of ci was applied.
func (r *recentOps) moving(ci api.Cid, on bool) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !on {
		delete(r.moves, ci.KeyString())
		return
	}
	if r.moves == nil {
		r.moves = map[string]time.Time{}
	}
	r.prune(now)
	r.moves[ci.KeyString()] = now
}

// note records op, a new pin (replaced zero), an update or an unpin
// (version zero) of ci about to be committed; forget undoes it when the
// commit failed.
func (r *recentOps) note(ci api.Cid, op recentOp) {
	op.noted = time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops == nil {
		r.ops = map[string]recentOp{}
	}
	r.prune(op.noted)
	r.ops[ci.KeyString()] = op
}

// recallUnpins notes the unpins this peer made within recentWindow, from
// the removal records: the shared pinset does not say when a removal was
// made, so an update made before one of them that arrives after a
// restart (it waited in another peer's batch) must still be undone here.
func (c *Cluster) recallUnpins() {
	n := 0
	err := c.state.OwnUnpins(time.Now().Add(-recentWindow), func(ci api.Cid, removed, at time.Time) error {
		c.recent.note(ci, recentOp{replaced: removed, at: at, applied: true})
		n++
		return nil
	})
	if err != nil {
		c.log.Warn().Err(err).Msg("recall this peer's recent unpins")
	}
	if n > 0 {
		c.log.Info().Int("unpins", n).Msg("recalled this peer's recent unpins")
	}
}

func (r *recentOps) forget(ci api.Cid) {
	r.mu.Lock()
	delete(r.ops, ci.KeyString())
	r.mu.Unlock()
}

// when is the time of the op: the update's timestamp, or when the unpin
// was committed.
func (op recentOp) when() time.Time {
	if op.version.IsZero() {
		return op.at
	}
	return op.version
}

// undoneBy reports whether version w, applied after op was committed,
// undoes it (see the guards above).
func (op recentOp) undoneBy(w api.Pin) bool {
	switch {
	case !op.version.IsZero() && w.Timestamp.Equal(op.version):
		return false // the change itself, moved or not
	case w.Moved && !op.replaced.IsZero() && !w.Timestamp.After(op.replaced):
		return true // a repin of the replaced version or an older one
	case !op.version.IsZero() && w.Replaced.Equal(op.version):
		return false // an update of this version: made after it
	}
	return w.Made().Before(op.when())
}

// other reports whether this peer committed a change of pin's CID
// recently, and pin is another version than that change's.
func (r *recentOps) other(pin api.Pin) bool {
	op, ok := r.get(pin.Cid)
	return ok && !pin.Timestamp.Equal(op.version)
}

// get returns the op on ci this peer committed within recentWindow.
func (r *recentOps) get(ci api.Cid) (recentOp, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op, ok := r.ops[ci.KeyString()]
	if ok && op.expired(time.Now()) {
		delete(r.ops, ci.KeyString())
		return recentOp{}, false
	}
	return op, ok
}

// applied marks the op on ci applied, when the applied change is it: the
// update's version, or a removal for an unpin. A version made after the op
// ends it too: the op gave way to it (see the consensus's laterVersion),
// or was applied and this version came after.
func (r *recentOps) applied(ci api.Cid, version time.Time, removal bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op, ok := r.ops[ci.KeyString()]
	unpin := op.version.IsZero()
	if ok && !op.applied && (removal && unpin || !removal && (op.version.Equal(version) || version.After(op.when()))) {
		op.applied = true
		r.ops[ci.KeyString()] = op
	}
}

// pending says whether this peer committed a change or a repin of ci
// that it has not applied yet: the state still holds the version before
// it.
func (r *recentOps) pending(ci api.Cid) bool {
	if op, ok := r.get(ci); ok && !op.applied {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.moves[ci.KeyString()]
	return ok && time.Since(at) <= freshWindow
}

// correction is a change to commit again: the removal of a pin that came
// back, or an update a stale repin undid.
type correction struct {
	pin    api.Pin
	remove bool
	// at is when the removal was first asked: a pin made after it, merged
	// before the correction commits, stays.
	at time.Time
	// undoing is the version put right. The shared pinset merges a
	// branch from its tip down and counts it in the DAG's height only
	// once it is all merged: a correction committed while the rest of
	// the branch that brought undoing is merged sits lower than it, and
	// loses. So the state is checked again after a while, and while it
	// still holds undoing the correction is committed again.
	undoing api.Pin
	tries   int
}

const (
	// correctionCheck is when the state is first checked after a
	// correction; each new attempt doubles it, up to correctionTries
	// attempts.
	correctionCheck = 2 * time.Second
	correctionTries = 5
)

// stillUndone reports whether the state still holds the version fix put
// right.
func (c *Cluster) stillUndone(fix correction) bool {
	cur, err := c.state.Get(fix.pin.Cid)
	if err != nil {
		return false
	}
	a, aerr := cur.MarshalBinary()
	b, berr := fix.undoing.MarshalBinary()
	return aerr == nil && berr == nil && bytes.Equal(a, b)
}

// corrections queues them for one worker. It is safe for concurrent use.
type corrections struct {
	mu    sync.Mutex
	queue []correction
	wake  chan struct{} // capacity 1
}

func (c *Cluster) correct(fix correction) {
	if c.cfg.FollowerMode {
		return // a trusted peer puts it right
	}
	c.fixes.mu.Lock()
	c.fixes.queue = append(c.fixes.queue, fix)
	c.fixes.mu.Unlock()
	select {
	case c.fixes.wake <- struct{}{}:
	default: // a wake-up is pending
	}
}

// checkStale is called with every pin applied here, and current, the
// version it replaced (ok false: none; read only for a pin this peer
// changed recently): it queues a correction when the pin undoes a recent
// change of this peer or a removal, and drops the removal record when the
// pin is pinned again.
func (c *Cluster) checkStale(pin api.Pin, current api.Pin, ok bool) {
	if op, known := c.recent.get(pin.Cid); known && op.undoneBy(pin) {
		by := "an older change made without knowing it"
		if pin.Moved {
			by = "a repin"
		}
		switch {
		case op.version.IsZero():
			c.log.Info().Stringer("cid", pin.Cid).Str("by", by).Msg("an unpin of this peer was undone: removing the pin again")
			c.correct(correction{pin: pin, remove: true, at: op.at, undoing: pin})
			return
		case ok && current.Timestamp.Equal(op.version):
			c.log.Info().Stringer("cid", pin.Cid).Str("by", by).Msg("an update of this peer was undone: committing the update again")
			c.correct(correction{pin: current, undoing: pin})
			return
		}
	}
	removedAt, removed, err := c.state.RemovedAt(pin.Cid)
	switch {
	case err != nil:
		c.log.Warn().Err(err).Stringer("cid", pin.Cid).Msg("read removal record")
	case !removed:
	case pin.Moved && pin.Timestamp.Equal(removedAt):
		c.log.Info().Stringer("cid", pin.Cid).Msg("a removed pin came back re-allocated: removing it again")
		c.correct(correction{pin: pin, remove: true, at: pin.Timestamp, undoing: pin})
	default:
		if err := c.state.ForgetRemoved(pin.Cid); err != nil {
			c.log.Warn().Err(err).Stringer("cid", pin.Cid).Msg("forget removal record")
		}
	}
}

// correctLoop commits the corrections checkStale queued, and each again
// while the state still holds the version it put right (see correction).
func (c *Cluster) correctLoop() {
	type check struct {
		fix correction
		due time.Time
	}
	var checks []check
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.fixes.wake:
		case <-timer.C:
		}
		c.fixes.mu.Lock()
		fixes := c.fixes.queue
		c.fixes.queue = nil
		c.fixes.mu.Unlock()
		now := time.Now()
		waiting := checks[:0]
		for _, ch := range checks {
			switch {
			case now.Before(ch.due):
				waiting = append(waiting, ch)
			case c.stillUndone(ch.fix):
				c.log.Info().Stringer("cid", ch.fix.pin.Cid).Int("attempt", ch.fix.tries+1).Msg("a correction lost the merge to the version it put right: committing it again")
				fixes = append(fixes, ch.fix)
			}
		}
		checks = waiting
		for _, fix := range fixes {
			var err error
			if fix.remove {
				err = c.consensus.LogUnpin(c.ctx, fix.pin, fix.at)
			} else {
				err = c.consensus.LogPin(c.ctx, fix.pin)
			}
			if err != nil && c.ctx.Err() == nil {
				c.log.Warn().Err(err).Stringer("cid", fix.pin.Cid).Bool("remove", fix.remove).Msg("commit a correction")
			}
			if fix.tries++; fix.tries < correctionTries {
				checks = append(checks, check{fix: fix, due: now.Add(correctionCheck << (fix.tries - 1))})
			}
		}
		timer.Stop()
		if len(checks) > 0 {
			next := slices.MinFunc(checks, func(a, b check) int { return a.due.Compare(b.due) })
			timer.Reset(time.Until(next.due))
		}
	}
}

// A peer that resumes after a pause or restarts may hold an old version of
// a pin for a while, until it merges the changes it missed; repinning from
// it would commit that old version back (the guards above then undo it,
// seconds later). Before a sweep repins, it asks the other live peers
// what they hold of the pins (pinVersion) and leaves the pins one of them
// knows a newer change of: a later sweep moves the version it merged by
// then.

// pinVersion is what a peer knows of a pin: the timestamp of the version
// in its state (zero: none), the timestamp of the version it last removed
// (zero: none), and whether a change it committed is not applied yet.
type pinVersion struct {
	Held    time.Time `json:"held,omitzero"`
	Removed time.Time `json:"removed,omitzero"`
	Pending bool      `json:"pending,omitempty"`
}

// newer reports whether v knows of a change later than the version with
// timestamp ts: a newer version, its removal, or a change still pending.
func (v pinVersion) newer(ts time.Time) bool {
	return v.Pending || v.Held.After(ts) || !v.Removed.IsZero() && !v.Removed.Before(ts)
}

// merge keeps the latest of what two peers know.
func (v pinVersion) merge(o pinVersion) pinVersion {
	if o.Held.After(v.Held) {
		v.Held = o.Held
	}
	if o.Removed.After(v.Removed) {
		v.Removed = o.Removed
	}
	v.Pending = v.Pending || o.Pending
	return v
}

// localVersions answers another peer's pinVersion request, one per CID.
func (c *Cluster) localVersions(cids []api.Cid) ([]pinVersion, error) {
	out := make([]pinVersion, len(cids))
	for i, ci := range cids {
		pin, err := c.state.Get(ci)
		switch {
		case err == nil:
			out[i].Held = pin.Timestamp
		case !errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("pin version %s: %w", ci, err)
		}
		removed, ok, err := c.state.RemovedAt(ci)
		if err != nil {
			return nil, fmt.Errorf("pin version %s: %w", ci, err)
		}
		if ok {
			out[i].Removed = removed
		}
		out[i].Pending = c.recent.pending(ci)
	}
	return out, nil
}

const (
	// versionBatch bounds the CIDs of one pinVersion request (about 80
	// bytes each in the request and the reply).
	versionBatch = 4096
	// versionTimeout bounds a peer's answer: two reads per pin. A peer
	// that is hung but not yet counted down must not hold the sweep.
	versionTimeout = 5 * time.Second
)

// peerVersions asks peers, in parallel, what they know of cids, and
// merges their answers by CID key. Only trusted peers are asked: their
// changes are the ones merged here, and an untrusted peer could hold every
// repin back. A peer that does not answer in time is left out: the sweep
// then acts on what the others know, as it would without asking.
func (c *Cluster) peerVersions(ctx context.Context, cids []api.Cid, peers []peer.ID) map[string]pinVersion {
	seen := make(map[string]pinVersion, len(cids))
	if c.isTrusted != nil {
		peers = slices.DeleteFunc(slices.Clone(peers), func(p peer.ID) bool { return !c.isTrusted(p) })
	}
	if c.rpc == nil || len(peers) == 0 {
		return seen
	}
	for start := 0; start < len(cids); start += versionBatch {
		batch := cids[start:min(start+versionBatch, len(cids))]
		for _, r := range p2p.CallAll[[]pinVersion](ctx, c.rpc, peers, rpcPinVersions, batch, versionTimeout) {
			if r.Err == nil && len(r.Value) != len(batch) {
				r.Err = fmt.Errorf("%d answers for %d pins", len(r.Value), len(batch))
			}
			if r.Err != nil {
				c.log.Info().Err(r.Err).Stringer("peer", r.Peer).Msg("repin: a peer did not say which versions of the pins it holds")
				continue
			}
			for i, ci := range batch {
				k := ci.KeyString()
				seen[k] = seen[k].merge(r.Value[i])
			}
		}
	}
	return seen
}
