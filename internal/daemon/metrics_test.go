package daemon_test

import (
	"strings"
	"testing"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/daemon/daemontest"
)

// TestClusterMetrics adds a file through a peer and checks the metrics it
// exports under the reference's names: the pin in the pinset and in kubo,
// the pin asked of kubo, and the blocks streamed to it.
func TestClusterMetrics(t *testing.T) {
	p := daemontest.Start(t, nil)
	cl := p.Client(t)
	content := "metrics are counted\n"
	var root api.Cid
	err := cl.AddFiles(t.Context(), client.ReaderDirectory("m.txt", strings.NewReader(content)), nil, func(out api.AddedOutput) error {
		root = out.Cid
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.WaitStatus(t, root, api.TrackerStatusPinned)

	families, err := p.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				got[f.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[f.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	for name, ok := range map[string]func(float64) bool{
		"ipfscluster_pins":                func(v float64) bool { return v == 1 },
		"ipfscluster_pins_ipfs_pins":      func(v float64) bool { return v == 1 },
		"ipfscluster_pins_pin_queued":     func(v float64) bool { return v == 0 },
		"ipfscluster_pins_pinning":        func(v float64) bool { return v == 0 },
		"ipfscluster_pins_pin_error":      func(v float64) bool { return v == 0 },
		"ipfscluster_pins_pin_add":        func(v float64) bool { return v >= 1 },
		"ipfscluster_pins_pin_add_errors": func(v float64) bool { return v == 0 },
		"ipfscluster_blocks_put":          func(v float64) bool { return v >= 1 },
		"ipfscluster_blocks_put_error":    func(v float64) bool { return v == 0 },
		"ipfscluster_blocks_added":        func(v float64) bool { return v >= 1 },
		"ipfscluster_blocks_added_size":   func(v float64) bool { return v >= float64(len(content)) },
		"ipfscluster_crdt_heads":          func(v float64) bool { return v == 1 },
		"ipfscluster_crdt_max_height":     func(v float64) bool { return v >= 1 },
		"ipfscluster_crdt_queued_jobs":    func(v float64) bool { return v == 0 },
		"ipfscluster_crdt_unapplied":      func(v float64) bool { return v == 0 },
		"ipfscluster_crdt_batched":        func(v float64) bool { return v == 0 },
		"ipfscluster_crdt_dirty":          func(v float64) bool { return v == 0 },
	} {
		v, present := got[name]
		if !present || !ok(v) {
			t.Errorf("%s = %v (exported: %v)", name, v, present)
		}
	}
}
