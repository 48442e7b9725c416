package state

import (
	"bytes"
	"context"
	"fmt"

	"ipfs-cluster/internal/api"
)

// ListWithStatus calls fn with every pin in CID-byte order together with
// its tracker record (ok is false when it has none). Pins and records are
// read from one snapshot by two iterators walked side by side, so the cost
// is one sequential scan of each instead of a lookup per pin: this is what
// a full reconciliation of a large pinset needs.
func (db *DB) ListWithStatus(ctx context.Context, fn func(p api.Pin, rec LocalStatus, ok bool) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	snap := db.pdb.NewSnapshot()
	defer snap.Close()
	pins, err := snap.NewIterWithContext(ctx, boundsOf(prefixPin))
	if err != nil {
		return fmt.Errorf("state: list with status: %w", err)
	}
	defer pins.Close()
	recs, err := snap.NewIterWithContext(ctx, boundsOf(prefixRecord))
	if err != nil {
		return fmt.Errorf("state: list with status: %w", err)
	}
	defer recs.Close()
	recs.First()
	for pins.First(); pins.Valid(); pins.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := pins.Key()[1:]
		for recs.Valid() && bytes.Compare(recs.Key()[1:], key) < 0 {
			recs.Next()
		}
		v, err := pins.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: list with status: %w", err)
		}
		var p api.Pin
		if err := p.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("state: list with status: pin %x: %w", key, err)
		}
		var rec LocalStatus
		ok := recs.Valid() && bytes.Equal(recs.Key()[1:], key)
		if ok {
			rv, err := recs.ValueAndErr()
			if err != nil {
				return fmt.Errorf("state: list with status: %s: %w", p.Cid, err)
			}
			if err := rec.unmarshalBinary(rv); err != nil {
				return fmt.Errorf("state: list with status: %s: %w", p.Cid, err)
			}
		}
		if err := fn(p, rec, ok); err != nil {
			return err
		}
	}
	if err := pins.Error(); err != nil {
		return fmt.Errorf("state: list with status: %w", err)
	}
	return recs.Error()
}
