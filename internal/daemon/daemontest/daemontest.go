// Package daemontest starts whole cluster peers in the test process, each
// beside a real kubo daemon, with its REST API on a free loopback port.
package daemontest

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

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
	return StartWithKubo(t, kubotest.Start(t), tweak)
}

// StartWithKubo starts a peer beside an existing kubo daemon.
func StartWithKubo(t testing.TB, k *kubo.Daemon, tweak func(*config.Config)) *Peer {
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
	cfg.IPFSConnector.IPFSHTTP.NodeMultiaddress = k.APIAddr
	cfg.PinTracker.Stateless.RetryMinDelay = config.Duration(time.Second)
	cfg.PinTracker.Stateless.RetryMaxDelay = config.Duration(5 * time.Second)
	if tweak != nil {
		tweak(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ident, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	p, err := daemon.Start(dir, cfg, ident)
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
