package daemon

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/consensus/crdt"
	"ipfs-cluster/internal/state"
)

// pinsCollector exports the size of the pinset and the tracker's counts
// per status, under the names the reference IPFS Cluster uses. Each scrape
// reads counters the state keeps, never the pins themselves.
type pinsCollector struct {
	db                                    *state.DB
	pins, queued, pinning, errors, pinned *prometheus.Desc
}

func newPinsCollector(db *state.DB) *pinsCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("ipfscluster", "", name), help, nil, nil)
	}
	return &pinsCollector{
		db:      db,
		pins:    desc("pins", "Total number of cluster pins"),
		queued:  desc("pins_pin_queued", "Current number of pins queued for pinning"),
		pinning: desc("pins_pinning", "Current number of pins currently pinning"),
		errors:  desc("pins_pin_error", "Current number of pins in pin_error state"),
		pinned:  desc("pins_ipfs_pins", "Current number of items this peer holds pinned in kubo"),
	}
}

func (c *pinsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pins, c.queued, c.pinning, c.errors, c.pinned} {
		ch <- d
	}
}

func (c *pinsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.db.CountStatus()
	gauge := func(d *prometheus.Desc, n int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n))
	}
	gauge(c.pins, c.db.Len())
	gauge(c.queued, counts[api.TrackerStatusPinQueued])
	gauge(c.pinning, counts[api.TrackerStatusPinning])
	gauge(c.errors, counts[api.TrackerStatusPinError])
	gauge(c.pinned, counts[api.TrackerStatusPinned])
}

// crdtCollector exports how far the peer is in merging the shared pinset,
// so that a lagging peer shows: a max height behind the others', merges
// queued, changes not applied yet, a dirty store awaiting repair.
type crdtCollector struct {
	stats                                            func(context.Context) (crdt.Stats, error)
	heads, height, queued, unapplied, batched, dirty *prometheus.Desc
}

func newCrdtCollector(stats func(context.Context) (crdt.Stats, error)) *crdtCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("ipfscluster", "crdt", name), help, nil, nil)
	}
	return &crdtCollector{
		stats:     stats,
		heads:     desc("heads", "Current heads of the CRDT DAG"),
		height:    desc("max_height", "Height of the highest head of the CRDT DAG: behind the other peers' while merging"),
		queued:    desc("queued_jobs", "DAG nodes fetched and not merged yet"),
		unapplied: desc("unapplied", "Merged changes not applied to the pinset yet"),
		batched:   desc("batched", "Operations waiting for a batch commit"),
		dirty:     desc("dirty", "1 when a branch failed to merge and a repair is due"),
	}
}

func (c *crdtCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.heads, c.height, c.queued, c.unapplied, c.batched, c.dirty} {
		ch <- d
	}
}

func (c *crdtCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.stats(context.Background())
	if err != nil {
		return // shut down: nothing to report
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	dirty := 0.0
	if s.Dirty {
		dirty = 1
	}
	gauge(c.heads, float64(s.Heads))
	gauge(c.height, float64(s.MaxHeight))
	gauge(c.queued, float64(s.QueuedJobs))
	gauge(c.unapplied, float64(s.Unapplied))
	gauge(c.batched, float64(s.Batched))
	gauge(c.dirty, dirty)
}
