package daemon_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/internal/kubo/kubotest"
)

// TestJoinRetriesWhileAlone starts a peer whose bootstrap peer is not up
// yet, and which knows nothing of it: once it is up, the first peer joins
// it by itself.
func TestJoinRetriesWhileAlone(t *testing.T) {
	secret, err := config.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	later, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	first := daemontest.StartWithKubo(t, kubotest.Start(t), func(c *config.Config) { c.Cluster.Secret = secret },
		daemon.Options{Bootstrap: []string{listen + "/p2p/" + later.ID.String()}})
	daemontest.StartWithIdentity(t, kubotest.Start(t), later, func(c *config.Config) {
		c.Cluster.Secret = secret
		c.Cluster.ListenMultiaddress = config.StringList{listen}
	}, daemon.Options{})

	interval := first.Config.Cluster.MonitorPingInterval.D()
	deadline := time.Now().Add(10*interval + 5*time.Second)
	for first.Host.Network().Connectedness(later.ID) != network.Connected {
		if time.Now().After(deadline) {
			t.Fatalf("not connected to the bootstrap peer %s after it started", later.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
