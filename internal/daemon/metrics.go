package daemon

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/consensus/crdt"
	"ipfs-cluster/internal/state"
)

// gauge names one figure of a gaugeSet.
type gauge struct{ name, help string }

// gaugeSet is a collector of gauges computed at each scrape: read returns
// their values in the order of the gauges, from one look at the
// component, or false when it has nothing to report (it is shutting down).
type gaugeSet struct {
	descs []*prometheus.Desc
	read  func() ([]float64, bool)
}

func newGaugeSet(subsystem string, gauges []gauge, read func() ([]float64, bool)) *gaugeSet {
	s := &gaugeSet{read: read}
	for _, g := range gauges {
		s.descs = append(s.descs, prometheus.NewDesc(prometheus.BuildFQName("ipfscluster", subsystem, g.name), g.help, nil, nil))
	}
	return s
}

func (s *gaugeSet) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

func (s *gaugeSet) Collect(ch chan<- prometheus.Metric) {
	values, ok := s.read()
	if !ok {
		return
	}
	for i, d := range s.descs {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, values[i])
	}
}

// pinGauges exports the size of the pinset and the tracker's counts per
// status, under the names the reference IPFS Cluster uses. Each scrape
// reads counters the state keeps, never the pins themselves.
func pinGauges(db *state.DB) *gaugeSet {
	return newGaugeSet("", []gauge{
		{"pins", "Total number of cluster pins"},
		{"pins_pin_queued", "Current number of pins queued for pinning"},
		{"pins_pinning", "Current number of pins currently pinning"},
		{"pins_pin_error", "Current number of pins in pin_error state"},
		{"pins_ipfs_pins", "Current number of items this peer holds pinned in kubo"},
	}, func() ([]float64, bool) {
		counts := db.CountStatus()
		return []float64{
			float64(db.Len()),
			float64(counts[api.TrackerStatusPinQueued]),
			float64(counts[api.TrackerStatusPinning]),
			float64(counts[api.TrackerStatusPinError]),
			float64(counts[api.TrackerStatusPinned]),
		}, true
	})
}

// crdtGauges exports how far the peer is in merging the shared pinset, so
// that a lagging peer shows: a max height behind the others', merges
// queued, changes not applied yet, a dirty store awaiting repair.
func crdtGauges(stats func(context.Context) (crdt.Stats, error)) *gaugeSet {
	return newGaugeSet("crdt", []gauge{
		{"heads", "Current heads of the CRDT DAG"},
		{"max_height", "Height of the highest head of the CRDT DAG: behind the other peers' while merging"},
		{"queued_jobs", "DAG nodes fetched and not merged yet"},
		{"unapplied", "Merged changes not applied to the pinset yet"},
		{"batched", "Operations waiting for a batch commit"},
		{"dirty", "1 when a branch failed to merge and a repair is due"},
	}, func() ([]float64, bool) {
		s, err := stats(context.Background())
		if err != nil {
			return nil, false
		}
		dirty := 0.0
		if s.Dirty {
			dirty = 1
		}
		return []float64{float64(s.Heads), float64(s.MaxHeight), float64(s.QueuedJobs), float64(s.Unapplied), float64(s.Batched), dirty}, true
	})
}
