package allocator

import (
	"strconv"
	"testing"
)

// benchCluster is 100 peers in 10 tag groups with distinct free space.
func benchCluster() []spec {
	specs := make([]spec, 0, 100)
	for i := range 100 {
		specs = append(specs, spec{id: "peer-" + strconv.Itoa(i), group: "g" + strconv.Itoa(i%10), free: int64(1+(i*7919)%1000) << 30})
	}
	return specs
}

// BenchmarkAllocate allocates a new pin over 100 candidates ranked by
// tag:group and freespace, with a free-space floor.
func BenchmarkAllocate(b *testing.B) {
	a := Allocator{MinFreeSpace: 10 << 30}
	req := Request{Pin: pinOf(3, 5), Metrics: metricsOf(benchCluster())}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Allocate(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReallocate re-pins away from a dead peer: one current
// allocation is kept, one is excluded, and a user allocation leads.
func BenchmarkReallocate(b *testing.B) {
	a := Allocator{MinFreeSpace: 10 << 30}
	req := Request{
		Pin:      pinOf(3, 3, "peer-42"),
		Current:  ids("peer-3", "peer-17", "peer-28"),
		Excluded: ids("peer-17"),
		Metrics:  metricsOf(benchCluster()),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Allocate(req); err != nil {
			b.Fatal(err)
		}
	}
}
