package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// BenchmarkCall measures the latency of a unary call between two hosts on
// loopback, and of a call to self.
func BenchmarkCall(b *testing.B) {
	c := newCluster(b, 2, Config{IsTrusted: TrustAll})
	ctx := context.Background()
	for _, target := range []struct {
		name string
		p    peer.ID
	}{{"remote", c.hosts[1].ID()}, {"self", c.hosts[0].ID()}} {
		b.Run(target.name, func(b *testing.B) {
			b.ReportAllocs()
			var out string
			for b.Loop() {
				if err := c.rpcs[0].Call(ctx, target.p, "Test.Echo", echoArg{Text: "ping"}, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStream measures the throughput of a stream of small values
// between two hosts on loopback: pins (binary) and pin statuses (JSON).
func BenchmarkStream(b *testing.B) {
	c := newCluster(b, 2, Config{IsTrusted: TrustAll})
	pin := api.PinWithOpts(cidOf(1), api.PinOptions{Name: "bench", ReplicationFactorMin: 2, ReplicationFactorMax: 3})
	pin.Allocations = []peer.ID{c.hosts[0].ID(), c.hosts[1].ID()}
	pin.Timestamp = time.Now()
	HandleStream(c.rpcs[1], "Bench.Pins", Open, func(_ context.Context, _ peer.ID, n int, send func(*api.Pin) error) error {
		for range n {
			if err := send(&pin); err != nil {
				return err
			}
		}
		return nil
	})
	const n = 50_000
	for _, m := range []struct {
		name, method string
		arg          any
		decode       func(Decoder) error
	}{
		{"pins", "Bench.Pins", n, func(d Decoder) error { var p api.Pin; return d(&p) }},
		{"pininfos", "Test.Count", echoArg{Text: "bench", Count: n}, func(d Decoder) error { var pi api.PinInfo; return d(&pi) }},
	} {
		b.Run(m.name, func(b *testing.B) {
			ctx := context.Background()
			items := 0
			for b.Loop() {
				err := c.rpcs[0].Stream(ctx, c.hosts[1].ID(), m.method, m.arg, func(d Decoder) error {
					items++
					return m.decode(d)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(items)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
