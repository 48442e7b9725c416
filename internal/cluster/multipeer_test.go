package cluster_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/internal/kubo/kubotest"
)

// waitUntil polls cond every 50ms for at most d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not reached after %s: %s", what, d, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func peerIndex(peers []*daemontest.Peer) map[peer.ID]*daemontest.Peer {
	m := map[peer.ID]*daemontest.Peer{}
	for _, p := range peers {
		m[p.Identity.ID] = p
	}
	return m
}

func TestReplicationAcrossThreePeers(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, nil)
	byID := peerIndex(peers)
	// /id lists the other peers' addresses, as the reference does.
	id := peers[0].Cluster.ID(t.Context())
	for _, p := range peers[1:] {
		if !slices.ContainsFunc(id.ClusterPeersAddresses, func(a api.Multiaddr) bool { return a.String() == p.ClusterAddr() }) {
			t.Fatalf("cluster_peers_addresses %v lacks %s", id.ClusterPeersAddresses, p.ClusterAddr())
		}
	}
	const n = 100
	cids := cids(t, peers[0], n)
	for i, c := range cids {
		if _, err := peers[i%3].Cluster.Pin(t.Context(), c, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2, Name: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Every peer sees every pin with exactly two allocations.
	for _, p := range peers {
		waitUntil(t, 30*time.Second, p.Config.Cluster.Peername+" has the pinset", func() (bool, string) {
			l := p.DB.Len()
			return l == n, fmt.Sprintf("%d pins", l)
		})
	}
	for _, c := range cids {
		pin, err := peers[2].Cluster.PinGet(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if len(pin.Allocations) != 2 || pin.Allocations[0] == pin.Allocations[1] {
			t.Fatalf("%s allocations %v", c, pin.Allocations)
		}
	}
	// Allocated peers pin it in their kubo; the third reports remote.
	for _, c := range cids {
		pin, _ := peers[0].Cluster.PinGet(t.Context(), c)
		waitUntil(t, 60*time.Second, c.String()+" pinned on its allocations", func() (bool, string) {
			gpi, err := peers[0].Cluster.Status(t.Context(), c, false)
			if err != nil {
				return false, err.Error()
			}
			pinned, remote := 0, 0
			for id, pi := range gpi.PeerMap {
				allocated := slices.ContainsFunc(pin.Allocations, func(p peer.ID) bool { return p.String() == id })
				switch {
				case allocated && pi.Status == api.TrackerStatusPinned:
					pinned++
				case !allocated && pi.Status == api.TrackerStatusRemote:
					remote++
				}
			}
			return pinned == 2 && remote == 1, fmt.Sprintf("%+v", gpi.PeerMap)
		})
		for _, a := range pin.Allocations {
			if !kubotest.Pins(t, byID[a].Kubo, "recursive")[c.String()] {
				t.Fatalf("kubo of %s does not hold %s", a, c)
			}
		}
	}
	// A filter of two statuses reaches the other peers whole: each pin
	// is remote on exactly one peer, and nothing is in error.
	remote := 0
	err := peers[0].Cluster.StatusAll(t.Context(), api.TrackerStatusRemote|api.TrackerStatusPinError, false, func(gpi api.GlobalPinInfo) error {
		for id, pi := range gpi.PeerMap {
			if pi.Status != api.TrackerStatusRemote {
				return fmt.Errorf("%s on %s is %s", gpi.Cid, id, pi.Status)
			}
			remote++
		}
		return nil
	})
	if err != nil || remote != n {
		t.Fatalf("status filtered by remote,pin_error: %d remote entries, %v; want %d", remote, err, n)
	}
}

func TestTagSpreadWithUserAllocation(t *testing.T) {
	groups := []string{"a", "a", "b"}
	peers := daemontest.StartCluster(t, 3, func(i int, c *config.Config) {
		c.Informer.Tags.Tags = map[string]string{"group": groups[i]}
	})
	group := map[peer.ID]string{}
	for i, p := range peers {
		group[p.Identity.ID] = groups[i]
	}
	// Every peer must know every peer's tag before allocating.
	waitUntil(t, 20*time.Second, "tags everywhere", func() (bool, string) {
		n := len(peers[0].Cluster.LatestMetrics("tag:group"))
		return n == 3, fmt.Sprintf("%d tag metrics", n)
	})
	// Peers 1 and 2 only bootstrapped to peer 0: they find each other
	// through the addresses in their pings, so the graph becomes complete.
	waitUntil(t, 20*time.Second, "a complete connectivity graph", func() (bool, string) {
		g := peers[1].Cluster.ConnectGraph(t.Context())
		if len(g.ClusterLinks) != 3 || len(g.ClustertoIPFS) != 3 || g.ClusterID != peers[1].Identity.ID {
			return false, fmt.Sprintf("%+v", g)
		}
		for id, links := range g.ClusterLinks {
			if len(links) != 2 || !g.ClusterTrustLinks[id] {
				return false, fmt.Sprintf("%s links to %v (trusted %v)", id, links, g.ClusterTrustLinks[id])
			}
		}
		return true, ""
	})
	if id, err := peers[1].Cluster.PeerAdd(t.Context(), peers[2].Identity.ID); err != nil || id.ID != peers[2].Identity.ID || len(id.ClusterPeers) != 3 {
		t.Fatalf("peer add: %+v, %v", id, err)
	}
	// The graph was asked over peer RPC, so the host counted those bytes
	// (its meters add up once a second).
	waitUntil(t, 5*time.Second, "RPC bandwidth", func() (bool, string) {
		bw := peers[1].Cluster.BandwidthByProtocol()[api.RPCProtocol]
		return bw.TotalIn > 0 && bw.TotalOut > 0, fmt.Sprintf("%+v", bw)
	})
	cs := cids(t, peers[0], 20)
	for i, c := range cs {
		opts := api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}
		if i%2 == 0 {
			opts.UserAllocations = []peer.ID{peers[1].Identity.ID} // group a
		}
		pin, err := peers[0].Cluster.Pin(t.Context(), c, opts)
		if err != nil {
			t.Fatal(err)
		}
		g := map[string]bool{}
		for _, a := range pin.Allocations {
			g[group[a]] = true
		}
		if len(pin.Allocations) != 2 || !g["a"] || !g["b"] {
			t.Fatalf("pin %d allocated to %v: want one peer of group a and one of b", i, pin.Allocations)
		}
		if i%2 == 0 && !slices.Contains(pin.Allocations, peers[1].Identity.ID) {
			t.Fatalf("pin %d ignores the user allocation: %v", i, pin.Allocations)
		}
	}
}

func TestRepinWhenAPeerGoesDown(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, func(_ int, c *config.Config) { c.Cluster.DisableRepinning = false })
	cs := cids(t, peers[0], 12)
	for _, c := range cs {
		if _, err := peers[0].Cluster.Pin(t.Context(), c, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range peers {
		waitUntil(t, 30*time.Second, "pinset everywhere", func() (bool, string) { return p.DB.Len() == len(cs), "" })
	}
	dead := peers[2]
	dead.Stop()
	live := peers[:2]
	for _, c := range cs {
		waitUntil(t, 60*time.Second, c.String()+" repinned away from the dead peer", func() (bool, string) {
			pin, err := live[0].Cluster.PinGet(t.Context(), c)
			if err != nil {
				return false, err.Error()
			}
			if slices.Contains(pin.Allocations, dead.Identity.ID) {
				return false, fmt.Sprintf("allocations %v", pin.Allocations)
			}
			for _, p := range live {
				gpi, err := p.Cluster.Status(t.Context(), c, true)
				if err != nil || gpi.PeerMap[p.Identity.ID.String()].Status != api.TrackerStatusPinned {
					return false, fmt.Sprintf("%s: %+v %v", p.Config.Cluster.Peername, gpi.PeerMap, err)
				}
			}
			return true, ""
		})
	}
}

// Every pin allocated to a dead peer moves, also the share of a peer that
// does not repin (disable_repinning is its default) and of a peer that
// restarted meanwhile and so never saw the dead peer's ping expire.
func TestEveryPinLeavesADeadPeer(t *testing.T) {
	peers := daemontest.StartCluster(t, 4, func(i int, c *config.Config) {
		c.Cluster.DisableRepinning = i == 3
		c.Cluster.StateSyncInterval = config.Duration(3 * time.Second)
	})
	dead, restarted := peers[2], peers[0]
	cs := cids(t, peers[0], 24)
	for i, c := range cs {
		// Every pin has a copy on the peer that dies, so every pin needs
		// a repin; which peer is responsible varies with the CID.
		other := peers[1+2*(i%2)].Identity.ID
		opts := api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2, UserAllocations: []peer.ID{dead.Identity.ID, other}}
		if _, err := peers[1].Cluster.Pin(t.Context(), c, opts); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range peers {
		waitUntil(t, 30*time.Second, "pinset everywhere", func() (bool, string) { return p.DB.Len() == len(cs), "" })
	}
	dead.Stop()
	restarted.Stop()
	again, err := daemon.Start(restarted.Dir, restarted.Config, restarted.Identity, daemon.Options{Bootstrap: []string{peers[1].ClusterAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Stop)
	for _, c := range cs {
		waitUntil(t, 30*time.Second, c.String()+" repinned away from the dead peer", func() (bool, string) {
			pin, err := peers[1].Cluster.PinGet(t.Context(), c)
			if err != nil {
				return false, err.Error()
			}
			if len(pin.Allocations) != 2 || slices.Contains(pin.Allocations, dead.Identity.ID) {
				return false, fmt.Sprintf("allocations %v", pin.Allocations)
			}
			return true, ""
		})
	}
}

// When the peer responsible for some of a dead peer's pins dies too, but
// after the first death was noticed (its own ping still valid then), its
// share moves once its ping expires, not at the next sweep.
func TestRepinnerDyingAfterTheDeadPeer(t *testing.T) {
	const slowPing = 3 * time.Second // the second peer to die: its ping lives 6s
	peers := daemontest.StartCluster(t, 4, func(i int, c *config.Config) {
		c.Cluster.DisableRepinning = false
		c.Cluster.StateSyncInterval = config.Duration(time.Hour) // no sweep
		if i == 2 {
			c.Cluster.MonitorPingInterval = config.Duration(slowPing)
		}
	})
	holder, repinner, live := peers[3], peers[2], peers[:2]
	cs := identityCids(t, "cascade", 24)
	pinAll(t, peers[:1], cs, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1,
		UserAllocations: []peer.ID{holder.Identity.ID}}, 4)
	for _, p := range peers {
		waitUntil(t, 30*time.Second, "pinset everywhere", func() (bool, string) { return p.DB.Len() == len(cs), "" })
	}
	holder.Stop()
	repinner.Stop()
	stopped := time.Now()
	waitUntil(t, 2*2*slowPing+10*time.Second, "every pin allocated to a live peer", func() (bool, string) {
		for _, c := range cs {
			pin, err := live[0].Cluster.PinGet(t.Context(), c)
			if err != nil {
				return false, err.Error()
			}
			if len(pin.Allocations) != 1 || !slices.ContainsFunc(live, func(p *daemontest.Peer) bool { return p.Identity.ID == pin.Allocations[0] }) {
				return false, fmt.Sprintf("%s allocated to %v", c, pin.Allocations)
			}
		}
		return true, ""
	})
	t.Logf("every pin moved %s after both peers stopped", time.Since(stopped).Round(time.Millisecond))
}

// A stopped peer with no allocations (every pin is replicated everywhere,
// the default) can be removed, and every peer stops showing it in status.
func TestPeerRemoveWithEverywherePinsOnly(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, nil)
	c := identityCids(t, "everywhere", 1)[0]
	pinAll(t, peers[:1], []api.Cid{c}, api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}, 1)
	for _, p := range peers {
		waitUntil(t, 30*time.Second, "the pin everywhere", func() (bool, string) { return p.DB.Len() == 1, "" })
	}
	gone := peers[2]
	gone.Stop()
	shown := func(p *daemontest.Peer) bool {
		gpi, err := p.Cluster.Status(t.Context(), c, false)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := gpi.PeerMap[gone.Identity.ID.String()]
		return ok
	}
	if !shown(peers[1]) {
		t.Fatal("the stopped peer is missing from status before its removal")
	}
	if err := peers[0].Cluster.PeerRemove(t.Context(), gone.Identity.ID); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers[:2] {
		if shown(p) {
			t.Fatalf("%s still shows the removed peer in status", p.Config.Cluster.Peername)
		}
	}
}

func TestPeerRemoveMovesItsPins(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, nil) // repinning stays off
	cs := cids(t, peers[0], 6)
	for _, c := range cs {
		if _, err := peers[0].Cluster.Pin(t.Context(), c, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}); err != nil {
			t.Fatal(err)
		}
	}
	// Three copies cannot be kept on the two peers left: this pin stays
	// as it is, and does not hold up the removal.
	more := cids(t, peers[0], 8)
	stuck := more[6]
	if _, err := peers[0].Cluster.Pin(t.Context(), stuck, api.PinOptions{ReplicationFactorMin: 3, ReplicationFactorMax: 3}); err != nil {
		t.Fatal(err)
	}
	// One copy is enough for this one: the removed peer must leave its
	// allocations all the same, or a later failure counts it as a copy.
	enough := more[7]
	if _, err := peers[0].Cluster.Pin(t.Context(), enough, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 3}); err != nil {
		t.Fatal(err)
	}
	gone := peers[2]
	if err := peers[0].Cluster.PeerRemove(t.Context(), gone.Identity.ID); !errors.Is(err, cluster.ErrInvalidRequest) {
		t.Fatalf("removing a running peer: %v, want ErrInvalidRequest", err)
	}
	gone.Stop()
	if err := peers[0].Cluster.PeerRemove(t.Context(), peers[0].Identity.ID); err == nil {
		t.Fatal("a peer removed itself")
	}
	stranger, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := peers[0].Cluster.PeerRemove(t.Context(), stranger.ID); !errors.Is(err, cluster.ErrUnknownPeer) {
		t.Fatalf("removing a peer nobody knows: %v, want ErrUnknownPeer", err)
	}
	// Removed all the same, and told about the pin left behind.
	err = peers[0].Cluster.PeerRemove(t.Context(), gone.Identity.ID)
	if !errors.Is(err, cluster.ErrNotEnoughPeers) || !strings.Contains(err.Error(), "removed, but 1 of its") ||
		!strings.Contains(err.Error(), stuck.String()) {
		t.Fatalf("removing a peer with a pin that cannot move: %v", err)
	}
	for _, c := range cs {
		pin, err := peers[0].Cluster.PinGet(t.Context(), c)
		if err != nil || len(pin.Allocations) != 2 || slices.Contains(pin.Allocations, gone.Identity.ID) {
			t.Fatalf("%s allocations %v after removing %s (%v)", c, pin.Allocations, gone.Identity.ID, err)
		}
	}
	if pin, err := peers[0].Cluster.PinGet(t.Context(), enough); err != nil || len(pin.Allocations) != 2 || slices.Contains(pin.Allocations, gone.Identity.ID) {
		t.Fatalf("pin with copies to spare: allocations %v after removing %s (%v), want the 2 others", pin.Allocations, gone.Identity.ID, err)
	}
	if pin, err := peers[0].Cluster.PinGet(t.Context(), stuck); err != nil || len(pin.Allocations) != 3 {
		t.Fatalf("pin that could not move: allocations %v (%v), want the 3 it had", pin.Allocations, err)
	}
	// The peer that removed it no longer lists it.
	err = peers[0].Cluster.Peers(t.Context(), func(id api.ID) error {
		if id.ID == gone.Identity.ID {
			return fmt.Errorf("removed peer listed: %+v", id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A peer that just restarted allocates to the peers it knows once their
// metrics arrive, instead of failing the first requests with no
// candidates.
func TestAllocateRightAfterRestart(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, nil)
	a := peers[0].Restart(t, daemon.Options{})
	ci := identityCids(t, "right-after-restart", 1)[0]
	pin, err := a.Cluster.Pin(t.Context(), ci, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2})
	if err != nil {
		t.Fatalf("pin right after a restart: %v", err)
	}
	if len(pin.Allocations) != 2 {
		t.Fatalf("allocations %v, want both peers", pin.Allocations)
	}
}
