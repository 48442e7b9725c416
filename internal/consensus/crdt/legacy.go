package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
)

// replayPebbleJournal commits the operations that an earlier version of
// this peer journaled in pebble, under "<ns>/j/<seq>" (a value is a record
// payload without its sequence number), and had not committed when it
// stopped; then it deletes them. A peer upgraded right after a crash so
// loses none of the operations it acknowledged.
func (c *Consensus) replayPebbleJournal() error {
	prefix := c.cfg.DatastoreNamespace + "/j/"
	lower, upper := []byte(prefix), []byte(c.cfg.DatastoreNamespace+"/j0") // '0' follows '/'
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("read the journal of an earlier version: %w", err)
	}
	var ops []op
	for it.First(); it.Valid(); it.Next() {
		seq, err := strconv.ParseUint(string(it.Key()[len(prefix):]), 10, 64)
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("read the journal of an earlier version: malformed key %q", it.Key())
		}
		o, err := decodeRecord(append(binary.AppendUvarint(nil, seq), it.Value()...))
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("read the journal of an earlier version: entry %d: %w", seq, err)
		}
		ops = append(ops, o)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("read the journal of an earlier version: %w", err)
	}
	if len(ops) == 0 {
		return nil
	}
	for i := 0; i < len(ops); i += groupCommitSize {
		if err := c.commitBatch(c.ctx, ops[i:min(i+groupCommitSize, len(ops))]); err != nil {
			return err
		}
	}
	if err := c.db.DeleteRange(lower, upper, pebble.Sync); err != nil {
		return fmt.Errorf("drop the journal of an earlier version: %w", err)
	}
	c.log.Info().Int("operations", len(ops)).Msg("committed the operations an earlier version journaled")
	return nil
}
