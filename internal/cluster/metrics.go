package cluster

import (
	"context"
	"encoding/json"
	"time"

	"ipfs-cluster/internal/api"
)

// Informer produces metrics about this peer.
type Informer interface {
	Name() string
	TTL() time.Duration
	GetMetrics(ctx context.Context) []api.Metric
}

// Monitor keeps the latest metrics of every peer.
type Monitor interface {
	Publish(m api.Metric)
	LatestMetrics(name string) []api.Metric
	MetricNames() []string
	CheckExpired() []api.Alert
	Alerts() []api.Alert
}

// pingTTL is how long this peer's ping stays valid: twice the interval at
// which it is sent, as in the reference.
const pingInterval = 15 * time.Second

// startMetrics publishes every informer's metrics once before returning,
// so the first request after start can be allocated, then again every half
// TTL (a quarter after an invalid one); it sends the ping metric and checks
// for expired metrics.
func (c *Cluster) startMetrics() {
	waits := make([]time.Duration, len(c.informers))
	for i, inf := range c.informers {
		waits[i] = c.publish(inf)
	}
	for i, inf := range c.informers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			wait := waits[i]
			for {
				select {
				case <-c.ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = c.publish(inf)
			}
		}()
	}
	c.sendPing()
	c.every(pingInterval, c.sendPing)
	c.every(pingInterval, func() {
		for _, a := range c.monitor.CheckExpired() {
			c.log.Warn().Str("metric", a.Name).Stringer("peer", a.Peer).Msg("metric expired")
		}
	})
}

// publish sends one informer's metrics and returns when to send them next.
func (c *Cluster) publish(inf Informer) time.Duration {
	ctx, cancel := context.WithTimeout(c.ctx, min(inf.TTL(), 10*time.Second))
	defer cancel()
	wait := inf.TTL() / 2
	for _, m := range inf.GetMetrics(ctx) {
		c.monitor.Publish(m)
		if !m.Valid {
			wait = inf.TTL() / 4
		}
	}
	return wait
}

func (c *Cluster) sendPing() {
	id := c.kuboID()
	value, _ := json.Marshal(struct {
		PeerName      string          `json:"peer_name"`
		IPFSID        string          `json:"ipfs_id"`
		IPFSAddresses []api.Multiaddr `json:"ipfs_addresses"`
	}{c.cfg.PeerName, id.ID.String(), id.Addresses})
	m := api.Metric{Name: "ping", Peer: c.cfg.Peer, Value: string(value), Valid: true}
	m.SetTTL(2 * pingInterval)
	c.monitor.Publish(m)
}

// MetricNames lists the metrics this peer knows.
func (c *Cluster) MetricNames() []string { return c.monitor.MetricNames() }

// LatestMetrics returns the latest valid metric of each peer for name.
func (c *Cluster) LatestMetrics(name string) []api.Metric { return c.monitor.LatestMetrics(name) }

// Alerts returns the alerts raised, newest first.
func (c *Cluster) Alerts() []api.Alert { return c.monitor.Alerts() }
