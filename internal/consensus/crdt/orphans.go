package crdt

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/boxo/blockstore"
	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// go-ds-crdt walks a new branch from its head down, and marks each node
// processed as soon as its delta is merged; the head of the branch becomes
// one of the store's heads only when the walk reaches known nodes. A walk
// cut short (the process dies, a fetch times out) so leaves the newest
// nodes of the branch processed, the older ones not, and no head leading to
// either: announcements of the branch's head, or of any node above it, are
// then skipped or stop at the processed nodes, and a repair, which walks
// from the heads, never sees the branch. Its older deltas are missing for
// good.
//
// sweepOrphans undoes such a walk: it removes the processed mark of every
// node that no head leads to, so that the next announcement of the branch
// walks it again, from its head down to the known nodes (merging a delta
// again changes nothing). A processed node that is being walked right now
// is swept too when the walk has not reached the heads yet; the walk ends
// normally, and only its merges are repeated later.
//
// Nodes are read from the local block store only. It returns how many
// processed marks it removed.
func sweepOrphans(ctx context.Context, db *pebble.DB, bstore blockstore.Blockstore, ns string, heads []cid.Cid) (int, error) {
	// go-ds-crdt's processed marks are "<ns>/b/<base32 multihash>" (upper
	// case); the DAG blocks live under "<ns>/b/blocks/".
	prefix := ns + "/b"
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix + "/"), UpperBound: []byte(prefix + "/a")})
	if err != nil {
		return 0, fmt.Errorf("list processed nodes: %w", err)
	}
	reached := map[string]bool{}
	for it.First(); it.Valid(); it.Next() {
		reached[string(it.Key())] = false
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("list processed nodes: %w", err)
	}
	if len(reached) == 0 {
		return 0, nil
	}
	visited := cid.NewSet()
	queue := make([]cid.Cid, 0, len(heads))
	for _, h := range heads {
		if visited.Visit(h) {
			queue = append(queue, h)
		}
	}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		c := queue[0]
		queue = queue[1:]
		key := prefix + dshelp.MultihashToDsKey(c.Hash()).String()
		_, processed := reached[key]
		if processed {
			reached[key] = true
		}
		blk, err := bstore.Get(ctx, c)
		switch {
		case ipld.IsNotFound(err) && !processed:
			continue // not fetched yet: nothing below it was walked through it
		case err != nil:
			return 0, fmt.Errorf("read DAG node %s: %w", c, err)
		}
		n, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			return 0, fmt.Errorf("decode DAG node %s: %w", c, err)
		}
		for _, l := range n.Links() {
			if visited.Visit(l.Cid) {
				queue = append(queue, l.Cid)
			}
		}
	}
	b := db.NewBatch()
	defer b.Close()
	swept := 0
	for key, ok := range reached {
		if ok {
			continue
		}
		if err := b.Delete([]byte(key), nil); err != nil {
			return 0, err
		}
		swept++
	}
	if swept == 0 {
		return 0, nil
	}
	// Not synced: a crash before the sweep is durable is an unclean stop,
	// which the next start repairs, sweeping again.
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("unmark orphaned nodes: %w", err)
	}
	return swept, nil
}
