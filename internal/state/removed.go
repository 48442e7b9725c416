package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/go-cid"

	"ipfs-cluster/internal/api"
)

// A removal record remembers the timestamp of the version of a pin this
// peer saw removed. Repinning writes a new version of a pin with the same
// timestamp, marked moved; one written on a peer that had not yet seen the
// removal (a partition, or plain propagation delay) is concurrent with it,
// and the shared pinset keeps it. The record lets this peer recognise such
// a version as the removed pin moved, not pinned again, and remove it
// again (see cluster's ApplyPin).
//
// For an unpin this peer made, the record also keeps when it was asked:
// the shared pinset does not say when a removal was made, so only this
// peer can tell that a concurrent update made before its unpin must not
// stand, and it must still know after a restart (see cluster's
// recentOps).
//
// Record value: 'r', then the removed version's timestamp and when the
// unpin was asked here (zero: another peer's), each as Unix seconds
// (varint) and nanoseconds (uvarint). Records written before the asked
// time was kept are a bare time.Time binary encoding, which never starts
// with 'r'.

const removalFormat = 'r'

// removedKey is the removal record key of cid.
func removedKey(cid string) []byte { return appendKey(nil, prefixRemoved, cid) }

func encodeRemoval(removed, askedHere time.Time) []byte {
	b := []byte{removalFormat}
	for _, t := range []time.Time{removed, askedHere} {
		var sec int64
		var nsec int
		if !t.IsZero() {
			sec, nsec = t.Unix(), t.Nanosecond()
		}
		b = binary.AppendVarint(b, sec)
		b = binary.AppendUvarint(b, uint64(nsec))
	}
	return b
}

func decodeRemoval(v []byte) (removed, askedHere time.Time, err error) {
	if len(v) == 0 || v[0] != removalFormat {
		err = removed.UnmarshalBinary(v)
		return removed, time.Time{}, err
	}
	v = v[1:]
	var ts [2]time.Time
	for i := range ts {
		sec, n := binary.Varint(v)
		if n <= 0 {
			return time.Time{}, time.Time{}, errors.New("truncated removal record")
		}
		v = v[n:]
		nsec, n := binary.Uvarint(v)
		if n <= 0 || nsec >= 1e9 {
			return time.Time{}, time.Time{}, errors.New("malformed removal record")
		}
		v = v[n:]
		if sec != 0 || nsec != 0 {
			ts[i] = time.Unix(sec, int64(nsec)).UTC()
		}
	}
	return ts[0], ts[1], nil
}

// RemovedAt returns the timestamp of the version of c last removed here.
// ok is false when there is no record.
func (db *DB) RemovedAt(c api.Cid) (ts time.Time, ok bool, err error) {
	if db.closed.Load() {
		return time.Time{}, false, ErrClosed
	}
	if !db.anyRemoved.Load() {
		return time.Time{}, false, nil
	}
	v, closer, err := db.pdb.Get(removedKey(c.KeyString()))
	if errors.Is(err, pebble.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, wrapErr("read removal of", c, err)
	}
	defer closer.Close()
	if ts, _, err = decodeRemoval(v); err != nil {
		return time.Time{}, false, wrapErr("read removal of", c, err)
	}
	return ts, true, nil
}

// OwnUnpins calls fn with every pin this peer unpinned at or after since
// and that was not pinned again: the removed version's timestamp and when
// the unpin was asked. A malformed record is skipped.
func (db *DB) OwnUnpins(since time.Time, fn func(c api.Cid, removed, askedHere time.Time) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if !db.anyRemoved.Load() {
		return nil
	}
	it, err := db.pdb.NewIter(boundsOf(prefixRemoved))
	if err != nil {
		return fmt.Errorf("list removal records: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		removed, at, err := decodeRemoval(it.Value())
		if err != nil || at.IsZero() || at.Before(since) {
			continue
		}
		c, err := cid.Cast(it.Key()[1:])
		if err != nil {
			continue
		}
		if err := fn(api.NewCid(c), removed, at); err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// ForgetRemoved drops the removal record of c, once a new version of the
// pin replaced the removed one.
func (db *DB) ForgetRemoved(c api.Cid) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return wrapErr("forget removal of", c, db.pdb.Delete(removedKey(c.KeyString()), pebble.NoSync))
}

// appendRemoval adds to b the removal record of p, unpinned here at
// askedHere (zero: by another peer). It counts as recorded from then on: a
// lookup that finds nothing before the batch commits is right.
func (db *DB) appendRemoval(b *pebble.Batch, p api.Pin, askedHere time.Time) error {
	db.anyRemoved.Store(true)
	return b.Set(removedKey(p.Cid.KeyString()), encodeRemoval(p.Timestamp, askedHere), nil)
}
