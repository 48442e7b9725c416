// Package memory returns heap the peer no longer uses to the operating
// system once a burst of work ends. The daemon collects garbage lazily
// (GOGC 200) so that ingest spends little CPU on it; after a burst the
// runtime keeps the freed heap mapped for a long time, which an operator
// reads as the peer's resident size. Releasing it when the peer has gone
// quiet costs one collection per burst and keeps the idle footprint close
// to the live heap.
package memory

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/rs/zerolog"
)

// Releaser decides when to release. Its zero value is not usable: take
// Default and adjust it. Run is the only method and is called once.
type Releaser struct {
	// Interval is how often the heap is looked at.
	Interval time.Duration
	// QuietBytes: the peer is quiet when it allocated less than this
	// during the last interval.
	QuietBytes uint64
	// MinFree: nothing is released while less than this would go back
	// to the OS, so an idle peer does not collect every interval.
	MinFree uint64
	Log     zerolog.Logger

	// release is debug.FreeOSMemory; tests count its calls.
	release func()
}

// Default looks every 5 s and releases once the peer allocates less than
// 16 MiB in that time while at least 16 MiB would go back.
func Default(log zerolog.Logger) *Releaser {
	return &Releaser{Interval: 5 * time.Second, QuietBytes: 16 << 20, MinFree: 16 << 20, Log: log, release: debug.FreeOSMemory}
}

const (
	allocsMetric  = "/gc/heap/allocs:bytes"
	freeMetric    = "/memory/classes/heap/free:bytes"
	objectsMetric = "/memory/classes/heap/objects:bytes"
	liveMetric    = "/gc/heap/live:bytes"
)

// due says whether to release, given what was allocated during the last
// interval and what a release would give back.
func (r *Releaser) due(allocated, reclaimable uint64) bool {
	return allocated < r.QuietBytes && reclaimable >= r.MinFree
}

// reclaimable is what a collection and a release would give back: the
// free heap still held, and the garbage made since the last collection. A
// burst usually ends between two collections, and a quiet peer reaches
// no next one on its own, so that garbage would stay resident.
func reclaimable(free, objects, live uint64) uint64 {
	if objects > live {
		free += objects - live
	}
	return free
}

// Run releases memory whenever a quiet interval follows a busy one, until
// ctx ends.
func (r *Releaser) Run(ctx context.Context) {
	samples := []metrics.Sample{{Name: allocsMetric}, {Name: freeMetric}, {Name: objectsMetric}, {Name: liveMetric}}
	metrics.Read(samples)
	last := samples[0].Value.Uint64()
	every(ctx, r.Interval, func() bool {
		metrics.Read(samples)
		allocs := samples[0].Value.Uint64()
		back := reclaimable(samples[1].Value.Uint64(), samples[2].Value.Uint64(), samples[3].Value.Uint64())
		allocated := allocs - last
		last = allocs
		if r.due(allocated, back) {
			start := time.Now()
			r.release()
			r.Log.Debug().Uint64("reclaimable_bytes", back).Dur("took", time.Since(start)).Msg("returned free heap to the OS")
		}
		return true
	})
}

// WatchLimit calls exceeded once, and returns, when the heap's objects
// (live, or garbage a collection does not reclaim) exceed limit bytes; it
// looks every interval and returns when ctx ends. What looks like too much
// is collected first, so that garbage alone never trips it.
func WatchLimit(ctx context.Context, interval time.Duration, limit uint64, exceeded func(used uint64)) {
	sample := []metrics.Sample{{Name: objectsMetric}}
	every(ctx, interval, func() bool {
		metrics.Read(sample)
		if sample[0].Value.Uint64() <= limit {
			return true
		}
		runtime.GC()
		metrics.Read(sample)
		if used := sample[0].Value.Uint64(); used > limit {
			exceeded(used)
			return false
		}
		return true
	})
}

// every calls fn each interval until ctx ends or fn returns false.
func every(ctx context.Context, interval time.Duration, fn func() bool) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !fn() {
			return
		}
	}
}
