package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
)

// Topic is the pubsub topic metrics travel on, as in the reference.
const Topic = "monitor.metrics"

// Gossip shares metrics with the other peers over pubsub: Publish stores a
// metric locally and sends it; metrics from other peers are stored as they
// arrive. A message is accepted only when the metric is about the peer
// that signed it, so no peer can speak for another. It is safe for
// concurrent use.
type Gossip struct {
	*Monitor
	self  peer.ID
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	log   zerolog.Logger

	callbackMu sync.Mutex // guards onJoin and accept
	onJoin     func(peer.ID)
	accept     func(api.Metric) bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartGossip joins the metrics topic and starts receiving.
func StartGossip(ps *pubsub.PubSub, mon *Monitor, self peer.ID, log zerolog.Logger) (*Gossip, error) {
	if err := ps.RegisterTopicValidator(Topic, validateMetric); err != nil {
		return nil, fmt.Errorf("monitor: validator: %w", err)
	}
	topic, err := ps.Join(Topic)
	if err != nil {
		return nil, fmt.Errorf("monitor: join %s: %w", Topic, err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		topic.Close()
		return nil, fmt.Errorf("monitor: subscribe %s: %w", Topic, err)
	}
	events, err := topic.EventHandler()
	if err != nil {
		sub.Cancel()
		topic.Close()
		return nil, fmt.Errorf("monitor: topic events: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gossip{Monitor: mon, self: self, topic: topic, sub: sub, log: log, cancel: cancel}
	g.wg.Add(3)
	go g.receive(ctx)
	go g.watchJoins(ctx, events)
	go func() {
		defer g.wg.Done()
		mon.heartbeats(ctx, log)
	}()
	return g, nil
}

// OnPeerJoin sets what to do when a peer starts listening for metrics: a
// peer that just joined has none of ours until we send them again.
func (g *Gossip) OnPeerJoin(fn func(peer.ID)) {
	g.callbackMu.Lock()
	g.onJoin = fn
	g.callbackMu.Unlock()
}

// Accept sets which metrics of other peers are stored: those fn accepts.
// fn runs on the receiving goroutine and must not block.
func (g *Gossip) Accept(fn func(api.Metric) bool) {
	g.callbackMu.Lock()
	g.accept = fn
	g.callbackMu.Unlock()
}

func (g *Gossip) watchJoins(ctx context.Context, events *pubsub.TopicEventHandler) {
	defer g.wg.Done()
	p2p.WatchJoins(ctx, events, func(p peer.ID) {
		g.callbackMu.Lock()
		fn := g.onJoin
		g.callbackMu.Unlock()
		if fn != nil {
			fn(p)
		}
	})
}

// validateMetric rejects messages that do not decode as a metric about
// their signer.
func validateMetric(_ context.Context, _ peer.ID, msg *pubsub.Message) bool {
	var m api.Metric
	if err := json.Unmarshal(msg.Data, &m); err != nil {
		return false
	}
	return m.Name != "" && m.Peer == msg.GetFrom()
}

func (g *Gossip) receive(ctx context.Context) {
	defer g.wg.Done()
	for {
		msg, err := g.sub.Next(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				g.log.Warn().Err(err).Msg("metrics subscription ended")
			}
			return
		}
		if msg.GetFrom() == g.self {
			continue
		}
		var m api.Metric
		if err := json.Unmarshal(msg.Data, &m); err != nil {
			continue // the validator already refused these
		}
		g.callbackMu.Lock()
		accept := g.accept
		g.callbackMu.Unlock()
		if accept == nil || accept(m) {
			g.Monitor.Publish(m)
		}
	}
}

// Publish stores m and sends it to the other peers.
func (g *Gossip) Publish(m api.Metric) {
	g.Monitor.Publish(m)
	b, err := json.Marshal(m)
	if err != nil {
		g.log.Error().Err(err).Str("metric", m.Name).Msg("encode metric")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.topic.Publish(ctx, b); err != nil {
		g.log.Warn().Err(err).Str("metric", m.Name).Msg("publish metric")
	}
}

// Close leaves the topic.
func (g *Gossip) Close() error {
	g.cancel()
	g.sub.Cancel()
	g.wg.Wait()
	return g.topic.Close()
}
