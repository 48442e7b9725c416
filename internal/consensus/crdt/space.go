package crdt

import (
	"context"
	"fmt"

	ds "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// guardedStore is go-ds-pebble refusing every write once the state's disk
// is nearly full (state.DB.CheckWrite): pebble dies when a write to its log
// fails, and the writes that go through here come from other peers, so no
// operation check stops them. A refused delta is not marked processed:
// the next announcement of the heads above it, or a repair, fetches it
// again once there is room. Safe for concurrent use, as go-ds-pebble is.
type guardedStore struct {
	*pebbleds.Datastore
	check func() error
}

func (s *guardedStore) Put(ctx context.Context, k ds.Key, v []byte) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("put %s: %w", k, err)
	}
	return s.Datastore.Put(ctx, k, v)
}

func (s *guardedStore) Delete(ctx context.Context, k ds.Key) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("delete %s: %w", k, err)
	}
	return s.Datastore.Delete(ctx, k)
}

func (s *guardedStore) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := s.Datastore.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &guardedBatch{Batch: b, check: s.check}, nil
}

// guardedBatch checks the free space when it commits.
type guardedBatch struct {
	ds.Batch
	check func() error
}

func (b *guardedBatch) Commit(ctx context.Context) error {
	if err := b.check(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return b.Batch.Commit(ctx)
}
