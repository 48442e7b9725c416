package ipfsconn

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
)

// BenchmarkPinAlreadyPinned measures the fast path of Pin: one pin/ls.
func BenchmarkPinAlreadyPinned(b *testing.B) {
	d := kubotest.Start(b)
	c := newConnector(b, d.APIAddr)
	ctx := ctxTimeout(b, 10*time.Minute)
	pin := recursivePin(putBlock(b, c))
	if err := c.Pin(ctx, pin, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := kuboCPUTime(b, d)
	for b.Loop() {
		if err := c.Pin(ctx, pin, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((kuboCPUTime(b, d)-cpu0).Microseconds())/float64(b.N), "kubo-cpu-µs/op")
}

// BenchmarkPinLs lists n recursive pins. Allocations per pin stay the same
// as n grows: pins are decoded one at a time, never accumulated.
func BenchmarkPinLs(b *testing.B) {
	d := kubotest.Start(b)
	c := newConnector(b, d.APIAddr)
	ctx := ctxTimeout(b, 10*time.Minute)
	pinned := 1 // the empty directory kubo pins at init
	for _, n := range []int{1000, 10000} {
		pinBlocks(b, d, n-pinned)
		pinned = n
		b.Run(fmt.Sprintf("pins=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				count := 0
				err := c.PinLs(ctx, PinTypeRecursive, func(api.IPFSPinInfo) error {
					count++
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if count != n {
					b.Fatalf("listed %d pins, want %d", count, n)
				}
			}
			runtime.ReadMemStats(&after)
			perPin := float64(b.N * n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/perPin, "ns/pin")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/perPin, "allocs/pin")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/perPin, "B/pin")
		})
	}
}

// BenchmarkPinNew pins CIDs kubo holds unpinned with PinMany, one or 32 at
// a time, each checked with pin/ls first or marked unheld: ns/op is per
// pin, and kubo-cpu-µs/pin is what kubo spends on it.
func BenchmarkPinNew(b *testing.B) {
	d := kubotest.Start(b)
	c := newConnector(b, d.APIAddr)
	ctx := ctxTimeout(b, 10*time.Minute)
	for _, batch := range []int{1, 32} {
		for _, known := range []bool{false, true} {
			name := fmt.Sprintf("batch=%d/checked", batch)
			if known {
				name = fmt.Sprintf("batch=%d/unheld", batch)
			}
			b.Run(name, func(b *testing.B) {
				pins := make([]api.Pin, 0, batch)
				unheld := make([]bool, batch)
				for i := range unheld {
					unheld[i] = known
				}
				var kuboCPU time.Duration
				flush := func() {
					cpu0 := kuboCPUTime(b, d)
					var failed atomic.Pointer[error]
					c.PinMany(ctx, pins, unheld[:len(pins)], func(_ int, err error) {
						if err != nil {
							failed.Store(&err)
						}
					})
					if err := failed.Load(); err != nil {
						b.Fatal(*err)
					}
					kuboCPU += kuboCPUTime(b, d) - cpu0
					pins = pins[:0]
				}
				for b.Loop() {
					b.StopTimer()
					pins = append(pins, recursivePin(putBlock(b, c)))
					b.StartTimer()
					if len(pins) == batch {
						flush()
					}
				}
				if len(pins) > 0 {
					flush()
				}
				b.ReportMetric(float64(kuboCPU.Microseconds())/float64(b.N), "kubo-cpu-µs/pin")
			})
		}
	}
}

// kuboCPUTime reads the CPU time d has used so far. It moves in 10 ms
// steps, so only sums over many calls say anything.
func kuboCPUTime(b *testing.B, d *kubo.Daemon) time.Duration {
	t, err := d.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	return t
}
