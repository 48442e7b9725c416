package crdt

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

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
	at  time.Time // stamped on every pin as Restored
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
	return &Importer{j: j, at: time.Now().UTC()}, nil
}

// Add journals pin, stamped with the time of the import: the pinset may
// have seen the same version removed since the export, and committed
// unchanged it would stay removed (see api.Pin.Restored).
func (im *Importer) Add(pin api.Pin) error {
	pin.Restored = im.at
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

// Pending returns what the next start of the peer will commit from its
// journal: operations acknowledged before a crash cut their commit short,
// or journaled by state import. Each CID maps to its last operation: the
// pin, or nil for an unpin. The state does not hold them yet, so an
// export of a peer that crashed must add them. It only reads; no
// Consensus may run on db.
func Pending(db *state.DB, namespace string) (map[api.Cid]*api.Pin, error) {
	resolved, err := readResolved(db.Pebble(), resolvedKey(namespace))
	if err != nil {
		return nil, fmt.Errorf("crdt journal: %w", err)
	}
	j := &journal{dir: journalDir(db, namespace), log: zerolog.Nop()}
	names, err := j.segments()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[api.Cid]*api.Pin{}
	for _, name := range names {
		_, err := j.readSegment(filepath.Join(j.dir, name), func(o op) error {
			if o.seq <= resolved {
				return nil
			}
			c, err := api.DecodeCid(strings.TrimPrefix(o.key, "/"))
			if err != nil {
				return fmt.Errorf("operation %d: %w", o.seq, err)
			}
			if !o.pin {
				out[c] = nil
				return nil
			}
			var p api.Pin
			if err := p.UnmarshalBinary(o.value); err != nil {
				return fmt.Errorf("operation %d on %s: %w", o.seq, c, err)
			}
			out[c] = &p
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("crdt journal %s: %w", name, err)
		}
	}
	return out, nil
}
