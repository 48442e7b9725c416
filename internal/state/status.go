package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/stripe"
)

// LocalStatus is the pin tracker's record of one CID on this peer.
type LocalStatus struct {
	Status   api.TrackerStatus // exactly one status bit
	Attempts int
	Error    string
	TS       time.Time
	Priority bool
	// Terminal marks a failure the retry policy declared final: it is not
	// retried until an explicit recover or a new pin of the CID.
	Terminal bool
	// PolicyQueue says the retry policy chose the queue of the next
	// attempt (Priority holds the choice), so the tracker's own rule of
	// age and attempts does not apply.
	PolicyQueue bool
	// RetryDelay is the delay the retry policy chose before the next
	// attempt, from TS; 0 means the tracker's own backoff.
	RetryDelay time.Duration
	// Direct, on a pinned record, says kubo holds the CID as a direct pin
	// (else recursive): a new version of the pin with the same mode needs
	// nothing from kubo.
	Direct bool
}

// SetStatus stores s as the record of c and moves c to the index of
// s.Status, in one batch. The write is not synced: records can be rebuilt
// from the pinset and kubo. After a crash the latest records may be lost,
// but records, index and counts stay consistent with each other.
//
// The pin tracker serialises the calls for one CID; calls for different
// CIDs run concurrently. Concurrent calls for the same CID are still safe:
// one of them wins and the index and counts stay exact.
func (db *DB) SetStatus(c api.Cid, s LocalStatus) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if !c.Defined() {
		return wrapErr("set status", c, ErrUndefinedCid)
	}
	if bits.OnesCount64(uint64(s.Status)) != 1 {
		return fmt.Errorf("state: set status %s: %w %d", c, ErrInvalidStatus, uint64(s.Status))
	}
	ks := c.KeyString()
	si := stripe.Of(ks)
	db.statusMu[si].Lock()
	defer db.statusMu[si].Unlock()

	key := appendKey(nil, prefixRecord, ks)
	old, found, err := db.getStatus(key)
	if err != nil {
		return wrapErr("set status", c, err)
	}
	// The index entry holds a copy of the record, so that listing by
	// status is a single range scan.
	rec := s.appendBinary(nil)
	b := db.pdb.NewBatch()
	defer b.Close()
	err = errors.Join(
		b.Set(key, rec, nil),
		b.Set(appendIndexKey(nil, s.Status, ks), rec, nil))
	moved := !found || old.Status != s.Status
	counts := db.statusCount[si]
	if moved {
		if found {
			err = errors.Join(err, b.Delete(appendIndexKey(nil, old.Status, ks), nil))
			counts[statusBit(old.Status)]--
		}
		counts[statusBit(s.Status)]++
		err = errors.Join(err, b.Set(metaKey(metaStatusCount, si), counts.marshal(), nil))
	}
	if err == nil {
		err = db.commit(b, pebble.NoSync)
	}
	if err != nil {
		return wrapErr("set status", c, err)
	}
	if moved {
		db.statusCount[si] = counts
		db.moveTotal(old.Status, s.Status)
	}
	return nil
}

// GetStatus returns the record of c and whether there is one.
func (db *DB) GetStatus(c api.Cid) (LocalStatus, bool, error) {
	if db.closed.Load() {
		return LocalStatus{}, false, ErrClosed
	}
	if !c.Defined() {
		return LocalStatus{}, false, nil
	}
	s, found, err := db.getStatus(appendKey(nil, prefixRecord, c.KeyString()))
	return s, found, wrapErr("get status", c, err)
}

// DeleteStatus removes the record of c, if any, like SetStatus unsynced.
func (db *DB) DeleteStatus(c api.Cid) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if !c.Defined() {
		return nil
	}
	ks := c.KeyString()
	si := stripe.Of(ks)
	db.statusMu[si].Lock()
	defer db.statusMu[si].Unlock()

	key := appendKey(nil, prefixRecord, ks)
	old, found, err := db.getStatus(key)
	if err != nil || !found {
		return wrapErr("delete status", c, err)
	}
	counts := db.statusCount[si]
	counts[statusBit(old.Status)]--
	b := db.pdb.NewBatch()
	defer b.Close()
	err = errors.Join(
		b.Delete(key, nil),
		b.Delete(appendIndexKey(nil, old.Status, ks), nil),
		b.Set(metaKey(metaStatusCount, si), counts.marshal(), nil))
	if err == nil {
		err = db.commit(b, pebble.NoSync)
	}
	if err != nil {
		return wrapErr("delete status", c, err)
	}
	db.statusCount[si] = counts
	db.moveTotal(old.Status, 0)
	return nil
}

// moveTotal moves one record from status from to status to in the totals;
// 0 stands for no record.
func (db *DB) moveTotal(from, to api.TrackerStatus) {
	db.totalsMu.Lock()
	defer db.totalsMu.Unlock()
	if from != 0 {
		db.totals[statusBit(from)]--
	}
	if to != 0 {
		db.totals[statusBit(to)]++
	}
}

// CountStatus returns the number of records per status (statuses without
// records are absent). It reads counters, not the database, and is exact:
// a record moving between statuses is never counted twice or missed.
func (db *DB) CountStatus() map[api.TrackerStatus]int {
	db.totalsMu.Lock()
	defer db.totalsMu.Unlock()
	m := make(map[api.TrackerStatus]int)
	for bit, n := range db.totals {
		if n != 0 {
			m[api.TrackerStatus(1)<<bit] = int(n)
		}
	}
	return m
}

// ListByStatus calls fn with every record whose status is in filter (an OR
// of statuses; 0 means every record). It reads one index range per status
// in filter, so its cost follows the number of matches, not of records.
// Records come in CID-byte order (the ranges of several statuses merged),
// the order of the pinset. It reads a consistent snapshot, and
// stops with fn's error if fn fails and with ctx.Err() once ctx is done.
func (db *DB) ListByStatus(ctx context.Context, filter api.TrackerStatus, fn func(api.Cid, LocalStatus) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if filter == 0 {
		return db.listRecords(ctx, fn)
	}
	// One iterator per status, all in one snapshot, merged by CID: the
	// caller sees the CIDs in order whatever the statuses, so that
	// cluster-wide listings can merge peers' streams as they come.
	snap := db.pdb.NewSnapshot()
	defer snap.Close()
	type run struct {
		it *pebble.Iterator
		st api.TrackerStatus
	}
	var runs []run
	defer func() {
		for _, r := range runs {
			r.it.Close()
		}
	}()
	for bit := range 64 {
		st := api.TrackerStatus(1) << bit
		if filter&st == 0 {
			continue
		}
		it, err := snap.NewIterWithContext(ctx, &pebble.IterOptions{
			LowerBound: []byte{prefixIndex, byte(bit)}, UpperBound: []byte{prefixIndex, byte(bit) + 1}})
		if err != nil {
			return fmt.Errorf("state: list by status: %w", err)
		}
		runs = append(runs, run{it, st})
		it.First()
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		next := -1
		for i, r := range runs {
			if r.it.Valid() && (next < 0 || bytes.Compare(r.it.Key()[2:], runs[next].it.Key()[2:]) < 0) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		r := runs[next]
		c, s, err := indexEntry(r.it, r.st)
		if err != nil {
			return fmt.Errorf("state: list by status: %w", err)
		}
		if err := fn(c, s); err != nil {
			return err
		}
		r.it.Next()
	}
	for _, r := range runs {
		if err := r.it.Error(); err != nil {
			return fmt.Errorf("state: list by status: %w", err)
		}
	}
	return nil
}

// indexEntry decodes the index entry under it, which must be of status st.
func indexEntry(it *pebble.Iterator, st api.TrackerStatus) (api.Cid, LocalStatus, error) {
	c, err := cidFromKey(it.Key(), 2)
	if err != nil {
		return api.CidUndef, LocalStatus{}, err
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return c, LocalStatus{}, fmt.Errorf("%s: %w", c, err)
	}
	var s LocalStatus
	if err := s.unmarshalBinary(v); err != nil {
		return c, LocalStatus{}, fmt.Errorf("%s: %w", c, err)
	}
	if s.Status != st {
		return c, LocalStatus{}, fmt.Errorf("%s: index entry of %s holds a record of %s", c, st, s.Status)
	}
	return c, s, nil
}

// listRecords visits every record in CID-byte order.
func (db *DB) listRecords(ctx context.Context, fn func(api.Cid, LocalStatus) error) error {
	it, err := db.pdb.NewIter(boundsOf(prefixRecord))
	if err != nil {
		return fmt.Errorf("state: list by status: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := cidFromKey(it.Key(), 1)
		if err != nil {
			return fmt.Errorf("state: list by status: %w", err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: list by status: %s: %w", c, err)
		}
		var s LocalStatus
		if err := s.unmarshalBinary(v); err != nil {
			return fmt.Errorf("state: list by status: %s: %w", c, err)
		}
		if err := fn(c, s); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("state: list by status: %w", err)
	}
	return nil
}

// getStatus reads and decodes the record at key.
func (db *DB) getStatus(key []byte) (LocalStatus, bool, error) {
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return LocalStatus{}, false, nil
	}
	if err != nil {
		return LocalStatus{}, false, err
	}
	defer closer.Close()
	var s LocalStatus
	if err := s.unmarshalBinary(v); err != nil {
		return LocalStatus{}, false, err
	}
	return s, true, nil
}
