package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"ipfs-cluster/internal/api"
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
