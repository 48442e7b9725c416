package state

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"ipfs-cluster/internal/api"
)

// A removal record remembers the timestamp of the version of a pin this
// peer saw removed. Repinning writes a new version of a pin with the same
// timestamp, marked moved; one written on a peer that had not yet seen the
// removal (a partition, or plain propagation delay) is concurrent with it,
// and the shared pinset keeps it. The record lets this peer recognise such
// a version as the removed pin moved, not pinned again, and remove it
// again (see cluster's ApplyPin).

// removedKey is the removal record key of cid.
func removedKey(cid string) []byte { return appendKey(nil, prefixRemoved, cid) }

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
	if err := ts.UnmarshalBinary(v); err != nil {
		return time.Time{}, false, wrapErr("read removal of", c, err)
	}
	return ts, true, nil
}

// ForgetRemoved drops the removal record of c, once a new version of the
// pin replaced the removed one.
func (db *DB) ForgetRemoved(c api.Cid) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return wrapErr("forget removal of", c, db.pdb.Delete(removedKey(c.KeyString()), pebble.NoSync))
}

// appendRemoval adds to b the removal record of p. It counts as recorded
// from then on: a lookup that finds nothing before the batch commits is
// right.
func (db *DB) appendRemoval(b *pebble.Batch, p api.Pin) error {
	v, err := p.Timestamp.MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode removal of %s: %w", p.Cid, err)
	}
	db.anyRemoved.Store(true)
	return b.Set(removedKey(p.Cid.KeyString()), v, nil)
}
