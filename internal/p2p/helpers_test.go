package p2p

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
)

// testSecret returns a cluster secret made of one repeated byte.
func testSecret(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), 32) }

// loopbackConfig is the default host configuration on a random loopback
// port.
func loopbackConfig(secret string) HostConfig {
	cfg := DefaultHostConfig()
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Secret = secret
	return cfg
}

// newTestHost starts a host closed at the end of the test.
func newTestHost(t testing.TB, cfg HostConfig) host.Host {
	t.Helper()
	ident, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(context.Background(), cfg, ident)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// newTestRPC serves RPC on h until the end of the test (it is closed
// before the host, as cleanups run last-in first-out).
func newTestRPC(t testing.TB, h host.Host, cfg Config) *RPC {
	t.Helper()
	r := NewRPC(h, cfg, zerolog.Nop())
	t.Cleanup(func() { r.Close() })
	return r
}

func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatalf("connect %s -> %s: %v", a.ID(), b.ID(), err)
	}
}

// cidOf returns a distinct CID for every n.
func cidOf(n int) api.Cid {
	h, err := mh.Sum([]byte(fmt.Sprint(n)), mh.SHA2_256, -1)
	if err != nil {
		panic(err)
	}
	return api.NewCid(cid.NewCidV1(cid.Raw, h))
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
