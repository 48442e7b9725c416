package memory

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestDue(t *testing.T) {
	r := Default(zerolog.Nop())
	for _, tc := range []struct {
		name            string
		allocated, free uint64
		want            bool
	}{
		{"quiet with much free heap", 1 << 20, 64 << 20, true},
		{"busy", 64 << 20, 64 << 20, false},
		{"quiet with little free heap", 1 << 20, 1 << 20, false},
		{"at the thresholds", 16<<20 - 1, 16 << 20, true},
	} {
		if got := r.due(tc.allocated, tc.free); got != tc.want {
			t.Errorf("%s: due(%d, %d) = %v, want %v", tc.name, tc.allocated, tc.free, got, tc.want)
		}
	}
}

var live, garbage [][]byte

// TestRunReleasesAfterBurst holds 64 MiB, makes 96 MiB of garbage and
// collects it, goes quiet, and waits for the free heap to go back to the
// OS. The live heap keeps the heap goal above what is free, so that the
// runtime's own background scavenger leaves it alone.
func TestRunReleasesAfterBurst(t *testing.T) {
	r := Default(zerolog.Nop())
	r.Interval = 20 * time.Millisecond
	var calls atomic.Int32
	release := r.release
	r.release = func() { calls.Add(1); release() }

	for i := 0; i < 64; i++ {
		live = append(live, make([]byte, 1<<20))
	}
	defer func() { live = nil }()
	for i := 0; i < 96*16; i++ {
		garbage = append(garbage, make([]byte, 64<<10))
	}
	garbage = nil
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	free := []metrics.Sample{{Name: freeMetric}}
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 {
		if time.Now().After(deadline) {
			metrics.Read(free)
			t.Fatalf("nothing released within 10 s; %d bytes of heap free", free[0].Value.Uint64())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Run has released; the heap it freed is no longer held.
	time.Sleep(50 * time.Millisecond)
	metrics.Read(free)
	if got := free[0].Value.Uint64(); got >= r.MinFree {
		t.Errorf("after a release %d bytes of heap are still free and held, want < %d", got, r.MinFree)
	}
}
