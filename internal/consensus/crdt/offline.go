package crdt

import (
	"fmt"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

// Importer replaces the shared pinset of a stopped peer (state import): it
// deletes what the consensus stored as Cleanup does, then journals a pin
// operation for every pin it is given. The next start commits them to the
// CRDT, as it does for operations acknowledged just before a crash, so the
// imported pins join the shared pinset and reach the other peers. No
// Consensus may run on the database meanwhile; an Importer is not safe for
// concurrent use.
type Importer struct {
	j   *journal
	ops []op
}

// NewImporter empties the consensus under namespace in db and returns an
// Importer into its journal.
func NewImporter(db *state.DB, namespace string) (*Importer, error) {
	if err := Cleanup(db, namespace); err != nil {
		return nil, err
	}
	j, err := openJournal(journalDir(db, namespace), false, 0, zerolog.Nop(), nil)
	if err != nil {
		return nil, fmt.Errorf("crdt import: %w", err)
	}
	return &Importer{j: j}, nil
}

// Add journals pin.
func (im *Importer) Add(pin api.Pin) error {
	value, err := pin.MarshalBinary()
	if err != nil {
		return fmt.Errorf("crdt import %s: %w", pin.Cid, err)
	}
	im.ops = append(im.ops, op{pin: true, key: keyOf(pin.Cid), value: value})
	if len(im.ops) < groupCommitSize {
		return nil
	}
	return im.flush()
}

func (im *Importer) flush() error {
	if len(im.ops) == 0 {
		return nil
	}
	err := im.j.append(im.ops, nil)
	im.ops = im.ops[:0]
	if err != nil {
		return fmt.Errorf("crdt import: %w", err)
	}
	return nil
}

// Close journals what Add buffered and fsyncs the journal.
func (im *Importer) Close() error {
	err := im.flush()
	if cerr := im.j.close(); err == nil {
		err = cerr
	}
	return err
}
