// Package state is a peer's local store: the shared pinset as applied on
// this peer and the pin tracker's per-CID records, both in one pebble
// database.
//
// Key layout. Every key starts with one byte below 0x20, so none can collide
// with a go-datastore key (those always start with '/', 0x2f); the CRDT
// consensus shares the database through go-ds-pebble and keeps to its own
// "/..." namespace.
//
//	0x00 'v'                format version (one byte, currently 1)
//	0x00 'p' <stripe>       number of pins in that stripe (uvarint)
//	0x00 's' <stripe>       tracker record count per status in that stripe
//	0x01 <cid>              pin: api.Pin binary encoding
//	0x02 <cid>              tracker record: LocalStatus binary encoding
//	0x03 <bit> <cid>        status index, bit = log2(status): a copy of the record
//	0x04 <len> <peer> <cid> allocation index: the pins allocated to a peer
//
// <cid> is the CID's binary form, so listings come out in CID-byte order.
// Counters are split into stripes (by a hash of the CID) so that writers of
// different CIDs update different counter keys under different locks: a
// count is persisted in the same batch as the write that changes it, and
// stays exact across crashes without serialising all writers.
package state

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/stripe"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound is returned by Get for a CID that is not pinned. The REST
	// layer maps it to 404, so its text is part of the API.
	ErrNotFound = errors.New("pin is not part of the pinset")
	// ErrUndefinedCid is returned when a write names no CID.
	ErrUndefinedCid = errors.New("undefined cid")
	// ErrInvalidStatus is returned by SetStatus for a status that is not
	// exactly one tracker status bit.
	ErrInvalidStatus = errors.New("invalid tracker status")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("state: database closed")
)

const (
	prefixSys    byte = 0x00
	prefixPin    byte = 0x01
	prefixRecord byte = 0x02
	prefixIndex  byte = 0x03
	prefixAlloc  byte = 0x04
	// prefixRemoved keys the removal records (removed.go).
	prefixRemoved byte = 0x05

	metaFormat      byte = 'v'
	metaPinCount    byte = 'p'
	metaStatusCount byte = 's'

	formatVersion byte = 1
)

// DB is a peer's pinset and tracker records.
//
// All methods are safe for concurrent use, except Close, which must be
// called once every other call has returned. Calls after Close return
// ErrClosed.
type DB struct {
	pdb    *pebble.DB
	dir    string
	log    zerolog.Logger
	closed atomic.Bool
	space  spaceGuard

	stopFlush chan struct{} // closed by Close: ends flushWAL
	flushDone chan struct{} // closed when flushWAL has returned

	// pinMu[i] serialises the writes of pins in stripe i, so that the
	// read-before-write deciding whether a pin is new is exact, and guards
	// pinCount[i].
	pinMu    stripe.Locks
	pinCount [stripe.N]uint64
	pins     atomic.Int64
	// anyRemoved says a removal record may exist: until then, every
	// applied pin skips the lookup.
	anyRemoved atomic.Bool

	// statusMu[i] does the same for tracker records and statusCount[i].
	statusMu    stripe.Locks
	statusCount [stripe.N]statusCounts

	totalsMu sync.Mutex
	totals   statusCounts // guarded by totalsMu
}

// statusCounts counts records per status, indexed by the status bit.
type statusCounts [64]uint64

// Open opens (creating it if needed) the pebble database in dir, normally
// "<config>/pebble", and loads the counters. It refuses, with ErrDiskFull,
// a file system with less than MinFreeSpace available.
func Open(dir string, log zerolog.Logger) (*DB, error) {
	if err := checkOpen(dir); err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	pdb, err := pebble.Open(dir, pebbleOptions(log))
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	db := &DB{pdb: pdb, dir: dir, log: log, space: spaceGuard{dir: dir}, stopFlush: make(chan struct{}), flushDone: make(chan struct{})}
	if err := db.load(); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	// The sync record's size, measured while nobody else writes: flushWAL
	// must not take its own records for new writes.
	before := pdb.Metrics().WAL.BytesIn
	if err := pdb.LogData(nil, pebble.Sync); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("state: open %s: sync: %w", dir, err)
	}
	synced := pdb.Metrics().WAL.BytesIn
	go db.flushWAL(synced-before, synced)
	log.Debug().Str("dir", dir).Int64("pins", db.pins.Load()).Msg("state opened")
	return db, nil
}

// pebbleOptions sizes pebble for a small peer: the budget is under 40 MB
// idle and under 300 MB with a million pins.
func pebbleOptions(log zerolog.Logger) *pebble.Options {
	opts := &pebble.Options{
		// A million pins with their tracker records are ~3M keys and
		// ~200 MB on disk. The cache fills only as it is used, so an idle
		// peer does not pay for it. Under ingest, the CRDT store, the
		// pinset and the records are read back on every pin; with 16 MiB
		// index and data blocks were read from disk again and again and
		// REST ingest fell from 5.4k to 3k pins/s between 10k and 30k
		// pins; 64 MiB keeps it flat, and 128 MiB bought nothing more.
		CacheSize: 64 << 20,
		// Memtables start at 256 KiB and double up to this size, so an
		// idle peer does not pay for it. Each one is allocated whole, and
		// a flush keeps two alive: with 8 MiB a 3-peer cluster sat at
		// 140 MB RSS per peer after 10k pins, with 4 MiB (the default) at
		// 90 MB, and single-peer ingest stayed at 5.4k pins/s. Writes
		// stall rather than queue more than 16 MiB of memtables.
		MemTableSize:                4 << 20,
		MemTableStopWritesThreshold: 4,
		// Two cores: one compaction normally, a second when L0 backs up.
		CompactionConcurrencyRange: func() (int, int) { return 1, 2 },
		// A million pins fit in ~50 tables; the limit bounds descriptors
		// and table readers with room to spare.
		MaxOpenFiles: 256,
		// New stores start with the newest on-disk format.
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log},
	}
	// Every Put first checks whether the CID is already pinned, and most
	// are not: bloom filters answer those misses without reading blocks.
	// Later levels inherit the policy from L0.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	return opts
}

// load checks the format version and loads the counters.
func (db *DB) load() error {
	v, closer, err := db.pdb.Get([]byte{prefixSys, metaFormat})
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := db.pdb.Set([]byte{prefixSys, metaFormat}, []byte{formatVersion}, pebble.Sync); err != nil {
			return fmt.Errorf("write format version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read format version: %w", err)
	default:
		ok := len(v) == 1 && v[0] == formatVersion
		_ = closer.Close()
		if !ok {
			return fmt.Errorf("unsupported format version %x (want %d)", v, formatVersion)
		}
	}
	if err := db.scanMeta(metaPinCount, func(stripe int, v []byte) error {
		n, err := decodeUvarint(v)
		db.pinCount[stripe] = n
		db.pins.Add(int64(n))
		return err
	}); err != nil {
		return fmt.Errorf("load pin counts: %w", err)
	}
	if err := db.scanMeta(metaStatusCount, func(stripe int, v []byte) error {
		if err := db.statusCount[stripe].unmarshal(v); err != nil {
			return err
		}
		db.totals.add(&db.statusCount[stripe])
		return nil
	}); err != nil {
		return fmt.Errorf("load status counts: %w", err)
	}
	it, err := db.pdb.NewIter(boundsOf(prefixRemoved))
	if err != nil {
		return fmt.Errorf("look for removal records: %w", err)
	}
	db.anyRemoved.Store(it.First())
	return errors.Join(it.Error(), it.Close())
}

// scanMeta calls fn with the stripe and value of every counter key of kind.
func (db *DB) scanMeta(kind byte, fn func(stripe int, v []byte) error) error {
	it, err := db.pdb.NewIter(boundsOf(prefixSys, kind))
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 3 {
			return fmt.Errorf("malformed counter key %x", k)
		}
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(int(k[2]), v)
		}
		if err != nil {
			return fmt.Errorf("counter %x: %w", k, err)
		}
	}
	return it.Error()
}

// Close syncs the WAL, so that unsynced tracker records survive a clean
// shutdown, and closes the database.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return ErrClosed
	}
	close(db.stopFlush)
	<-db.flushDone
	// Flushing the memtables now spares the next Open a WAL replay, which
	// would delay the peer's readiness after a restart.
	if err := db.pdb.Flush(); err != nil {
		db.log.Warn().Err(err).Msg("flush before close")
	}
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("state: close: %w", err)
	}
	return nil
}

// walFlushEvery bounds how long a write made without a sync may stay in
// this process's memory only.
const walFlushEvery = 100 * time.Millisecond

// flushWAL syncs the WAL every walFlushEvery when anything was written
// since the last sync. Pebble keeps a write made without a sync in its
// current 32 KiB WAL block until the block fills or a sync comes, so on a
// quiet peer the last applied pins, tracker records and markers (written
// unsynced: they can be derived again) never reached the file, and a
// kill -9 took them along, minutes after they were written. own is the
// size of the empty record a sync writes, synced the WAL's size when it
// last synced: read by Open, as writes may start before this goroutine.
func (db *DB) flushWAL(own, synced uint64) {
	defer close(db.flushDone)
	t := time.NewTicker(walFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-db.stopFlush:
			return
		case <-t.C:
		}
		in := db.pdb.Metrics().WAL.BytesIn
		if in == synced {
			continue
		}
		if err := db.pdb.LogData(nil, pebble.Sync); err != nil {
			db.log.Warn().Err(err).Msg("sync the write-ahead log")
			continue
		}
		// Writes that raced with the sync count as unsynced: at worst
		// the next tick syncs once more.
		synced = in + own
	}
}

// Pebble returns the underlying database, for components that share it
// (go-ds-pebble's WithPebbleDB). DB owns it: they must keep to keys starting
// with '/' and must not close it.
func (db *DB) Pebble() *pebble.DB { return db.pdb }

// Dir is the database's folder. Other stores of the peer may keep their
// own files in subfolders of it (pebble ignores names it did not create).
func (db *DB) Dir() string { return db.dir }

// pebbleLogger sends pebble's messages to zerolog. Pebble's informational
// messages (WAL recovery, format upgrades) are of interest when debugging.
type pebbleLogger struct{ log zerolog.Logger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.log.Debug().Msgf(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.log.Error().Msgf(format, args...) }

// Fatalf must not return (pebble calls it on invariant violations).
func (l pebbleLogger) Fatalf(format string, args ...any) { l.log.Fatal().Msgf(format, args...) }
