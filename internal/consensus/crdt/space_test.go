package crdt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
	"ipfs-cluster/internal/state/disktest"
)

// TestFullDiskPeerCatchesUp fills the disk of peer B's state while A keeps
// pinning: B refuses its own operations, stays up without writing what A
// sends, and once there is room again it catches up with every pin.
func TestFullDiskPeerCatchesUp(t *testing.T) {
	mnt := disktest.Small(t, 80)
	a := newTestPeer(t, "A", testConfig())
	b := newTestPeerIn(t, "B", testConfig(), filepath.Join(mnt, "pebble"))
	connect(t, a, b)

	first := testPin(0, "before")
	if err := a.c.LogPin(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitSamePinset(t, 10*time.Second, lines(first), a, b)

	free := disktest.Fill(t, mnt, 8<<20)
	if err := b.c.LogPin(context.Background(), testPin(1, "refused")); !errors.Is(err, state.ErrDiskFull) {
		t.Fatalf("LogPin on B with 8 MiB free: %v, want ErrDiskFull", err)
	}
	pins := []api.Pin{first}
	for i := 2; i < 202; i++ {
		pins = append(pins, testPin(i, "while full"))
	}
	logPins(t, a.c, pins[1:], 8)
	// Several rebroadcasts (testConfig: every 300 ms) reach B meanwhile.
	time.Sleep(2 * time.Second)
	if got := b.pinset(); len(got) != 1 {
		t.Fatalf("B holds %d pins with its disk full, want only the first", len(got))
	}
	if left := disktest.Available(t, mnt); left < 4<<20 {
		t.Fatalf("B wrote with its disk full: %d bytes left", left)
	}

	free()
	start := time.Now()
	waitSamePinset(t, 30*time.Second, lines(pins...), a, b)
	t.Logf("B caught up with %d pins %s after the disk had room", len(pins)-1, time.Since(start).Round(time.Millisecond))
	checkCalls(t, []*testPeer{b}, pins, 1, 0)
}
