// Package informer produces the metrics a peer publishes about itself:
// free space in kubo's repository, configured tags, the length of its pin
// queue and the number of pins it holds. Allocation ranks peers by them.
package informer

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// RepoStater is what the disk informer asks kubo.
type RepoStater interface {
	RepoStat(ctx context.Context) (api.IPFSRepoStat, error)
}

// Disk reports free space (StorageMax - RepoSize) or the repository size.
type Disk struct {
	IPFS       RepoStater
	Peer       peer.ID
	MetricTTL  time.Duration
	MetricType string // "freespace" or "reposize"
}

// Name is the metric name.
func (d *Disk) Name() string { return d.MetricType }

// TTL is how long a metric stays valid.
func (d *Disk) TTL() time.Duration { return d.MetricTTL }

// GetMetrics asks kubo for its repository usage.
func (d *Disk) GetMetrics(ctx context.Context) []api.Metric {
	m := api.Metric{Name: d.MetricType, Peer: d.Peer}
	m.SetTTL(d.MetricTTL)
	st, err := d.IPFS.RepoStat(ctx)
	if err != nil {
		return []api.Metric{m}
	}
	var v uint64
	if d.MetricType == "reposize" {
		v = st.RepoSize
		m.Weight = -int64(v)
	} else {
		if st.StorageMax > st.RepoSize {
			v = st.StorageMax - st.RepoSize
		}
		m.Weight = int64(v)
	}
	m.Value = strconv.FormatUint(v, 10)
	m.Valid = d.MetricType == "reposize" || v > 0
	return []api.Metric{m}
}

// Tags reports each configured tag as a partitionable metric "tag:<key>".
type Tags struct {
	Tags      map[string]string
	Peer      peer.ID
	MetricTTL time.Duration
}

// Name is the informer name.
func (t *Tags) Name() string { return "tags" }

// TTL is how long a metric stays valid.
func (t *Tags) TTL() time.Duration { return t.MetricTTL }

// GetMetrics returns one metric per tag, in key order.
func (t *Tags) GetMetrics(context.Context) []api.Metric {
	keys := make([]string, 0, len(t.Tags))
	for k := range t.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]api.Metric, 0, len(keys))
	for _, k := range keys {
		m := api.Metric{Name: "tag:" + k, Peer: t.Peer, Value: t.Tags[k], Valid: true, Partitionable: true}
		m.SetTTL(t.MetricTTL)
		out = append(out, m)
	}
	return out
}

// Counter reports a number the peer knows about itself.
type Counter struct {
	MetricName string
	Count      func() int
	Peer       peer.ID
	MetricTTL  time.Duration
	// Bucket groups counts for the weight (weight = -count/Bucket), so
	// small differences in queue length do not reorder peers. 0 = 1.
	Bucket   int
	Negative bool // a larger count makes the peer less attractive
}

// Name is the metric name.
func (c *Counter) Name() string { return c.MetricName }

// TTL is how long a metric stays valid.
func (c *Counter) TTL() time.Duration { return c.MetricTTL }

// GetMetrics reads the count.
func (c *Counter) GetMetrics(context.Context) []api.Metric {
	n := c.Count()
	m := api.Metric{Name: c.MetricName, Peer: c.Peer, Value: strconv.Itoa(n), Valid: true}
	b := max(c.Bucket, 1)
	m.Weight = int64(n / b)
	if c.Negative {
		m.Weight = -m.Weight
	}
	m.SetTTL(c.MetricTTL)
	return []api.Metric{m}
}
