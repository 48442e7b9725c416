package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// MinFreeSpace is the free space the state's file system must keep. pebble
// treats a failed write to its log as fatal, and at start it retries a
// failed compaction without end: below this floor the peer refuses new
// operations (CheckSpace) and does not open its state (Open), with an
// error saying so, instead of dying or spinning once the disk is full.
const MinFreeSpace = 64 << 20

// spaceRecheck spaces the statfs calls of CheckSpace: free space changes
// slowly next to the rate of pins.
const spaceRecheck = time.Second

// ErrDiskFull is returned when the state's file system has less than
// MinFreeSpace available.
var ErrDiskFull = errors.New("not enough free disk space for the state")

// spaceGuard caches the last free-space check of one folder. Safe for
// concurrent use.
type spaceGuard struct {
	dir string
	mu  sync.Mutex
	at  time.Time
	err error
}

// check returns the cached result, checking again after spaceRecheck.
func (g *spaceGuard) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); now.Sub(g.at) >= spaceRecheck {
		g.at, g.err = now, checkFree(g.dir)
	}
	return g.err
}

// checkFree returns ErrDiskFull, with the figures, when dir's file system
// (its closest existing ancestor's, for a folder yet to be created) has
// less than MinFreeSpace available to this process.
func checkFree(dir string) error {
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		// Not knowing is not a reason to refuse: pebble reports real
		// write errors itself.
		return nil
	}
	if free := st.Bavail * uint64(st.Bsize); free < MinFreeSpace {
		return fmt.Errorf("%w: %d MiB available on the file system of %s, the peer keeps at least %d MiB free: make room, then try again",
			ErrDiskFull, free>>20, dir, MinFreeSpace>>20)
	}
	return nil
}

// CheckSpace returns an ErrDiskFull error when the state's file system has
// less than MinFreeSpace available. Writers of new operations call it
// first so that a full disk refuses them with a clear error; the result
// is at most spaceRecheck old.
func (db *DB) CheckSpace() error { return db.space.check() }
