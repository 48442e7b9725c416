package ipfsconn

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the connector's counters. They carry the names the
// reference IPFS Cluster exports (namespace ipfscluster), so dashboards
// made for it keep working. They count whether or not they are registered.
type metrics struct {
	pinAdd       prometheus.Counter // pins asked of kubo
	pinAddErrors prometheus.Counter // pins that failed
	blocksPut    prometheus.Counter // block streams (requests) that ended
	blocksErrors prometheus.Counter // block streams that failed or were aborted
	blocksAdded  prometheus.Counter // blocks kubo confirmed storing
	blocksBytes  prometheus.Counter // their bytes
}

func newMetrics() *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ipfscluster", Name: name, Help: help})
	}
	return &metrics{
		pinAdd:       counter("pins_pin_add", "Total number of pins requested from kubo"),
		pinAddErrors: counter("pins_pin_add_errors", "Total number of pins kubo failed"),
		blocksPut:    counter("blocks_put", "Total number of block streams sent to kubo"),
		blocksErrors: counter("blocks_put_error", "Total number of block streams that failed"),
		blocksAdded:  counter("blocks_added", "Total number of blocks kubo stored from block streams"),
		blocksBytes:  counter("blocks_added_size", "Total size in bytes of the blocks kubo stored from block streams"),
	}
}

// RegisterMetrics adds the connector's counters to reg.
func (c *Connector) RegisterMetrics(reg prometheus.Registerer) error {
	m := c.metrics
	var errs []error
	for _, col := range []prometheus.Collector{m.pinAdd, m.pinAddErrors, m.blocksPut, m.blocksErrors, m.blocksAdded, m.blocksBytes} {
		errs = append(errs, reg.Register(col))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipfsconn metrics: %w", err)
	}
	return nil
}
