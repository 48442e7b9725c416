package p2p

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
)

// DefaultListenAddr is the cluster swarm address of the reference.
const DefaultListenAddr = "/ip4/0.0.0.0/tcp/9096"

// ErrDNSDisabled is returned for a /dns, /dns4, /dns6 or /dnsaddr address
// when HostConfig.ResolveDNS is off: such an address is never looked up.
var ErrDNSDisabled = errors.New("p2p: DNS resolution of peer addresses is off")

// ConnMgrConfig is cluster.connection_manager: the host trims connections
// down to LowWater once it has more than HighWater, sparing connections
// younger than GracePeriod.
type ConnMgrConfig struct {
	HighWater   int
	LowWater    int
	GracePeriod time.Duration
}

// ResourceMgrConfig is cluster.resource_manager. Zero limits scale with the
// machine: 1/8 of the memory and half of the file descriptors.
type ResourceMgrConfig struct {
	Enabled              bool
	MemoryLimitBytes     int64
	FileDescriptorsLimit int
}

// HostConfig configures the libp2p host; start from DefaultHostConfig.
// Every feature that talks to
// anything but the configured peers (NAT port mapping, AutoNAT, relays, hole
// punching, DNS) is off unless switched on here, so that a cluster on
// loopback sends nothing beyond loopback. There is no mDNS, DHT or public
// bootstrap at all: peers are found through the peerstore file,
// peer_addresses and the consensus peerset.
type HostConfig struct {
	// ListenAddrs is listen_multiaddress. Only TCP addresses are used:
	// other transports are skipped with a warning, as the reference's
	// default QUIC address never listened under a private network.
	ListenAddrs []string
	// AnnounceAddrs (announce_multiaddress) replace the listen addresses
	// in what the host tells other peers, when set.
	AnnounceAddrs []string
	// NoAnnounceAddrs (no_announce_multiaddress) are never announced; an
	// entry with /ipcidr filters a whole range, e.g. /ip4/10.0.0.0/ipcidr/8.
	NoAnnounceAddrs []string
	// Secret is cluster.secret: 64 hex characters. Only peers holding the
	// same secret can connect. Empty means an open network, with a warning.
	Secret      string
	ConnMgr     ConnMgrConfig
	ResourceMgr ResourceMgrConfig

	// NATPortMap asks the gateway (UPnP, NAT-PMP) to forward the port.
	NATPortMap bool
	// AutoNAT lets the host probe its own reachability through peers.
	AutoNAT bool
	// NATService answers other peers' AutoNAT probes.
	NATService bool
	// RelayClient allows connections through circuit relays.
	RelayClient bool
	// RelayService relays connections for other peers (enable_relay_hop).
	RelayService bool
	// HolePunching upgrades relayed connections to direct ones.
	HolePunching bool
	// ResolveDNS allows dialing /dns* addresses through the system resolver.
	ResolveDNS bool

	// Metrics receives libp2p's Prometheus metrics; nil disables them.
	Metrics prometheus.Registerer
	// Bandwidth counts the bytes of every stream, by protocol and peer;
	// nil counts nothing.
	Bandwidth metrics.Reporter
	// Log receives the host's warnings.
	Log zerolog.Logger
}

// DefaultHostConfig returns the reference's defaults with every outward
// feature off.
func DefaultHostConfig() HostConfig {
	return HostConfig{
		ListenAddrs: []string{DefaultListenAddr},
		ConnMgr:     ConnMgrConfig{HighWater: 400, LowWater: 100, GracePeriod: 2 * time.Minute},
		ResourceMgr: ResourceMgrConfig{Enabled: true},
		Log:         zerolog.Nop(),
	}
}

// NewHost starts a libp2p host with ident's key, TCP only, TLS and noise
// security, the private network of cfg.Secret, a connection manager and a
// resource manager. ctx bounds the start-up: if it is done by the time the
// host listens, the host is closed and ctx's error returned. The caller
// closes the host.
func NewHost(ctx context.Context, cfg HostConfig, ident *config.Identity) (host.Host, error) {
	if ident == nil || ident.PrivateKey == nil {
		return nil, errors.New("p2p: new host: identity has no private key")
	}
	opts, err := hostOptions(cfg, ident)
	if err != nil {
		return nil, fmt.Errorf("p2p: new host: %w", err)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: new host on cluster.listen_multiaddress %s: %w", strings.Join(cfg.ListenAddrs, ","), err)
	}
	if err := ctx.Err(); err != nil {
		h.Close()
		return nil, fmt.Errorf("p2p: new host: %w", err)
	}
	return h, nil
}

func hostOptions(cfg HostConfig, ident *config.Identity) ([]libp2p.Option, error) {
	listen, err := tcpListenAddrs(cfg.ListenAddrs, cfg.Log)
	if err != nil {
		return nil, err
	}
	psk, err := decodeSecret(cfg.Secret)
	if err != nil {
		return nil, err
	}
	if psk == nil {
		cfg.Log.Warn().Msg("cluster.secret is empty: any libp2p peer can connect to this cluster peer")
	}
	addrs, err := newAddrsFactory(cfg.AnnounceAddrs, cfg.NoAnnounceAddrs)
	if err != nil {
		return nil, err
	}
	cm, err := newConnMgr(cfg.ConnMgr)
	if err != nil {
		return nil, err
	}
	rm, err := newResourceMgr(cfg.ResourceMgr, cfg.ConnMgr, cfg.Metrics != nil)
	if err != nil {
		return nil, err
	}

	opts := []libp2p.Option{
		libp2p.Identity(ident.PrivateKey),
		libp2p.ListenAddrs(listen...),
		libp2p.Transport(tcp.NewTCPTransport, tcpOptions(cfg)...),
		libp2p.Security(tls.ID, tls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.AddrsFactory(addrs),
		libp2p.UserAgent("ipfs-cluster/" + api.Version),
	}
	if psk != nil {
		opts = append(opts, libp2p.PrivateNetwork(psk))
	}
	if cfg.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	if cfg.Bandwidth != nil {
		opts = append(opts, libp2p.BandwidthReporter(cfg.Bandwidth))
	}
	if !cfg.ResolveDNS {
		opts = append(opts, libp2p.MultiaddrResolver(noDNS{}))
	}
	if cfg.NATPortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if !cfg.AutoNAT {
		// A forced reachability replaces the probing AutoNAT client by
		// a static answer; public is what a cluster peer assumes.
		opts = append(opts, libp2p.ForceReachabilityPublic())
	}
	if cfg.NATService {
		opts = append(opts, libp2p.EnableNATService())
	}
	if cfg.RelayClient {
		opts = append(opts, libp2p.EnableRelay())
	} else {
		opts = append(opts, libp2p.DisableRelay())
	}
	if cfg.RelayService {
		opts = append(opts, libp2p.EnableRelayService())
	}
	if cfg.HolePunching {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	return opts, nil
}

// tcpOptions configures the TCP transport. libp2p listens with
// SO_REUSEPORT by default, so a second peer given the same listen address
// starts without error and takes half of the first one's connections.
// Without it that start fails with "address already in use". Only hole
// punching needs the port shared, to dial out from it.
func tcpOptions(cfg HostConfig) []any {
	if cfg.HolePunching {
		return nil
	}
	return []any{tcp.DisableReuseport()}
}

// decodeSecret turns cluster.secret into a pnet key: nil for "", an error
// for anything but 64 hex characters.
func decodeSecret(secret string) (pnet.PSK, error) {
	if secret == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(secret)
	if err != nil || len(b) != 32 {
		return nil, errors.New("cluster.secret: want 64 hexadecimal characters (32 bytes)")
	}
	return pnet.PSK(b), nil
}

// tcpListenAddrs keeps the addresses the TCP transport can listen on.
func tcpListenAddrs(addrs []string, log zerolog.Logger) ([]ma.Multiaddr, error) {
	if len(addrs) == 0 {
		addrs = []string{DefaultListenAddr}
	}
	var out []ma.Multiaddr
	for _, s := range addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("listen_multiaddress %q: %w", s, err)
		}
		if !isPlainTCP(m) {
			log.Warn().Str("addr", s).Msg("listen address ignored: only TCP is supported")
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("listen_multiaddress %v: no TCP address", addrs)
	}
	return out, nil
}

// isPlainTCP reports whether m is /ip4|ip6/.../tcp/N and nothing more.
func isPlainTCP(m ma.Multiaddr) bool {
	if len(m) != 2 {
		return false
	}
	ip := m[0].Protocol().Code
	return (ip == ma.P_IP4 || ip == ma.P_IP6) && m[1].Protocol().Code == ma.P_TCP
}

// newAddrsFactory announces the announce addresses instead of the listen
// addresses when there are any, minus everything no-announce matches.
func newAddrsFactory(announce, noAnnounce []string) (func([]ma.Multiaddr) []ma.Multiaddr, error) {
	var fixed []ma.Multiaddr
	for _, s := range announce {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("announce_multiaddress %q: %w", s, err)
		}
		fixed = append(fixed, m)
	}
	var exact []ma.Multiaddr
	var ranges []*net.IPNet
	for _, s := range noAnnounce {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("no_announce_multiaddress %q: %w", s, err)
		}
		if ipnet, err := manet.MultiaddrToIPNet(m); err == nil && hasIPCIDR(m) {
			ranges = append(ranges, ipnet)
			continue
		}
		exact = append(exact, m)
	}
	return func(addrs []ma.Multiaddr) []ma.Multiaddr {
		if len(fixed) > 0 {
			addrs = fixed
		}
		out := make([]ma.Multiaddr, 0, len(addrs))
	next:
		for _, a := range addrs {
			for _, x := range exact {
				if a.Equal(x) {
					continue next
				}
			}
			if ip, err := manet.ToIP(a); err == nil {
				for _, r := range ranges {
					if r.Contains(ip) {
						continue next
					}
				}
			}
			out = append(out, a)
		}
		return out
	}, nil
}

func hasIPCIDR(m ma.Multiaddr) bool {
	for _, c := range m {
		if c.Protocol().Code == ma.P_IPCIDR {
			return true
		}
	}
	return false
}

func newConnMgr(c ConnMgrConfig) (*connmgr.BasicConnMgr, error) {
	if c.LowWater < 0 || c.HighWater < 1 || c.LowWater > c.HighWater {
		return nil, fmt.Errorf("connection_manager: want 0 <= low_water (%d) <= high_water (%d), high_water >= 1", c.LowWater, c.HighWater)
	}
	if c.GracePeriod < 0 {
		return nil, fmt.Errorf("connection_manager: grace_period %s is negative", c.GracePeriod)
	}
	cm, err := connmgr.NewConnManager(c.LowWater, c.HighWater, connmgr.WithGracePeriod(c.GracePeriod))
	if err != nil {
		return nil, fmt.Errorf("connection_manager: %w", err)
	}
	return cm, nil
}

// newResourceMgr scales libp2p's default limits to the configured memory
// and file descriptors, gives the RPC protocol as many streams per peer as
// the peer scope allows (the RPC server applies its own, lower cap), and
// makes sure the connection limits do not undercut the connection
// manager's high water mark.
func newResourceMgr(c ResourceMgrConfig, cm ConnMgrConfig, metrics bool) (network.ResourceManager, error) {
	if !c.Enabled {
		return &network.NullResourceManager{}, nil
	}
	if c.MemoryLimitBytes < 0 || c.FileDescriptorsLimit < 0 {
		return nil, errors.New("resource_manager: limits cannot be negative")
	}
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	rpcPeer := rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 512, Streams: 768, Memory: 64 << 20}
	scaling.AddProtocolPeerLimit(protocol.ID(api.RPCProtocol), rpcPeer, rcmgr.BaseLimitIncrease{})

	var limits rcmgr.ConcreteLimitConfig
	if c.MemoryLimitBytes == 0 && c.FileDescriptorsLimit == 0 {
		limits = scaling.AutoScale()
	} else {
		auto := scaling.AutoScale().ToPartialLimitConfig()
		mem, fds := c.MemoryLimitBytes, c.FileDescriptorsLimit
		if mem == 0 {
			mem = int64(auto.System.Memory)
		}
		if fds == 0 {
			fds = int(auto.System.FD)
		}
		limits = scaling.Scale(mem, fds)
	}
	partial := limits.ToPartialLimitConfig()
	minConns := rcmgr.LimitVal(2 * cm.HighWater)
	if partial.System.Conns < minConns {
		partial.System.Conns = minConns
		partial.System.ConnsInbound = max(partial.System.ConnsInbound, minConns/2)
		partial.System.ConnsOutbound = max(partial.System.ConnsOutbound, minConns/2)
	}
	var opts []rcmgr.Option
	if !metrics {
		opts = append(opts, rcmgr.WithMetricsDisabled())
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(limits)), opts...)
	if err != nil {
		return nil, fmt.Errorf("resource_manager: %w", err)
	}
	return rm, nil
}

// noDNS refuses to resolve, so that a /dns address never causes a lookup.
type noDNS struct{}

func (noDNS) ResolveDNSAddr(context.Context, peer.ID, ma.Multiaddr, int, int) ([]ma.Multiaddr, error) {
	return nil, ErrDNSDisabled
}

func (noDNS) ResolveDNSComponent(context.Context, ma.Multiaddr, int) ([]ma.Multiaddr, error) {
	return nil, ErrDNSDisabled
}
