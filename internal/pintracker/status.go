package pintracker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

// Status returns the local status of c.
func (t *Tracker) Status(ctx context.Context, c api.Cid) (api.PinInfo, error) {
	sh := t.shard(c)
	sh.mu.Lock()
	var rec state.LocalStatus
	var ok bool
	var err error
	var opPin *api.Pin
	if op := sh.ops[c.KeyString()]; op != nil {
		rec, ok = t.opRecord(op), true
		p := op.pin
		opPin = &p
	} else {
		rec, ok, err = t.records.GetStatus(c)
	}
	sh.mu.Unlock()
	if err != nil {
		return api.PinInfo{}, fmt.Errorf("status %s: %w", c, err)
	}
	pin, err := t.pinset.Get(c)
	inState := err == nil
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return api.PinInfo{}, fmt.Errorf("status %s: %w", c, err)
	}
	if !inState {
		pin = api.Pin{Cid: c}
		if opPin != nil {
			pin = *opPin
		}
	}
	if !ok {
		rec = t.untrackedStatus(&pin, inState)
	}
	if opPin == nil && inState && rec.Status == api.TrackerStatusPinned {
		rec = t.checkHeld(ctx, pin, rec)
	}
	return t.pinInfo(&pin, rec), nil
}

// lostPin is the error of a pin kubo no longer holds.
const lostPin = "the item should be pinned but it is not"

// checkHeld asks kubo whether it still holds a pin its record says is
// pinned, as the status of one CID does in the reference: kubo may have
// dropped it behind the cluster's back (ipfs pin rm, a repository
// reset). Such a pin becomes unexpectedly_unpinned, which recover and the
// periodic recover act on. While kubo cannot answer, this one reply says
// cluster_error.
func (t *Tracker) checkHeld(ctx context.Context, pin api.Pin, rec state.LocalStatus) state.LocalStatus {
	ctx, cancel := context.WithTimeout(ctx, kuboCheckTimeout)
	defer cancel()
	st, err := t.ipfs.PinLsCid(ctx, pin)
	switch {
	case err != nil:
		rec.Status, rec.Error = api.TrackerStatusClusterError, fmt.Sprintf("cannot check the pin in kubo: %v", err)
		return rec
	case st.IsPinned():
		return rec
	}
	if lost, ok := t.markLost(pin.Cid, time.Time{}); ok {
		return lost
	}
	return rec // it changed meanwhile: the newer record stands
}

// markLost records that kubo lost the pin of c, if c's record still says
// pinned, no operation runs on it and the record is not newer than since
// (when kubo was asked; zero: any age).
func (t *Tracker) markLost(c api.Cid, since time.Time) (state.LocalStatus, bool) {
	sh := t.shard(c)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now, ok, err := t.records.GetStatus(c)
	if err != nil || !ok || sh.ops[c.KeyString()] != nil || now.Status != api.TrackerStatusPinned ||
		(!since.IsZero() && now.TS.After(since)) {
		return now, false
	}
	lost := state.LocalStatus{Status: api.TrackerStatusUnexpectedlyUnpinned, TS: time.Now(), Error: lostPin}
	if err := t.setStatus(c, lost); err != nil {
		t.log.Warn().Err(err).Stringer("cid", c).Msg("record a pin kubo lost")
	}
	t.log.Warn().Stringer("cid", c).Msg("kubo no longer holds a pinned item; recover pins it again")
	return lost, true
}

// findLost reads kubo's pin list once and marks every pinned record whose
// pin is not in it as unexpectedly_unpinned: what a status listing that
// asks for that status must see, as the reference sees it.
func (t *Tracker) findLost(ctx context.Context) error {
	since := time.Now()
	held, err := t.kuboPins(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	// markLost looks again under the CID's lock, and leaves records
	// newer than kubo's list alone.
	var lost []api.Cid
	err = t.records.ListByStatus(ctx, api.TrackerStatusPinned, func(c api.Cid, _ state.LocalStatus) error {
		h := maphash.String(t.seed, c.KeyString())
		if _, ok := held.recursive[h]; ok {
			return nil
		}
		if _, ok := held.direct[h]; ok {
			// Few pins are direct: only these need the pin's mode.
			pin, err := t.pinset.Get(c)
			if err != nil || held.holds(h, &pin) {
				return nil // gone from the pinset: not lost
			}
		}
		lost = append(lost, c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	for _, c := range lost {
		t.markLost(c, since)
	}
	return nil
}

// kuboHeld is kubo's pin list: the CIDs it pins recursively and those it
// pins directly, as 8-byte hashes.
type kuboHeld struct{ recursive, direct map[uint64]struct{} }

// holds says whether kubo holds pin, whose CID hashes to h, as the
// connector's PinLsCid would: recursively, or for a direct pin directly
// or recursively. A recursive pin that kubo pins only directly is not
// held: its DAG is not.
func (k kuboHeld) holds(h uint64, pin *api.Pin) bool {
	if _, ok := k.recursive[h]; ok {
		return true
	}
	_, ok := k.direct[h]
	return ok && pin.IsDirect()
}

// kuboPins reads kubo's recursive and direct pins.
func (t *Tracker) kuboPins(ctx context.Context) (kuboHeld, error) {
	held := kuboHeld{recursive: make(map[uint64]struct{}), direct: make(map[uint64]struct{})}
	err := t.ipfs.PinLs(ctx, "recursive,direct", func(p api.IPFSPinInfo) error {
		switch p.Type {
		case api.IPFSPinStatusRecursive:
			held.recursive[maphash.String(t.seed, p.Cid.KeyString())] = struct{}{}
		case api.IPFSPinStatusDirect:
			held.direct[maphash.String(t.seed, p.Cid.KeyString())] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return kuboHeld{}, fmt.Errorf("list kubo pins: %w", err)
	}
	return held, nil
}

// untrackedStatus is the status of a CID with no record: unpinned when it
// is not in the pinset; otherwise it is waiting for the startup sweep to
// look at it, or (after the sweep) missing where it should be.
func (t *Tracker) untrackedStatus(pin *api.Pin, inState bool) state.LocalStatus {
	switch {
	case !inState:
		return state.LocalStatus{Status: api.TrackerStatusUnpinned, TS: time.Now()}
	case pin.Type == api.MetaType:
		return state.LocalStatus{Status: api.TrackerStatusSharded, TS: pin.Timestamp}
	case pin.IsRemote(t.cfg.Peer):
		return state.LocalStatus{Status: api.TrackerStatusRemote, TS: pin.Timestamp}
	}
	select {
	case <-t.reconciled:
		return state.LocalStatus{Status: api.TrackerStatusUnexpectedlyUnpinned, TS: time.Now(), Error: lostPin}
	default:
		return state.LocalStatus{Status: api.TrackerStatusPinQueued, TS: pin.Timestamp}
	}
}

// bulkStatuses are the statuses most pins settle in. A filter that asks
// for them returns a large share of the pinset, which one sequential scan
// of pins and records serves faster than index entries plus a lookup each.
const bulkStatuses = api.TrackerStatusPinned | api.TrackerStatusRemote

// StatusAll streams the local status of every tracked CID whose status
// matches filter (undefined = all). A filter for the rarer statuses (errors,
// queued, in progress) walks the status index, so it costs what it
// returns; a filter that includes the bulk statuses scans the pinset joined
// with its records once.
//
// A filter that names unexpectedly_unpinned first asks kubo for its pins
// (findLost), so that pins removed behind the cluster's back show; other
// listings read the records only, which recover and the periodic
// reconciliation keep true. Kubo is asked for its identity first: while
// it does not answer, the pinned records, kubo's word from when it last
// did, are listed as cluster_error with why, as the status of one CID
// says, and the others as they are.
func (t *Tracker) StatusAll(ctx context.Context, filter api.TrackerStatus, fn func(api.PinInfo) error) error {
	if kuboErr := t.kuboAnswers(ctx); kuboErr != nil {
		// Pinned records change status: one scan serves every filter.
		return t.listAll(ctx, filter, func(rec state.LocalStatus) state.LocalStatus {
			if rec.Status == api.TrackerStatusPinned {
				rec.Status, rec.Error = api.TrackerStatusClusterError, fmt.Sprintf("cannot check the pin in kubo: %v", kuboErr)
			}
			return rec
		}, fn)
	}
	if filter&api.TrackerStatusUnexpectedlyUnpinned != 0 {
		if err := t.findLost(ctx); err != nil {
			return err
		}
	}
	if filter != api.TrackerStatusUndefined && filter&bulkStatuses == 0 {
		return t.records.ListByStatus(ctx, filter, func(c api.Cid, rec state.LocalStatus) error {
			pin, err := t.pinset.Get(c)
			if errors.Is(err, state.ErrNotFound) {
				pin = api.Pin{Cid: c}
			} else if err != nil {
				return fmt.Errorf("status %s: %w", c, err)
			}
			return fn(t.pinInfo(&pin, rec))
		})
	}
	return t.listAll(ctx, filter, nil, fn)
}

// kuboCheckTimeout bounds a question whose answer a user waits for: is
// kubo there (before a listing or a recover asks it for every pin), does
// it hold this one pin. A hung kubo then gives an error saying so.
const kuboCheckTimeout = 10 * time.Second

// kuboAnswers asks kubo for its identity, for at most kuboCheckTimeout.
func (t *Tracker) kuboAnswers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, kuboCheckTimeout)
	defer cancel()
	_, err := t.ipfs.ID(ctx)
	return err
}

// listAll lists the pinset joined with the records, then the unpins of
// CIDs that left the pinset, passing each record through adjust when
// given before matching it against filter.
func (t *Tracker) listAll(ctx context.Context, filter api.TrackerStatus, adjust func(state.LocalStatus) state.LocalStatus, fn func(api.PinInfo) error) error {
	if adjust == nil {
		adjust = func(rec state.LocalStatus) state.LocalStatus { return rec }
	}
	err := t.records.ListWithStatus(ctx, func(pin api.Pin, rec state.LocalStatus, ok bool) error {
		if !ok {
			rec = t.untrackedStatus(&pin, true)
		}
		if rec = adjust(rec); !rec.Status.Match(filter) {
			return nil
		}
		return fn(t.pinInfo(&pin, rec))
	})
	if err != nil {
		return err
	}
	// Unpins in progress or failed belong to CIDs that have left the
	// pinset, so the join did not see them.
	unpins := (api.TrackerStatusUnpinQueued | api.TrackerStatusUnpinning | api.TrackerStatusUnpinError) & filter
	if filter == api.TrackerStatusUndefined {
		unpins = api.TrackerStatusUnpinQueued | api.TrackerStatusUnpinning | api.TrackerStatusUnpinError
	}
	if unpins == 0 {
		return nil
	}
	return t.records.ListByStatus(ctx, unpins, func(c api.Cid, rec state.LocalStatus) error {
		pin, err := t.pinset.Get(c)
		switch {
		case err == nil:
			return nil // still in the pinset: listed by the join
		case !errors.Is(err, state.ErrNotFound):
			return fmt.Errorf("status %s: %w", c, err)
		}
		pin = api.Pin{Cid: c}
		return fn(t.pinInfo(&pin, rec))
	})
}

func (t *Tracker) pinInfo(pin *api.Pin, rec state.LocalStatus) api.PinInfo {
	return api.PinInfo{
		Cid:         pin.Cid,
		Name:        pin.Name,
		Peer:        t.cfg.Peer,
		Allocations: pin.Allocations,
		Origins:     pin.Origins,
		Created:     pin.Timestamp,
		Metadata:    pin.Metadata,
		PinInfoShort: api.PinInfoShort{
			PeerName:     t.cfg.PeerName,
			Status:       rec.Status,
			TS:           rec.TS,
			Error:        rec.Error,
			AttemptCount: rec.Attempts,
			PriorityPin:  rec.Priority,
		},
	}
}

// Reconcile compares the pinset with what kubo really holds and fixes the
// records: pins kubo holds become pinned, pins it lost are queued again,
// pins allocated elsewhere are released. It reads kubo's pin list once as
// a stream into a set of 8-byte hashes, then streams the pinset joined with
// the records, and looks closer (under the CID's lock) only at pins whose
// record disagrees; it returns the number of pins visited. queued, when
// not nil, hears each pin queued again.
//
// It may run while the tracker works: a record that changed after kubo's
// list was read is newer than the list, and is left alone.
func (t *Tracker) Reconcile(ctx context.Context, queued func(api.Cid) error) (int, error) {
	since := time.Now()
	held, err := t.kuboPins(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconcile: %w", err)
	}
	n := 0
	err = t.records.ListWithStatus(ctx, func(pin api.Pin, rec state.LocalStatus, ok bool) error {
		n++
		inIPFS := held.holds(maphash.String(t.seed, pin.Cid.KeyString()), &pin)
		if ok && (rec.Status == t.settledStatus(&pin, inIPFS) || rec.TS.After(since)) {
			return nil
		}
		requeued, err := t.reconcileOne(pin, inIPFS, since)
		if err != nil || !requeued || queued == nil {
			return err
		}
		return queued(pin.Cid)
	})
	if err != nil {
		return n, fmt.Errorf("reconcile: %w", err)
	}
	return n, nil
}

// settledStatus is the record a pin has when nothing needs doing: sharded
// for a meta pin, remote when allocated elsewhere, pinned when kubo holds
// it; 0 when kubo lacks a pin it should hold.
func (t *Tracker) settledStatus(pin *api.Pin, inIPFS bool) api.TrackerStatus {
	switch {
	case pin.Type == api.MetaType:
		return api.TrackerStatusSharded
	case pin.IsRemote(t.cfg.Peer):
		return api.TrackerStatusRemote
	case inIPFS:
		return api.TrackerStatusPinned
	}
	return 0
}

// reconcileOne fixes the record of one pin against kubo's list read at
// since, and says whether it queued the pin again.
func (t *Tracker) reconcileOne(pin api.Pin, inIPFS bool, since time.Time) (bool, error) {
	c := pin.Cid
	sh := t.shard(c)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.ops[c.KeyString()] != nil {
		return false, nil
	}
	rec, ok, err := t.records.GetStatus(c)
	if err != nil {
		return false, fmt.Errorf("reconcile %s: %w", c, err)
	}
	if ok && rec.TS.After(since) {
		return false, nil
	}
	set := func(st api.TrackerStatus) error {
		if ok && rec.Status == st {
			return nil
		}
		return t.setStatus(c, state.LocalStatus{Status: st, Attempts: rec.Attempts, TS: time.Now(),
			Direct: st == api.TrackerStatusPinned && pin.MaxDepth == 0})
	}
	switch {
	case pin.Type == api.MetaType:
		return false, set(api.TrackerStatusSharded)
	case pin.IsRemote(t.cfg.Peer):
		if inIPFS && ok && rec.Status == api.TrackerStatusPinned {
			return false, t.enqueueLocked(sh, &operation{typ: opUnpin, pin: pin, toRemote: true})
		}
		return false, set(api.TrackerStatusRemote)
	case inIPFS:
		if ok && rec.Status != api.TrackerStatusPinned {
			t.retries.Cancel(c)
		}
		return false, set(api.TrackerStatusPinned)
	case ok && rec.Status == api.TrackerStatusPinError:
		return false, nil // its retry is scheduled
	}
	if ok && rec.Status&(api.TrackerStatusPinned|api.TrackerStatusUnexpectedlyUnpinned) != 0 {
		t.log.Warn().Stringer("cid", c).Msg("kubo no longer holds a pinned item: pinning it again")
	}
	return true, t.enqueueLocked(sh, &operation{typ: opPin, pin: pin, attempts: rec.Attempts, unheld: true})
}
