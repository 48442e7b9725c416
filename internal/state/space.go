package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The state keeps two floors of free space on its file system. pebble
// treats a failed write to its log as fatal, and at start it retries a
// failed compaction without end, so the peer must stop writing before the
// disk is full rather than find out when it is:
//
//   - below MinFreeSpace the peer refuses new operations (CheckSpace) and
//     does not open its state (Open), with an error saying so;
//   - below MinWriteSpace it stops writing altogether (CheckWrite): the
//     changes other peers send, the tracker's records. They are derived
//     data, fetched or rebuilt once there is room again, and the peer stays
//     up, serving what it has, instead of dying.
//
// The gap between the floors is what this peer's derived writes may use
// once its own operations are refused, typically while kubo, on the same
// disk, fills it.
const (
	MinFreeSpace  = 64 << 20
	MinWriteSpace = 16 << 20
)

// Free space is checked again at most every spaceRecheck while at least
// spaceAmple is free, and on every check below that: a kubo pinning on the
// same disk can write hundreds of MB a second.
const (
	spaceRecheck = time.Second
	spaceAmple   = 1 << 30
)

// ErrDiskFull is returned when the state's file system has less free space
// than the operation needs.
var ErrDiskFull = errors.New("not enough free disk space for the state")

// spaceGuard caches the free space of one folder's file system. Safe for
// concurrent use.
type spaceGuard struct {
	dir string

	mu    sync.Mutex
	at    time.Time
	free  uint64
	known bool // false when statfs failed
}

// available returns the free space, cached as spaceRecheck and spaceAmple
// allow, and false when it cannot be known.
func (g *spaceGuard) available() (uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if g.at.IsZero() || now.Sub(g.at) >= spaceRecheck || g.free < spaceAmple {
		g.at = now
		g.free, g.known = freeSpace(g.dir)
	}
	return g.free, g.known
}

// check returns an ErrDiskFull error naming what stops when less than
// floor is free.
func (g *spaceGuard) check(floor uint64, what string) error {
	free, known := g.available()
	if !known || free >= floor {
		// Not knowing is not a reason to refuse: pebble reports real
		// write errors itself.
		return nil
	}
	return fmt.Errorf("%w: %d MiB available on the file system of %s, %s below %d MiB: make room, then try again",
		ErrDiskFull, free>>20, g.dir, what, floor>>20)
}

// freeSpace returns the space available to this process on dir's file
// system.
func freeSpace(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}

// checkOpen is Open's check, on the closest existing ancestor of a folder
// yet to be created.
func checkOpen(dir string) error {
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	g := spaceGuard{dir: dir}
	return g.check(MinFreeSpace, "the peer does not start")
}

// CheckSpace returns an ErrDiskFull error when the state's file system has
// less than MinFreeSpace available. Writers of new operations call it
// first so that a full disk refuses them with a clear error.
func (db *DB) CheckSpace() error {
	return db.space.check(MinFreeSpace, "the peer refuses new pins and unpins")
}

// CheckWrite returns an ErrDiskFull error when the state's file system has
// less than MinWriteSpace available. Every write to the database checks it
// first; other stores sharing the database (Pebble) must too.
func (db *DB) CheckWrite() error {
	return db.space.check(MinWriteSpace, "the peer stops writing to its state")
}

// commit commits b unless the disk is too full to write.
func (db *DB) commit(b *pebble.Batch, opts *pebble.WriteOptions) error {
	if err := db.CheckWrite(); err != nil {
		return err
	}
	return b.Commit(opts)
}
