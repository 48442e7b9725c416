package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// Informer produces metrics about this peer. GetMetrics may be slow (it can
// ask kubo); a failure comes back as an invalid metric, never a valid one.
type Informer interface {
	Name() string
	TTL() time.Duration
	GetMetrics(ctx context.Context) []api.Metric
}

// Monitor keeps the latest metrics of every peer.
type Monitor interface {
	Publish(m api.Metric)
	LatestMetrics(name string) []api.Metric
	Last(name string) []api.Metric
	Forget(p peer.ID)
	MetricNames() []string
	CheckExpired() []api.Alert
	Alerts() []api.Alert
}

// pingMetric is the metric whose expiry means a peer is down.
const pingMetric = "ping"

// ping is the value of the ping metric.
type ping struct {
	PeerName      string          `json:"peer_name"`
	IPFSID        string          `json:"ipfs_id"`
	IPFSAddresses []api.Multiaddr `json:"ipfs_addresses"`
	// ClusterAddresses lets peers that only share a bootstrap peer find
	// and dial each other (the reference used a DHT for this).
	ClusterAddresses []api.Multiaddr `json:"cluster_addresses,omitempty"`
	// Repinning says the peer moves the pins of peers that go down, so
	// that the others count on it for its share (see repinners).
	Repinning bool `json:"repinning,omitempty"`
	// ClusterName is the peer's consensus.crdt.cluster_name: peers with
	// another one share the secret but not the pinset.
	ClusterName string `json:"cluster_name,omitempty"`
}

func decodePing(v string) (ping, error) {
	var p ping
	err := json.Unmarshal([]byte(v), &p)
	return p, err
}

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
	c.every(c.cfg.PingInterval, func() {
		c.sendPing()
		c.connectPeerset()
	})
	c.wg.Add(1)
	go c.republishOnConnect()
	c.every(cmp.Or(c.cfg.CheckInterval, c.cfg.PingInterval), func() {
		down := false
		for _, a := range c.monitor.CheckExpired() {
			c.log.Warn().Str("metric", a.Name).Stringer("peer", a.Peer).Msg("metric expired")
			down = down || a.Name == pingMetric
		}
		// Every down peer, not only the one just gone: it may have
		// been the peer responsible for the pins of one that went
		// down before it, which now fall to another.
		if down && c.repins() {
			c.repinSweep()
		}
	})
	// The repin sweep, every state_sync_interval and not sooner after
	// start: until this peer has connected and heard the others' pings,
	// every other peer looks down to it.
	if c.repins() {
		c.every(max(c.cfg.StateSyncInterval, 4*c.cfg.PingInterval), c.repinSweep)
	}
}

// repins says whether this peer moves the pins of peers that went down:
// repinning is on, and it is no follower (see FollowerMode).
func (c *Cluster) repins() bool { return !c.cfg.DisableRepinning && !c.cfg.FollowerMode }

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
	value, _ := json.Marshal(ping{PeerName: c.cfg.PeerName, IPFSID: id.ID.String(), IPFSAddresses: id.Addresses,
		ClusterAddresses: c.addrs(), Repinning: c.repins(), ClusterName: c.cfg.ClusterName})
	m := api.Metric{Name: pingMetric, Peer: c.cfg.Peer, Value: string(value), Valid: true}
	m.SetTTL(2 * c.cfg.PingInterval)
	c.monitor.Publish(m)
}

// MetricNames lists the metrics this peer knows.
func (c *Cluster) MetricNames() []string { return c.monitor.MetricNames() }

// LatestMetrics returns the latest valid metric of each peer for name.
func (c *Cluster) LatestMetrics(name string) []api.Metric { return c.monitor.LatestMetrics(name) }

// Alerts returns the alerts raised, newest first.
func (c *Cluster) Alerts() []api.Alert { return c.monitor.Alerts() }

// republishOnConnect sends all metrics again soon after a peer joins,
// so a peer that just joined can allocate at once instead of waiting for
// the next round (half a TTL). Bursts of connections cause one round a
// second at most.
func (c *Cluster) republishOnConnect() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.peerJoined:
		}
		for _, inf := range c.informers {
			c.publish(inf)
		}
		c.sendPing()
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// AcceptMetric says whether a metric of another peer counts: none of a
// peer whose ping announces another cluster_name (a copied configuration,
// say), which would otherwise be listed, allocated pins and asked their
// status, while it never learns the pinset. Its ping decides, and the
// first one is logged; a ping with this cluster's name (the peer was
// fixed and restarted) lets it in again. It is safe for concurrent use.
func (c *Cluster) AcceptMetric(m api.Metric) bool {
	if m.Name != pingMetric {
		_, foreign := c.foreign.Load(m.Peer)
		return !foreign
	}
	p, err := decodePing(m.Value)
	if err != nil || p.ClusterName == "" || p.ClusterName == c.cfg.ClusterName {
		c.foreign.Delete(m.Peer)
		return true
	}
	if _, told := c.foreign.LoadOrStore(m.Peer, true); !told {
		c.monitor.Forget(m.Peer) // what came before its ping
		c.log.Warn().Stringer("peer", m.Peer).Str("its_cluster_name", p.ClusterName).Str("cluster_name", c.cfg.ClusterName).
			Msg("a peer with the cluster secret has another consensus.crdt.cluster_name: it is not counted as a peer of this cluster")
	}
	return false
}

// PeerJoined schedules a republish of this peer's metrics because a peer
// started listening for them; it never blocks.
func (c *Cluster) PeerJoined(peer.ID) {
	select {
	case c.peerJoined <- struct{}{}:
	default:
	}
}
