package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/stripe"
)

// Put stores p, replacing any pin with the same CID. It returns once the
// write is synced to disk. Concurrent Puts share WAL syncs through pebble's
// commit pipeline, so throughput grows with the number of writers.
func (db *DB) Put(p api.Pin) error {
	return wrapErr("put", p.Cid, db.writePins([]api.Pin{p}, pebble.Sync))
}

// PutApplied stores p like Put but without waiting for a disk sync. It is
// for changes already made durable elsewhere in this database (a consensus
// log that re-applies them after a crash): the WAL keeps writes in order,
// so a crash cannot keep a later write and lose this one, and the write
// reaches the disk within walFlushEvery.
func (db *DB) PutApplied(p api.Pin) error {
	return wrapErr("put", p.Cid, db.writePins([]api.Pin{p}, pebble.NoSync))
}

// PutMany stores pins in one synced batch: all or none are written. A CID
// repeated in pins is stored once, with its last value.
func (db *DB) PutMany(pins []api.Pin) error {
	if len(pins) == 0 {
		return nil
	}
	if err := db.writePins(pins, pebble.Sync); err != nil {
		return fmt.Errorf("state: put %d pins: %w", len(pins), err)
	}
	return nil
}

// writePins writes pins in one synced batch together with the counters of
// the stripes that gain pins. The stripe locks make the check for an
// existing pin and the counter update exact.
func (db *DB) writePins(pins []api.Pin, sync *pebble.WriteOptions) error {
	if db.closed.Load() {
		return ErrClosed
	}
	var stripes stripe.Set
	for i := range pins {
		if err := checkStorable(&pins[i]); err != nil {
			if len(pins) == 1 {
				return err
			}
			return fmt.Errorf("pin %d: %w", i, err)
		}
		stripes.Add(stripe.Of(pins[i].Cid.KeyString()))
	}
	stripes.Lock(&db.pinMu)
	defer stripes.Unlock(&db.pinMu)

	b := db.pdb.NewBatch()
	defer b.Close()
	var (
		delta    [stripe.N]uint64 // new pins per stripe
		added    int
		key, val []byte
		err      error
		// written holds the allocations given in this batch to CIDs
		// written more than once, which the database does not show yet.
		written map[string][]peer.ID
	)
	if len(pins) > 1 {
		written = make(map[string][]peer.ID, len(pins))
	}
	for i := range pins {
		ks := pins[i].Cid.KeyString()
		key = appendKey(key[:0], prefixPin, ks)
		old, again := written[ks]
		if !again {
			var exists bool
			if old, exists, err = db.storedAllocations(key); err != nil {
				return err
			}
			if !exists {
				delta[stripe.Of(ks)]++
				added++
			}
		}
		if written != nil {
			written[ks] = pins[i].Allocations
		}
		if err = moveAllocations(b, ks, old, pins[i].Allocations); err != nil {
			return err
		}
		if val, err = pins[i].AppendBinary(val[:0]); err != nil {
			return fmt.Errorf("encode %s: %w", pins[i].Cid, err)
		}
		if err = b.Set(key, val, nil); err != nil {
			return err
		}
	}
	for s := range stripes.Each() {
		if delta[s] != 0 {
			if err = b.Set(metaKey(metaPinCount, s), binary.AppendUvarint(nil, db.pinCount[s]+delta[s]), nil); err != nil {
				return err
			}
		}
	}
	if err = db.commit(b, sync); err != nil {
		return err
	}
	for s := range stripes.Each() {
		db.pinCount[s] += delta[s]
	}
	db.pins.Add(int64(added))
	return nil
}

// checkStorable refuses pins the state cannot key.
func checkStorable(p *api.Pin) error {
	if !p.Defined() {
		return ErrUndefinedCid
	}
	return nil
}

// Delete removes the pin for c, if any. It returns once the removal is
// synced to disk.
func (db *DB) Delete(c api.Cid) error { return db.delete(c, nil, time.Time{}, pebble.Sync) }

// DeleteApplied removes the committed removal of pin p (the version
// removed) without waiting for a disk sync, for the same reason as
// PutApplied, and keeps its removal record, with when this peer asked the
// unpin (askedHere; zero for another peer's): see removed.go.
func (db *DB) DeleteApplied(p api.Pin, askedHere time.Time) error {
	return db.delete(p.Cid, &p, askedHere, pebble.NoSync)
}

func (db *DB) delete(c api.Cid, removed *api.Pin, askedHere time.Time, sync *pebble.WriteOptions) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if !c.Defined() {
		return nil
	}
	ks := c.KeyString()
	s := stripe.Of(ks)
	db.pinMu[s].Lock()
	defer db.pinMu[s].Unlock()

	key := appendKey(nil, prefixPin, ks)
	old, exists, err := db.storedAllocations(key)
	if err != nil || !exists {
		return wrapErr("delete", c, err)
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	err = errors.Join(
		b.Delete(key, nil),
		moveAllocations(b, ks, old, nil),
		b.Set(metaKey(metaPinCount, s), binary.AppendUvarint(nil, db.pinCount[s]-1), nil),
	)
	if err == nil && removed != nil {
		err = db.appendRemoval(b, *removed, askedHere)
	}
	if err == nil {
		err = db.commit(b, sync)
	}
	if err != nil {
		return wrapErr("delete", c, err)
	}
	db.pinCount[s]--
	db.pins.Add(-1)
	return nil
}

// Get returns the pin for c, or ErrNotFound.
func (db *DB) Get(c api.Cid) (api.Pin, error) {
	if db.closed.Load() {
		return api.Pin{}, ErrClosed
	}
	if !c.Defined() {
		return api.Pin{}, ErrNotFound
	}
	v, closer, err := db.pdb.Get(appendKey(nil, prefixPin, c.KeyString()))
	if errors.Is(err, pebble.ErrNotFound) {
		return api.Pin{}, ErrNotFound
	}
	if err != nil {
		return api.Pin{}, wrapErr("get", c, err)
	}
	defer closer.Close()
	var p api.Pin
	if err := p.UnmarshalBinary(v); err != nil {
		return api.Pin{}, wrapErr("get", c, err)
	}
	return p, nil
}

// Has reports whether c is pinned.
func (db *DB) Has(c api.Cid) (bool, error) {
	if db.closed.Load() {
		return false, ErrClosed
	}
	if !c.Defined() {
		return false, nil
	}
	ok, err := db.has(appendKey(nil, prefixPin, c.KeyString()))
	return ok, wrapErr("has", c, err)
}

// Len returns the number of pins. It reads a counter, not the database.
func (db *DB) Len() int { return int(db.pins.Load()) }

// List calls fn with every pin in CID-byte order. It reads a consistent
// snapshot: writes made while it runs are not seen. It holds one pin at a
// time; it stops with fn's error if fn fails and with ctx.Err() once ctx is
// done.
func (db *DB) List(ctx context.Context, fn func(api.Pin) error) error {
	return db.list(ctx, 0, fn)
}

// ListType is List restricted to pins whose type is in types (an OR of
// api.PinType flags). Non-matching pins are skipped by reading their type
// alone, without decoding them.
func (db *DB) ListType(ctx context.Context, types api.PinType, fn func(api.Pin) error) error {
	if types == 0 {
		return nil
	}
	return db.list(ctx, types, fn)
}

// list implements List (types == 0) and ListType.
func (db *DB) list(ctx context.Context, types api.PinType, fn func(api.Pin) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	it, err := db.pdb.NewIterWithContext(ctx, boundsOf(prefixPin))
	if err != nil {
		return fmt.Errorf("state: list: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: list: %w", err)
		}
		if types != 0 {
			if t, ok := peekPinType(v); ok && t&types == 0 {
				continue
			}
		}
		var p api.Pin
		if err := p.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("state: list: pin %x: %w", it.Key()[1:], err)
		}
		if types != 0 && p.Type&types == 0 {
			continue
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("state: list: %w", err)
	}
	return nil
}

// peekPinType reads the type of an encoded pin without decoding the rest. It
// follows version 1 of the api pin encoding (version byte, length-prefixed
// CID, uvarint type); for anything else ok is false and the caller decodes
// the pin.
func peekPinType(v []byte) (t api.PinType, ok bool) {
	if len(v) == 0 || v[0] != 1 {
		return 0, false
	}
	v = v[1:]
	n, k := binary.Uvarint(v)
	if k <= 0 || n > uint64(len(v)-k) {
		return 0, false
	}
	typ, k2 := binary.Uvarint(v[k+int(n):])
	if k2 <= 0 {
		return 0, false
	}
	return api.PinType(typ), true
}

// has reports whether key exists, without decoding its value.
func (db *DB) has(key []byte) (bool, error) {
	_, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

// storedAllocations reads the allocations of the pin stored at key, and
// whether there is one.
func (db *DB) storedAllocations(key []byte) ([]peer.ID, bool, error) {
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	var p api.Pin
	if err := p.UnmarshalBinary(v); err != nil {
		return nil, true, fmt.Errorf("stored pin %x: %w", key[1:], err)
	}
	return p.Allocations, true, nil
}

// moveAllocations updates the allocation index of one CID from the peers
// in old to those in now.
func moveAllocations(b *pebble.Batch, ks string, old, now []peer.ID) error {
	for _, p := range old {
		if !slices.Contains(now, p) {
			if err := b.Delete(allocKey(p, ks), nil); err != nil {
				return err
			}
		}
	}
	for _, p := range now {
		if !slices.Contains(old, p) {
			if err := b.Set(allocKey(p, ks), nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// ListAllocatedTo calls fn with every CID allocated to p, in CID-byte
// order, from the allocation index: the cost is the number of pins p holds,
// not the size of the pinset. Repinning away from a dead peer and removing
// a peer need exactly this.
func (db *DB) ListAllocatedTo(ctx context.Context, p peer.ID, fn func(api.Cid) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	prefix := allocPrefix(p)
	it, err := db.pdb.NewIterWithContext(ctx, boundsOf(prefix...))
	if err != nil {
		return fmt.Errorf("state: list allocated to %s: %w", p, err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := cidFromKey(it.Key(), len(prefix))
		if err != nil {
			return fmt.Errorf("state: list allocated to %s: %w", p, err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return it.Error()
}

// AllocatedPeers lists, in index order, every peer that some pin is
// allocated to. It reads one index key per peer, seeking past the rest of
// each peer's pins, so the cost is the number of peers, not of pins.
func (db *DB) AllocatedPeers(ctx context.Context) ([]peer.ID, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	it, err := db.pdb.NewIterWithContext(ctx, boundsOf(prefixAlloc))
	if err != nil {
		return nil, fmt.Errorf("state: list allocated peers: %w", err)
	}
	defer it.Close()
	var peers []peer.ID
	for valid := it.First(); valid; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		key := it.Key()
		n, size := binary.Uvarint(key[1:])
		if size <= 0 || uint64(len(key)-1-size) < n {
			return nil, fmt.Errorf("state: malformed allocation index key %x", key)
		}
		p := peer.ID(key[1+size : 1+size+int(n)])
		peers = append(peers, p)
		valid = it.SeekGE(upperBound(allocPrefix(p)))
	}
	return peers, it.Error()
}
