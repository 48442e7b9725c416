package state

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

var benchPeers = []peer.ID{testPeer(1), testPeer(2), testPeer(3)}

// benchPin is a typical pin: replicated on three peers, named, one
// metadata entry. Every 1000th is a shard pin, for ListType.
func benchPin(i int) api.Pin {
	p := api.PinWithOpts(testCid(i), api.PinOptions{
		ReplicationFactorMin: 2,
		ReplicationFactorMax: 3,
		Name:                 "backup-" + strconv.Itoa(i),
		Metadata:             map[string]string{"source": "bench"},
	})
	if i%1000 == 0 {
		p.Type = api.ShardType
	}
	p.Allocations = benchPeers
	p.Timestamp = time.Unix(1_700_000_000, int64(i)).UTC()
	return p
}

// BenchmarkPutDurable measures synced Puts of new pins: WAL syncs are
// shared by the writers committing at the same time.
func BenchmarkPutDurable(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db := newTestDB(b)
			var next atomic.Int64
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := db.Put(benchPin(int(next.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pins/s")
		})
	}
}

// BenchmarkSetStatus measures unsynced tracker record updates from 16
// writers, each moving its CIDs between pinning and pinned.
func BenchmarkSetStatus(b *testing.B) {
	db := newTestDB(b)
	cids := make([]api.Cid, 1<<16)
	for i := range cids {
		cids[i] = testCid(i)
	}
	var next atomic.Int64
	b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := int(next.Add(1))
			st := api.TrackerStatusPinning
			if n/len(cids)%2 == 1 {
				st = api.TrackerStatusPinned
			}
			if err := db.SetStatus(cids[n%len(cids)], LocalStatus{Status: st, TS: time.Now()}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

const million = 1_000_000

// BenchmarkMillion runs its sub-benchmarks against one database of a
// million pins, all with a pinned tracker record but ten in pin_error.
func BenchmarkMillion(b *testing.B) {
	dir := b.TempDir()
	db := openTestDB(b, dir)
	start := time.Now()
	fillMillion(b, db)
	b.Logf("built %d pins and records in %s", million, time.Since(start).Round(time.Millisecond))
	// Reopen, as a peer restarting with a million pins does.
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	db = openTestDB(b, dir)
	b.Cleanup(func() { _ = db.Close() })
	b.Logf("reopened in %s", time.Since(start).Round(time.Microsecond))
	ctx := context.Background()

	b.Run("Get", func(b *testing.B) {
		cids := make([]api.Cid, 4096)
		for i := range cids {
			cids[i] = testCid(rand.IntN(million))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := db.Get(cids[i%len(cids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})

	b.Run("List", func(b *testing.B) {
		benchList(b, func(fn func(api.Pin) error) error { return db.List(ctx, fn) }, million)
	})

	b.Run("ListType", func(b *testing.B) {
		benchList(b, func(fn func(api.Pin) error) error { return db.ListType(ctx, api.ShardType, fn) }, million/1000)
	})

	b.Run("ListByStatus", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			if err := db.ListByStatus(ctx, api.TrackerStatusPinError, func(api.Cid, LocalStatus) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			if n != 10 {
				b.Fatalf("found %d pin_error records, want 10", n)
			}
		}
	})

	b.Run("CountStatus", func(b *testing.B) {
		for b.Loop() {
			if db.CountStatus()[api.TrackerStatusPinned] != million-10 {
				b.Fatal("wrong pinned count")
			}
		}
		b.ReportMetric(procStatusMB("VmHWM:"), "peak-rss-MB")
	})
}

// fillMillion writes the pins in synced batches and the records from two
// goroutines.
func fillMillion(b *testing.B, db *DB) {
	const batch = 10_000
	pins := make([]api.Pin, batch)
	for i := 0; i < million; i += batch {
		for j := range pins {
			pins[j] = benchPin(i + j)
		}
		if err := db.PutMany(pins); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < million; i += 2 {
				st := api.TrackerStatusPinned
				if i%(million/10) == 1 {
					st = api.TrackerStatusPinError
				}
				if err := db.SetStatus(testCid(i), LocalStatus{Status: st, TS: time.Unix(1_700_000_000, 0)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if db.Len() != million {
		b.Fatalf("Len = %d", db.Len())
	}
}

// benchList runs list and reports per-pin cost, allocations per pin and
// the peak growth of the heap while listing, sampled every 16384 pins.
func benchList(b *testing.B, list func(func(api.Pin) error) error, want int) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := heap()
	var peak uint64
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	seen := 0
	for b.Loop() {
		n := 0
		if err := list(func(api.Pin) error {
			if n++; n%16384 == 0 {
				peak = max(peak, heap())
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if n != want {
			b.Fatalf("listed %d pins, want %d", n, want)
		}
		seen += million
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(seen), "ns/pin")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(seen), "allocs/pin")
	b.ReportMetric(float64(max(peak, base)-base)/(1<<20), "peak-heap-growth-MB")
	b.ReportMetric(procStatusMB("VmRSS:"), "rss-MB")
}

// procStatusMB reads a memory figure of this process, in MiB, from
// /proc/self/status (VmRSS: resident now, VmHWM: peak resident).
func procStatusMB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}
