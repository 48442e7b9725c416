package state

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestFullDisk runs the state on a small tmpfs: a file system with less
// than MinFreeSpace available refuses to open, and CheckSpace reports it
// within spaceRecheck once space runs low.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=80m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	fill := filepath.Join(mnt, "fill")
	filler := func(mib int) {
		t.Helper()
		if err := os.WriteFile(fill, make([]byte, mib<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(mnt, "pebble")

	filler(30)
	_, err := Open(dir, zerolog.Nop())
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Open with about 50 MiB free: %v, want ErrDiskFull", err)
	}
	t.Logf("refused: %v", err)

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CheckSpace(); err != nil {
		t.Fatalf("CheckSpace with room: %v", err)
	}
	filler(30)
	deadline := time.Now().Add(spaceRecheck + 5*time.Second)
	for db.CheckSpace() == nil {
		if time.Now().After(deadline) {
			t.Fatal("CheckSpace did not notice the full disk")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
