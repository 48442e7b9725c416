package ipfsconn

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
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
	for b.Loop() {
		if err := c.Pin(ctx, pin, nil); err != nil {
			b.Fatal(err)
		}
	}
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

// BenchmarkPinNew pins CIDs kubo holds unpinned, one Pin each or
// PinMany batches of 32: ns/op is per pin.
func BenchmarkPinNew(b *testing.B) {
	d := kubotest.Start(b)
	c := newConnector(b, d.APIAddr)
	ctx := ctxTimeout(b, 10*time.Minute)
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			pins := make([]api.Pin, 0, batch)
			flush := func() {
				errs := []error{nil}
				if batch == 1 {
					errs[0] = c.Pin(ctx, pins[0], nil)
				} else {
					errs = c.PinMany(ctx, pins)
				}
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
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
		})
	}
}
