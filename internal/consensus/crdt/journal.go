package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// op is one LogPin or LogUnpin.
type op struct {
	seq   uint64
	pin   bool   // false: unpin
	key   string // CRDT key: "/" + CID
	value []byte // pin encoding; empty for an unpin
}

// journal keeps the operations that were acknowledged (or are being
// committed) but are not yet known to be durably in the DAG, under
// "<ns>/j/<seq>" with seq in 20 zero-padded decimal digits so that key order
// is commit order. Methods are safe for concurrent use.
type journal struct {
	db     *pebble.DB
	prefix string
	seq    atomic.Uint64
}

func newJournal(db *pebble.DB, ns string) *journal {
	return &journal{db: db, prefix: ns + "/j/"}
}

func (j *journal) key(seq uint64) []byte {
	return fmt.Appendf(nil, "%s%020d", j.prefix, seq)
}

// append gives o the next sequence number and writes it, synced when sync
// is set (concurrent synced appends share WAL syncs).
func (j *journal) append(o *op, sync bool) error {
	o.seq = j.seq.Add(1)
	v := make([]byte, 0, 1+binary.MaxVarintLen64+len(o.key)+len(o.value))
	v = append(v, kindByte(o.pin))
	v = binary.AppendUvarint(v, uint64(len(o.key)))
	v = append(v, o.key...)
	v = append(v, o.value...)
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	if err := j.db.Set(j.key(o.seq), v, opts); err != nil {
		return fmt.Errorf("journal %s: %w", o.key, err)
	}
	return nil
}

// remove drops ops from the journal. It does not sync: a removal lost in a
// crash only makes the next start commit the op again, which is harmless,
// and the next synced write covers it.
func (j *journal) remove(ops []op) error {
	b := j.db.NewBatch()
	defer b.Close()
	for _, o := range ops {
		if err := b.Delete(j.key(o.seq), nil); err != nil {
			return fmt.Errorf("journal: remove %d: %w", o.seq, err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("journal: remove %d ops: %w", len(ops), err)
	}
	return nil
}

// load returns the journal in commit order and continues its numbering.
func (j *journal) load() ([]op, error) {
	lower := []byte(j.prefix)
	upper := []byte(j.prefix[:len(j.prefix)-1] + "0") // '0' follows '/'
	it, err := j.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("journal: load: %w", err)
	}
	var ops []op
	for it.First(); it.Valid(); it.Next() {
		o, err := j.decode(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("journal: load: %w", err)
		}
		ops = append(ops, o)
		j.seq.Store(o.seq)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("journal: load: %w", err)
	}
	return ops, nil
}

func (j *journal) decode(k, v []byte) (op, error) {
	seq, err := strconv.ParseUint(string(k[len(j.prefix):]), 10, 64)
	if err != nil || len(v) < 2 || (v[0] != markPin && v[0] != markUnpin) {
		return op{}, fmt.Errorf("malformed entry %q", k)
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n > uint64(len(v)-1-w) {
		return op{}, fmt.Errorf("malformed entry %q", k)
	}
	rest := v[1+w:]
	return op{
		seq:   seq,
		pin:   v[0] == markPin,
		key:   string(rest[:n]),
		value: append([]byte(nil), rest[n:]...),
	}, nil
}

func kindByte(pin bool) byte {
	if pin {
		return markPin
	}
	return markUnpin
}
