package state

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state/disktest"
)

// TestFullDisk runs the state on a small tmpfs: a file system with less
// than MinFreeSpace available refuses to open and new operations, one with
// less than MinWriteSpace refuses every write, and all works again once
// there is room.
func TestFullDisk(t *testing.T) {
	mnt := disktest.Small(t, 80)
	dir := filepath.Join(mnt, "pebble")

	free := disktest.Fill(t, mnt, 40<<20)
	_, err := Open(dir, zerolog.Nop())
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Open with 40 MiB free: %v, want ErrDiskFull", err)
	}
	t.Logf("refused: %v", err)
	free()

	db, err := Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := errors.Join(db.CheckSpace(), db.CheckWrite()); err != nil {
		t.Fatalf("checks with room: %v", err)
	}

	// Between the floors: new operations are refused, writes go on.
	disktest.Fill(t, mnt, 40<<20)
	if err := db.CheckSpace(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("CheckSpace with 40 MiB free: %v, want ErrDiskFull", err)
	}
	if err := errors.Join(db.CheckWrite(), db.Put(testPin(1)),
		db.SetStatus(testCid(1), LocalStatus{Status: api.TrackerStatusPinned, TS: time.Now()})); err != nil {
		t.Fatalf("writes with 40 MiB free: %v", err)
	}

	// Below the write floor nothing is written, and the database stays
	// usable.
	free = disktest.Fill(t, mnt, 8<<20)
	for name, err := range map[string]error{
		"CheckWrite": db.CheckWrite(),
		"Put":        db.Put(testPin(2)),
		"Delete":     db.Delete(testCid(1)),
		"SetStatus":  db.SetStatus(testCid(2), LocalStatus{Status: api.TrackerStatusPinned, TS: time.Now()}),
	} {
		if !errors.Is(err, ErrDiskFull) {
			t.Errorf("%s with 8 MiB free: %v, want ErrDiskFull", name, err)
		}
	}
	if _, err := db.Get(testCid(1)); err != nil {
		t.Fatalf("Get with 8 MiB free: %v", err)
	}
	free()
	if err := errors.Join(db.CheckSpace(), db.Put(testPin(2)), db.Delete(testCid(1))); err != nil {
		t.Fatalf("after making room: %v", err)
	}
}
