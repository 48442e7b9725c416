// Package disktest gives tests a small real file system to fill up, for
// the full-disk behaviour of the state and of what writes to it.
package disktest

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Small mounts a tmpfs of the given size in a temporary folder, unmounted
// at the end of the test, and returns the folder. It skips the test where
// mounting is not allowed (not root): a full disk cannot be made any other
// way without faking the file system.
func Small(t testing.TB, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+strconv.Itoa(mib)+"m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	return mnt
}

// Fill writes mnt/fill so that about leave bytes stay free on mnt's file
// system, replacing an earlier fill, and returns a function removing it.
func Fill(t testing.TB, mnt string, leave uint64) (free func()) {
	t.Helper()
	fill := filepath.Join(mnt, "fill")
	if err := os.Remove(fill); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	avail := Available(t, mnt)
	if avail <= leave {
		t.Fatalf("only %d bytes free on %s, cannot leave %d", avail, mnt, leave)
	}
	if err := os.WriteFile(fill, make([]byte, avail-leave), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(fill); err != nil {
			t.Fatal(err)
		}
	}
}

// Available returns the bytes free on dir's file system.
func Available(t testing.TB, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}
