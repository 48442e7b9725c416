package crdt

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	crdt "github.com/ipfs/go-ds-crdt"
	pebbleds "github.com/ipfs/go-ds-pebble"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/state"
)

// Inspector opens the CRDT store of a stopped peer offline, for the
// `state crdt` commands: nothing is fetched, announced or repaired. No
// Consensus may run on the database meanwhile; an Inspector is not safe
// for concurrent use, and must be closed.
type Inspector struct {
	db    *pebble.DB
	ns    string
	store *crdt.Datastore
	bserv blockservice.BlockService
}

// Inspect opens the store under namespace in db; go-ds-crdt logs to log.
func Inspect(db *state.DB, ns string, log zerolog.Logger) (*Inspector, error) {
	pds, err := pebbleds.NewDatastore("", pebbleds.WithPebbleDB(db.Pebble()))
	if err != nil {
		return nil, fmt.Errorf("crdt inspect: wrap database: %w", err)
	}
	bserv := blockservice.New(dagBlocks(pds, ns), nil)
	opts := crdt.DefaultOptions()
	opts.Logger = crdtLogger{log}
	opts.RepairInterval = 0
	store, err := crdt.New(pds, ds.NewKey(ns), merkledag.NewDAGService(bserv), nil, opts)
	if err != nil {
		_ = bserv.Close()
		return nil, fmt.Errorf("crdt inspect: open store: %w", err)
	}
	return &Inspector{db: db.Pebble(), ns: ns, store: store, bserv: bserv}, nil
}

// Info is what `state crdt info` prints.
type Info struct {
	Heads     []cid.Cid
	MaxHeight uint64
	// Dirty: the next start repairs the DAG.
	Dirty bool
	// Unclean: the last run did not shut down cleanly, which also makes
	// the next start repair.
	Unclean bool
}

// Info reads the heads and the flags.
func (i *Inspector) Info(ctx context.Context) (Info, error) {
	unclean, err := leftOpen(i.db, i.ns)
	if err != nil {
		return Info{}, fmt.Errorf("crdt info: %w", err)
	}
	st := i.store.InternalStats(ctx)
	return Info{Heads: st.Heads, MaxHeight: st.MaxHeight, Dirty: i.store.IsDirty(ctx), Unclean: unclean}, nil
}

// WriteDOT writes the DAG in the DOT language, from the heads down.
func (i *Inspector) WriteDOT(ctx context.Context, w io.Writer) error {
	if err := i.store.DotDAG(ctx, w); err != nil {
		return fmt.Errorf("crdt dot: %w", err)
	}
	return nil
}

// MarkDirty makes the next start repair the DAG.
func (i *Inspector) MarkDirty(ctx context.Context) {
	i.store.MarkDirty(ctx)
}

// MarkClean spares the next start a repair: it clears the dirty flag and
// forgets an unclean shutdown.
func (i *Inspector) MarkClean(ctx context.Context) error {
	i.store.MarkClean(ctx)
	if err := i.db.Delete(openKey(i.ns), pebble.Sync); err != nil {
		return fmt.Errorf("crdt mark-clean: %w", err)
	}
	return nil
}

// Close closes the store; the database stays open.
func (i *Inspector) Close() error {
	return errors.Join(i.store.Close(), i.bserv.Close())
}
