package crdt

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
)

// batchingConfig is testConfig with batches of up to 500 pins or 50 ms.
func batchingConfig() Config {
	cfg := testConfig()
	cfg.Batching = BatchingConfig{MaxBatchSize: 500, MaxBatchAge: 50 * time.Millisecond, MaxQueueSize: 50000}
	return cfg
}

// TestConcurrentLogPinThroughput logs 2,000 pins from 16 goroutines on one
// of three peers and reports the acknowledged throughput and the time until
// every peer applied them.
func TestConcurrentLogPinThroughput(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"batching=false", testConfig()}, {"batching=true", batchingConfig()}} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestPeer(t, "A", tc.cfg)
			b := newTestPeer(t, "B", testConfig())
			c := newTestPeer(t, "C", testConfig())
			connect(t, a, b, c)
			pins := make([]api.Pin, 2000)
			for i := range pins {
				pins[i] = testPin(i, "bulk")
			}
			start := time.Now()
			took := logPins(t, a.c, pins, 16)
			waitSamePinset(t, 30*time.Second, lines(pins...), a, b, c)
			all := time.Since(start)
			t.Logf("2000 pins from 16 goroutines: %.0f pins/s acknowledged; applied on all 3 peers after %s",
				float64(len(pins))/took.Seconds(), all.Round(time.Millisecond))
		})
	}
}

// BenchmarkLogPin measures LogPin from 16 goroutines on a peer alone, with
// and without batching. With batching LogPin returns once the pin is
// journaled and the batch commits in the background; a caller turned away
// by a full queue (ErrQueueFull) tries again a millisecond later, so the
// figure is what the batches sustain.
func BenchmarkLogPin(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"batching=false", testConfig()}, {"batching=true", batchingConfig()}} {
		b.Run(tc.name, func(b *testing.B) {
			p := newTestPeer(b, "A", tc.cfg)
			var next atomic.Int64
			b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					pin := testPin(int(next.Add(1)), "bench")
					err := p.c.LogPin(context.Background(), pin)
					for errors.Is(err, ErrQueueFull) {
						time.Sleep(time.Millisecond)
						err = p.c.LogPin(context.Background(), pin)
					}
					if err != nil {
						b.Error(fmt.Errorf("log pin: %w", err))
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pins/s")
		})
	}
}
