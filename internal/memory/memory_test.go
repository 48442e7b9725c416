package memory

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestDue(t *testing.T) {
	r := Default(zerolog.Nop())
	for _, tc := range []struct {
		name                   string
		allocated, reclaimable uint64
		want                   bool
	}{
		{"quiet with much to give back", 1 << 20, 64 << 20, true},
		{"busy", 64 << 20, 64 << 20, false},
		{"quiet with little to give back", 1 << 20, 1 << 20, false},
		{"at the thresholds", 16<<20 - 1, 16 << 20, true},
	} {
		if got := r.due(tc.allocated, tc.reclaimable); got != tc.want {
			t.Errorf("%s: due(%d, %d) = %v, want %v", tc.name, tc.allocated, tc.reclaimable, got, tc.want)
		}
	}
	for _, tc := range []struct{ free, objects, live, want uint64 }{
		{free: 10, objects: 50, live: 20, want: 40},
		{free: 10, objects: 20, live: 20, want: 10},
		{free: 10, objects: 15, live: 20, want: 10}, // objects freed since
	} {
		if got := reclaimable(tc.free, tc.objects, tc.live); got != tc.want {
			t.Errorf("reclaimable(%d, %d, %d) = %d, want %d", tc.free, tc.objects, tc.live, got, tc.want)
		}
	}
}

var live, garbage [][]byte

// runUntilRelease runs a Releaser that looks every 20 ms until its first
// release (failing the test if none comes within 10 s; describe says what
// the heap holds then), and stops it when the test ends.
func runUntilRelease(t *testing.T, describe func() string) *Releaser {
	t.Helper()
	r := Default(zerolog.Nop())
	r.Interval = 20 * time.Millisecond
	var calls atomic.Int32
	release := r.release
	r.release = func() { calls.Add(1); release() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing released within 10 s; %s", describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Run has released; let what it freed leave the counts.
	time.Sleep(50 * time.Millisecond)
	return r
}

// TestRunReleasesUncollectedGarbage makes 32 MiB of garbage that no
// collection has seen, as a burst leaves it, goes quiet, and waits for it
// to be collected and given back.
func TestRunReleasesUncollectedGarbage(t *testing.T) {
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but Run's
	for i := 0; i < 32*16; i++ {
		garbage = append(garbage, make([]byte, 64<<10))
	}
	garbage = nil
	heap := []metrics.Sample{{Name: objectsMetric}, {Name: liveMetric}}
	r := runUntilRelease(t, func() string {
		metrics.Read(heap)
		return fmt.Sprintf("heap objects %d bytes, live %d", heap[0].Value.Uint64(), heap[1].Value.Uint64())
	})
	metrics.Read(heap)
	if objects, live := heap[0].Value.Uint64(), heap[1].Value.Uint64(); objects > live+r.MinFree {
		t.Errorf("after a release the heap holds %d bytes of objects for %d live", objects, live)
	}
}

// TestRunReleasesAfterBurst holds 64 MiB, makes 96 MiB of garbage and
// collects it, goes quiet, and waits for the free heap to go back to the
// OS. The live heap keeps the heap goal above what is free, so that the
// runtime's own background scavenger leaves it alone.
func TestRunReleasesAfterBurst(t *testing.T) {
	for i := 0; i < 64; i++ {
		live = append(live, make([]byte, 1<<20))
	}
	defer func() { live = nil }()
	for i := 0; i < 96*16; i++ {
		garbage = append(garbage, make([]byte, 64<<10))
	}
	garbage = nil
	runtime.GC()
	free := []metrics.Sample{{Name: freeMetric}}
	r := runUntilRelease(t, func() string {
		metrics.Read(free)
		return fmt.Sprintf("%d bytes of heap free", free[0].Value.Uint64())
	})
	metrics.Read(free)
	if got := free[0].Value.Uint64(); got >= r.MinFree {
		t.Errorf("after a release %d bytes of heap are still free and held, want < %d", got, r.MinFree)
	}
}

func TestWatchLimit(t *testing.T) {
	live = append(live, make([]byte, 8<<20)) // at least 8 MiB stays live
	defer func() { live = live[:len(live)-1] }()
	got := make(chan uint64, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	WatchLimit(ctx, 10*time.Millisecond, 4<<20, func(used uint64) { got <- used })
	select {
	case used := <-got:
		if used <= 4<<20 {
			t.Fatalf("exceeded with %d bytes, not above the limit", used)
		}
	default:
		t.Fatal("a heap above the limit was not reported")
	}
	quiet, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	WatchLimit(quiet, 10*time.Millisecond, 1<<40, func(uint64) { t.Error("reported below the limit") })
}
