// Package daemontest starts whole cluster peers in the test process, each
// beside a real kubo daemon, with its REST API on a free loopback port.
package daemontest

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
	"ipfs-cluster/internal/logging"
)

// Peer is a running peer with its kubo.
type Peer struct {
	*daemon.Peer
	Dir      string
	Config   *config.Config
	Identity *config.Identity
	Kubo     *kubo.Daemon
	// APIURL is the REST API base URL, e.g. http://127.0.0.1:41234.
	APIURL string
	// APIAddr is the same as a multiaddress, as ctl's --host takes it.
	APIAddr string
}

// Start starts a peer on a new kubo. tweak, when given, edits the
// configuration (already set for tests: short intervals, loopback API)
// before the peer starts. The peer and kubo stop at the end of the test.
func Start(t testing.TB, tweak func(*config.Config)) *Peer {
	t.Helper()
	return StartWithKubo(t, kubotest.Start(t), tweak, daemon.Options{})
}

// StartWithKubo starts a peer beside an existing kubo daemon.
func StartWithKubo(t testing.TB, k *kubo.Daemon, tweak func(*config.Config), opts daemon.Options) *Peer {
	t.Helper()
	ident, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return StartWithIdentity(t, k, ident, tweak, opts)
}

// StartWithIdentity is StartWithKubo with a given identity, so that other
// peers' configurations can name the peer before it starts.
func StartWithIdentity(t testing.TB, k *kubo.Daemon, ident *config.Identity, tweak func(*config.Config), opts daemon.Options) *Peer {
	t.Helper()
	// Keep test output to what matters: warnings and errors.
	logging.Setup(os.Stderr, logging.Levels{Default: zerolog.WarnLevel})
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Cluster.Peername = "peer-" + t.Name()
	secret, err := config.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cluster.Secret = secret
	cfg.API.RestAPI.HTTPListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/0"}
	cfg.Cluster.ListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/0"}
	cfg.Cluster.MonitorPingInterval = config.Duration(500 * time.Millisecond)
	cfg.Monitor.PubsubMon.CheckInterval = config.Duration(500 * time.Millisecond)
	cfg.Consensus.CRDT.RebroadcastInterval = config.Duration(300 * time.Millisecond)
	cfg.IPFSConnector.IPFSHTTP.NodeMultiaddress = k.APIAddr
	cfg.IPFSConnector.IPFSHTTP.ConnectSwarmsDelay = config.Duration(300 * time.Millisecond)
	cfg.PinTracker.Stateless.RetryMinDelay = config.Duration(time.Second)
	cfg.PinTracker.Stateless.RetryMaxDelay = config.Duration(5 * time.Second)
	if tweak != nil {
		tweak(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := daemon.Start(dir, cfg, ident, opts)
	if err != nil {
		t.Fatalf("start peer: %v", err)
	}
	t.Cleanup(p.Stop)
	addr := p.REST.Addrs()[0].(*net.TCPAddr)
	return &Peer{
		Peer: p, Dir: dir, Config: cfg, Identity: ident, Kubo: k,
		APIURL:  "http://" + addr.String(),
		APIAddr: "/ip4/127.0.0.1/tcp/" + strconv.Itoa(addr.Port),
	}
}

// StartCluster starts n peers, each beside its own kubo, sharing one secret;
// peers 1..n-1 bootstrap to peer 0. It returns once every peer counts all
// n in its peerset and holds the free-space metric of each, so allocation
// can use them all, and the peers have connected their kubo daemons to
// each other, so blocks can move. tweak, when given, edits each peer's configuration.
func StartCluster(t testing.TB, n int, tweak func(i int, c *config.Config)) []*Peer {
	t.Helper()
	secret, err := config.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	peers := make([]*Peer, n)
	for i := range peers {
		k := kubotest.Start(t)
		var opts daemon.Options
		if i > 0 {
			opts.Bootstrap = []string{peers[0].ClusterAddr()}
		}
		peers[i] = StartWithKubo(t, k, func(c *config.Config) {
			c.Cluster.Secret = secret
			c.Cluster.Peername = "peer" + strconv.Itoa(i)
			if tweak != nil {
				tweak(i, c)
			}
		}, opts)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range peers {
		for len(p.Cluster.ID(t.Context()).ClusterPeers) < n || len(p.Cluster.LatestMetrics("freespace")) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d peers and %d free-space metrics after 30s, want %d", p.Config.Cluster.Peername,
					len(p.Cluster.ID(t.Context()).ClusterPeers), len(p.Cluster.LatestMetrics("freespace")), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The peers connect their kubo daemons to each other themselves
	// (connect_swarms_delay), so that blocks can move.
	for _, p := range peers {
		for {
			out, err := p.Kubo.Run(t.Context(), "swarm", "peers")
			missing := 0
			for _, q := range peers {
				if q != p && !strings.Contains(out, q.Kubo.PeerID.String()) {
					missing++
				}
			}
			if err == nil && missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the kubo of %s is connected to %d of the %d other peers' after 30s (%v)", p.Config.Cluster.Peername, n-1-missing, n-1, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return peers
}

// ClusterAddr is the peer's libp2p address with its /p2p/ suffix.
func (p *Peer) ClusterAddr() string {
	return p.Host.Addrs()[0].String() + "/p2p/" + p.Host.ID().String()
}

// Client returns a REST client of the peer.
func (p *Peer) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Hosts: []string{p.APIAddr}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// WaitStatus waits up to 30 s until the peer's own status of c is want.
func (p *Peer) WaitStatus(t testing.TB, c api.Cid, want api.TrackerStatus) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last api.PinInfoShort
	for time.Now().Before(deadline) {
		gpi, err := p.Cluster.Status(t.Context(), c, true)
		if err != nil {
			t.Fatal(err)
		}
		if last = gpi.PeerMap[p.Identity.ID.String()]; last.Status == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: status %s (error %q) after 30s, want %s", c, last.Status, last.Error, want)
}

// Restart stops p cleanly and starts it again on the same folder,
// configuration, identity and kubo, with opts. The returned peer replaces
// p, which must not be used after.
func (p *Peer) Restart(t testing.TB, opts daemon.Options) *Peer {
	t.Helper()
	p.Stop()
	np, err := daemon.Start(p.Dir, p.Config, p.Identity, opts)
	if err != nil {
		t.Fatalf("restart peer: %v", err)
	}
	t.Cleanup(np.Stop)
	addr := np.REST.Addrs()[0].(*net.TCPAddr)
	return &Peer{
		Peer: np, Dir: p.Dir, Config: p.Config, Identity: p.Identity, Kubo: p.Kubo,
		APIURL:  "http://" + addr.String(),
		APIAddr: "/ip4/127.0.0.1/tcp/" + strconv.Itoa(addr.Port),
	}
}
