package crdt

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"ipfs-cluster/internal/state"
)

// Cleanup deletes everything the CRDT consensus stored under namespace (the
// config's datastore_namespace) in db: the CRDT, its DAG blocks, the
// journal and the pending changes. It is for `state cleanup`; no Consensus
// may be running on db.
func Cleanup(db *state.DB, namespace string) error {
	lower := []byte(namespace + "/")
	upper := []byte(namespace + "0") // '0' follows '/'
	if err := db.Pebble().DeleteRange(lower, upper, pebble.Sync); err != nil {
		return fmt.Errorf("crdt cleanup %s: %w", namespace, err)
	}
	if err := removeJournal(journalDir(db, namespace)); err != nil {
		return fmt.Errorf("crdt cleanup %s: %w", namespace, err)
	}
	return nil
}
