package monitor

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/p2p"
)

type node struct {
	h  host.Host
	ps *pubsub.PubSub
	g  *Gossip
}

func newNode(t *testing.T, secret string) *node {
	t.Helper()
	id, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := p2p.DefaultHostConfig()
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Secret = secret
	cfg.Log = zerolog.Nop()
	h, err := p2p.NewHost(t.Context(), cfg, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ps, err := pubsub.NewGossipSub(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	g, err := StartGossip(ps, New(), h.ID(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &node{h: h, ps: ps, g: g}
}

func TestGossipSharesMetrics(t *testing.T) {
	secret, _ := config.NewSecret()
	a, b := newNode(t, secret), newNode(t, secret)
	if err := b.h.Connect(t.Context(), peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := api.Metric{Name: "freespace", Peer: a.h.ID(), Value: "10", Valid: true}
		m.SetTTL(time.Minute)
		a.g.Publish(m)
		if got := b.g.LatestMetrics("freespace"); len(got) == 1 && got[0].Peer == a.h.ID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never received a's metric")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := a.g.LatestMetrics("freespace"); len(got) != 1 {
		t.Fatalf("a does not keep its own metric: %+v", got)
	}
}

func TestGossipRefusesMetricsAboutOthers(t *testing.T) {
	spoof := api.Metric{Name: "ping", Peer: "someone-else", Valid: true}
	data, _ := json.Marshal(spoof)
	msg := &pubsub.Message{Message: &pb.Message{Data: data, From: []byte("the-signer")}}
	if validateMetric(context.Background(), "", msg) {
		t.Fatal("a metric about another peer than the signer was accepted")
	}
	msg.Data = []byte("not json")
	if validateMetric(context.Background(), "", msg) {
		t.Fatal("garbage accepted")
	}
}
