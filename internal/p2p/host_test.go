package p2p

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"ipfs-cluster/internal/config"
)

func TestPrivateNetwork(t *testing.T) {
	secret := testSecret(0x11)
	a := newTestHost(t, loopbackConfig(secret))
	b := newTestHost(t, loopbackConfig(secret))
	c := newTestHost(t, loopbackConfig(secret))
	connect(t, a, b)
	connect(t, b, c)
	connect(t, c, a)

	// A handshake across different secrets reads noise and never
	// completes, so each attempt ends with its timeout.
	for name, cfg := range map[string]HostConfig{
		"other secret": loopbackConfig(testSecret(0x22)),
		"no secret":    loopbackConfig(""),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			x := newTestHost(t, cfg)
			for _, dir := range []struct{ from, to host.Host }{{x, a}, {a, x}} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := dir.from.Connect(ctx, peer.AddrInfo{ID: dir.to.ID(), Addrs: dir.to.Addrs()})
				cancel()
				if err == nil {
					t.Fatalf("%s connected to %s across private networks", dir.from.ID(), dir.to.ID())
				}
			}
			if a.Network().Connectedness(x.ID()) == network.Connected {
				t.Fatal("a connection across private networks survived")
			}
		})
	}
}

func TestNewHostErrors(t *testing.T) {
	ident, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*HostConfig){
		"short secret":         func(c *HostConfig) { c.Secret = "abcd" },
		"non-hex secret":       func(c *HostConfig) { c.Secret = testSecret(0)[:62] + "zz" },
		"no TCP address":       func(c *HostConfig) { c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"} },
		"bad listen address":   func(c *HostConfig) { c.ListenAddrs = []string{"/ip4/nope"} },
		"bad announce":         func(c *HostConfig) { c.AnnounceAddrs = []string{"nope"} },
		"bad no-announce":      func(c *HostConfig) { c.NoAnnounceAddrs = []string{"nope"} },
		"low above high":       func(c *HostConfig) { c.ConnMgr.LowWater, c.ConnMgr.HighWater = 10, 5 },
		"negative grace":       func(c *HostConfig) { c.ConnMgr.GracePeriod = -time.Second },
		"negative mem limit":   func(c *HostConfig) { c.ResourceMgr.MemoryLimitBytes = -1 },
		"negative fd limit":    func(c *HostConfig) { c.ResourceMgr.FileDescriptorsLimit = -1 },
		"no private key":       nil,
		"context already done": func(*HostConfig) {},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := loopbackConfig(testSecret(1))
			id := ident
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch {
			case mutate == nil:
				id = &config.Identity{ID: ident.ID}
			case name == "context already done":
				cancel()
			default:
				mutate(&cfg)
			}
			h, err := NewHost(ctx, cfg, id)
			if err == nil {
				h.Close()
				t.Fatal("NewHost succeeded")
			}
		})
	}
}

// TestListenAddressInUse starts a second host on the first one's address:
// it fails naming the setting, instead of sharing the port.
func TestListenAddressInUse(t *testing.T) {
	first := newTestHost(t, loopbackConfig(testSecret(1)))
	cfg := loopbackConfig(testSecret(1))
	cfg.ListenAddrs = []string{first.Network().ListenAddresses()[0].String()}
	ident, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(t.Context(), cfg, ident)
	if err == nil {
		h.Close()
		t.Fatalf("a second host listens on %s", cfg.ListenAddrs[0])
	}
	if !strings.Contains(err.Error(), "cluster.listen_multiaddress "+cfg.ListenAddrs[0]) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %q, want address already in use, naming cluster.listen_multiaddress", err)
	}
}

func TestListenSkipsNonTCP(t *testing.T) {
	cfg := loopbackConfig(testSecret(1))
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"}
	h := newTestHost(t, cfg)
	addrs := h.Network().ListenAddresses()
	if len(addrs) != 1 {
		t.Fatalf("listening on %v, want one TCP address", addrs)
	}
	if _, err := addrs[0].ValueForProtocol(ma.P_TCP); err != nil {
		t.Fatalf("listening on %v, want TCP", addrs)
	}
}

func TestAnnounceAddrs(t *testing.T) {
	cfg := loopbackConfig(testSecret(1))
	cfg.AnnounceAddrs = []string{"/ip4/192.0.2.1/tcp/9096", "/ip4/10.1.2.3/tcp/9096", "/ip4/198.51.100.7/tcp/9096", "/dns4/cluster.example/tcp/9096"}
	cfg.NoAnnounceAddrs = []string{"/ip4/10.0.0.0/ipcidr/8", "/ip4/198.51.100.7/tcp/9096"}
	h := newTestHost(t, cfg)
	var got []string
	for _, a := range h.Addrs() {
		got = append(got, a.String())
	}
	slices.Sort(got)
	want := []string{"/dns4/cluster.example/tcp/9096", "/ip4/192.0.2.1/tcp/9096"}
	if !slices.Equal(got, want) {
		t.Fatalf("announced %v, want %v", got, want)
	}

	cfg = loopbackConfig(testSecret(1))
	cfg.NoAnnounceAddrs = []string{"/ip4/127.0.0.0/ipcidr/8"}
	if addrs := newTestHost(t, cfg).Addrs(); len(addrs) != 0 {
		t.Fatalf("announced %v, want nothing", addrs)
	}
}

// A /dns address is never looked up: dialing it fails at once, and the
// resolver the host uses refuses every lookup.
func TestNoDNSResolution(t *testing.T) {
	h := newTestHost(t, loopbackConfig(testSecret(1)))
	other := newTestHost(t, loopbackConfig(testSecret(1)))
	addr := ma.StringCast("/dns4/cluster-peer.invalid/tcp/9096")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := h.Connect(ctx, peer.AddrInfo{ID: other.ID(), Addrs: []ma.Multiaddr{addr}})
	if err == nil {
		t.Fatal("connected through an unresolvable address")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("dial took %s", d)
	}
	if _, err := (noDNS{}).ResolveDNSComponent(ctx, addr, 10); !errors.Is(err, ErrDNSDisabled) {
		t.Fatalf("resolver: %v, want ErrDNSDisabled", err)
	}
	if _, err := (noDNS{}).ResolveDNSAddr(ctx, other.ID(), ma.StringCast("/dnsaddr/bootstrap.invalid"), 1, 1); !errors.Is(err, ErrDNSDisabled) {
		t.Fatalf("resolver: %v, want ErrDNSDisabled", err)
	}
}

// The optional features start and still work on loopback. NAT port
// mapping is left out: it talks to the gateway.
func TestOptionalFeatures(t *testing.T) {
	cfg := loopbackConfig(testSecret(3))
	cfg.AutoNAT = true
	cfg.NATService = true
	cfg.RelayClient = true
	cfg.RelayService = true
	cfg.HolePunching = true
	cfg.ResourceMgr = ResourceMgrConfig{Enabled: true, MemoryLimitBytes: 256 << 20, FileDescriptorsLimit: 512}
	a := newTestHost(t, cfg)
	cfg.ResourceMgr = ResourceMgrConfig{Enabled: false}
	b := newTestHost(t, cfg)
	connect(t, a, b)
}
