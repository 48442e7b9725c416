package policy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"ipfs-cluster/policies"
)

// loadExamples writes the named example policies, concatenated, as one
// policy file and loads it. The examples define disjoint hooks and locals.
func loadExamples(b testing.TB, names ...string) *Policy {
	b.Helper()
	var src []byte
	for _, n := range names {
		s, err := policies.FS.ReadFile(n)
		if err != nil {
			b.Fatal(err)
		}
		src = append(append(src, "do\n"...), s...)
		src = append(src, "\nend\n"...)
	}
	path := filepath.Join(b.TempDir(), "policy.lua")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		b.Fatal(err)
	}
	// The default budget, except on a machine so loaded that a call
	// stalls for 50ms: a benchmark should measure, not flake.
	p, err := Load(path, Options{Logger: quiet(), Timeout: testTimeout})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// reportPercentiles adds p50 and p99 latencies (ns) to the benchmark's
// output, from per-operation samples.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkAdmitReplication is the per-pin cost on the ingest path:
// admission.lua's admit then tiers.lua's replication. Target: p50 < 20µs.
func BenchmarkAdmitReplication(b *testing.B) {
	p := loadExamples(b, "admission.lua", "tiers.lua")
	pin := testPin(b)
	ctx := context.Background()
	samples := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		ok, _, err := p.Admit(ctx, pin)
		if !ok || err != nil {
			b.Fatalf("Admit = %v, %v", ok, err)
		}
		lo, _, err := p.Replication(ctx, pin)
		if lo != 3 || err != nil {
			b.Fatalf("Replication = %d, %v", lo, err)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, samples)
}

// BenchmarkAllocate100 is regions.lua over 100 candidates in 4 regions.
// Target: p50 < 100µs.
func BenchmarkAllocate100(b *testing.B) {
	p := loadExamples(b, "regions.lua")
	pin := testPin(b)
	cands := testCandidates(100, "eu", "us", "ap", "sa")
	ctx := context.Background()
	samples := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		ids, err := p.Allocate(ctx, pin, cands)
		if len(ids) != 100 || err != nil {
			b.Fatalf("Allocate = %d ids, %v", len(ids), err)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, samples)
}

// BenchmarkAdmitReplicationParallel runs the ingest hooks from every
// processor at once: with no lock held across calls, ns/op should drop
// roughly with GOMAXPROCS compared to BenchmarkAdmitReplication.
func BenchmarkAdmitReplicationParallel(b *testing.B) {
	p := loadExamples(b, "admission.lua", "tiers.lua")
	pin := testPin(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if ok, _, err := p.Admit(ctx, pin); !ok || err != nil {
				b.Errorf("Admit = %v, %v", ok, err)
				return
			}
			if lo, _, err := p.Replication(ctx, pin); lo != 3 || err != nil {
				b.Errorf("Replication = %d, %v", lo, err)
				return
			}
		}
	})
}

// BenchmarkStateCreation is the cost of a new Lua state (sandbox plus the
// top level of admission.lua and tiers.lua), paid when the pool is empty or
// after a hook error.
func BenchmarkStateCreation(b *testing.B) {
	p := loadExamples(b, "admission.lua", "tiers.lua")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st, err := p.newState()
		if err != nil {
			b.Fatal(err)
		}
		st.close()
	}
}

// BenchmarkPatterns is a hook that reads its decision out of a pin's name
// with the pattern functions, as policies parsing names or metadata do.
func BenchmarkPatterns(b *testing.B) {
	p := mustLoad(b, `
function admit(pin)
  local team, kind, n = pin.name:match("^(%w+)/(%a+)%-(%d+)$")
  local _, dashes = pin.name:gsub("%-", "")
  local words = 0
  for _ in pin.name:gmatch("[^/%-]+") do words = words + 1 end
  return team == "media" and kind == "video" and n == "2024" and dashes == 1 and words == 3 and pin.name:find("video", 1, true) == 7
end`, Options{Timeout: testTimeout})
	pin := testPin(b)
	pin.Name = "media/video-2024"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := p.Admit(ctx, pin); !ok || err != nil {
			b.Fatalf("Admit = %v, %v", ok, err)
		}
	}
}
