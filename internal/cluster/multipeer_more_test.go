package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/internal/kubo/kubotest"
)

// identityCids returns n distinct identity CIDs. Their content is inline,
// so kubo pins them without fetching or storing a block: the pins cost the
// cluster its usual work and kubo almost none.
func identityCids(t *testing.T, prefix string, n int) []api.Cid {
	t.Helper()
	out := make([]api.Cid, n)
	for i := range out {
		mh, err := multihash.Sum([]byte(prefix+"-"+strconv.Itoa(i)), multihash.IDENTITY, -1)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = api.NewCid(cid.NewCidV1(cid.Raw, mh))
	}
	return out
}

// everywhere pins on every peer of the cluster: no allocation.
var everywhere = api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}

// pinAll pins cs with opts from `workers` goroutines, spreading the
// requests over the given peers, and returns how long it took.
func pinAll(t *testing.T, peers []*daemontest.Peer, cs []api.Cid, opts api.PinOptions, workers int) time.Duration {
	t.Helper()
	start := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := peers[i%len(peers)].Cluster.Pin(t.Context(), cs[i], opts); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range cs {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
	return time.Since(start)
}

// pinset lists the CIDs in the peer's pinset.
func pinset(t *testing.T, p *daemontest.Peer) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	err := p.Cluster.Pins(t.Context(), api.AllType, func(pin api.Pin) error {
		set[pin.Cid.String()] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// sameSet compares a pinset with the CIDs wanted and describes the
// difference.
func sameSet(got map[string]bool, want []api.Cid) (bool, string) {
	missing := 0
	for _, c := range want {
		if !got[c.String()] {
			missing++
		}
	}
	extra := len(got) - (len(want) - missing)
	return missing == 0 && extra == 0, fmt.Sprintf("%d pins: %d missing, %d extra", len(got), missing, extra)
}

// waitPinset waits until the peer's pinset is exactly want.
func waitPinset(t *testing.T, d time.Duration, p *daemontest.Peer, want []api.Cid) {
	t.Helper()
	waitUntil(t, d, p.Config.Cluster.Peername+" has the pinset", func() (bool, string) {
		if n := p.DB.Len(); n != len(want) {
			_, d := sameSet(pinset(t, p), want)
			return false, fmt.Sprintf("%d pins, want %d: %s", n, len(want), d)
		}
		return sameSet(pinset(t, p), want)
	})
}

// restPins lists the pinset through GET /allocations.
func restPins(t *testing.T, p *daemontest.Peer) map[string]bool {
	t.Helper()
	resp, err := http.Get(p.APIURL + "/allocations")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /allocations: %s: %s", resp.Status, b)
	}
	set := map[string]bool{}
	dec := json.NewDecoder(resp.Body)
	for {
		var pin api.Pin
		err := dec.Decode(&pin)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("GET /allocations: %v", err)
		}
		set[pin.Cid.String()] = true
	}
	return set
}

// restStatus is GET /pins/{cid} (global status) on p.
func restStatus(t *testing.T, p *daemontest.Peer, c api.Cid) api.GlobalPinInfo {
	t.Helper()
	resp, err := http.Get(p.APIURL + "/pins/" + c.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /pins/%s: %s: %s", c, resp.Status, b)
	}
	var gpi api.GlobalPinInfo
	if err := json.Unmarshal(b, &gpi); err != nil {
		t.Fatalf("GET /pins/%s: %v: %s", c, err, b)
	}
	return gpi
}

func inPeerset(p *daemontest.Peer, id peer.ID) bool {
	return slices.Contains(p.Cluster.ID(context.Background()).ClusterPeers, id)
}

// TestLateJoinerListsThousandPins pins 1,000 CIDs on a running 3-peer
// cluster, then starts a 4th peer: it must list all of them within 30s.
func TestLateJoinerListsThousandPins(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, nil)
	const n = 1000
	cs := identityCids(t, "late", n)
	took := pinAll(t, peers, cs, everywhere, 16)
	start := time.Now()
	for _, p := range peers {
		waitPinset(t, 30*time.Second, p, cs)
	}
	t.Logf("%d pins committed on 3 peers in %s (%.0f pins/s); every peer listed them %s later",
		n, took.Round(time.Millisecond), n/took.Seconds(), time.Since(start).Round(time.Millisecond))
	if st, err := peers[0].Consensus.Stats(t.Context()); err == nil {
		t.Logf("DAG to catch up with: %d heads, height %d", st.Heads, st.MaxHeight)
	}

	k := kubotest.Start(t)
	start = time.Now()
	late := daemontest.StartWithKubo(t, k, func(c *config.Config) {
		c.Cluster.Secret = peers[0].Config.Cluster.Secret
		c.Cluster.Peername = "peer3"
	}, daemon.Options{Bootstrap: []string{peers[0].ClusterAddr()}})
	started := time.Since(start)
	waitPinset(t, 30*time.Second, late, cs)
	listed := time.Since(start)
	if ok, diff := sameSet(restPins(t, late), cs); !ok {
		t.Fatalf("GET /allocations on the late joiner: %s", diff)
	}
	t.Logf("late joiner: started in %s, listed all %d pins %s after its start",
		started.Round(time.Millisecond), n, listed.Round(time.Millisecond))
	if listed > 30*time.Second {
		t.Fatalf("the late joiner took %s to list the pinset, want at most 30s", listed)
	}
}

// TestPeerWithAnotherSecretCannotJoin bootstraps a peer with a different
// cluster secret to the cluster: it must never enter the peerset and never
// receive a pin.
func TestPeerWithAnotherSecretCannotJoin(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, nil)
	stranger := daemontest.StartWithKubo(t, kubotest.Start(t), func(c *config.Config) {
		c.Cluster.Peername = "stranger"
		if c.Cluster.Secret == peers[0].Config.Cluster.Secret {
			t.Fatal("the stranger got the cluster's secret")
		}
	}, daemon.Options{Bootstrap: []string{peers[0].ClusterAddr()}})
	sid := stranger.Identity.ID

	// An explicit dial fails too: the private network handshake does
	// (at once, or it hangs until the timeout).
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	err := stranger.Host.Connect(ctx, peer.AddrInfo{ID: peers[1].Identity.ID, Addrs: peers[1].Host.Addrs()})
	cancel()
	if err == nil {
		t.Fatal("a peer with another secret connected to the cluster")
	}

	cs := identityCids(t, "secret", 10)
	pinAll(t, peers, cs, everywhere, 4)
	mine := identityCids(t, "stranger", 1)
	if _, err := stranger.Cluster.Pin(t.Context(), mine[0], everywhere); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		waitPinset(t, 10*time.Second, p, cs)
	}
	// Several rebroadcasts and pings later, nothing crossed either way.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range peers {
			if inPeerset(p, sid) {
				t.Fatalf("%s lists the stranger in its peerset", p.Config.Cluster.Peername)
			}
			if p.Host.Network().Connectedness(sid) == network.Connected {
				t.Fatalf("%s is connected to the stranger", p.Config.Cluster.Peername)
			}
			if ids, err := p.Consensus.Peers(t.Context()); err != nil || slices.Contains(ids, sid) {
				t.Fatalf("%s: consensus peers %v (%v)", p.Config.Cluster.Peername, ids, err)
			}
			if p.DB.Len() != len(cs) {
				t.Fatalf("%s holds %d pins, want %d: the stranger's pin came in", p.Config.Cluster.Peername, p.DB.Len(), len(cs))
			}
		}
		if got := stranger.Cluster.ID(t.Context()).ClusterPeers; len(got) != 1 {
			t.Fatalf("the stranger's peerset is %v", got)
		}
		if ok, diff := sameSet(pinset(t, stranger), mine); !ok {
			t.Fatalf("the stranger received pins of the cluster: %s", diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPeerOfAnotherClusterNameIsNoPeer: a peer with the secret but another
// consensus.crdt.cluster_name connects and gossips metrics, yet it never
// shares the pinset, so it is neither listed nor allocated nor asked.
func TestPeerOfAnotherClusterNameIsNoPeer(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, nil)
	other := daemontest.StartWithKubo(t, kubotest.Start(t), func(c *config.Config) {
		c.Cluster.Secret = peers[0].Config.Cluster.Secret
		c.Cluster.Peername = "other"
		c.Consensus.CRDT.ClusterName = "another-cluster"
	}, daemon.Options{Bootstrap: []string{peers[0].ClusterAddr()}})
	oid := other.Identity.ID
	waitUntil(t, 10*time.Second, "the other peer connected to peer0", func() (bool, string) {
		return peers[0].Host.Network().Connectedness(oid) == network.Connected, ""
	})
	time.Sleep(4 * peers[0].Config.Cluster.MonitorPingInterval.D()) // pings and metrics cross
	for _, m := range peers[0].Cluster.LatestMetrics("freespace") {
		if m.Peer == oid {
			t.Fatal("peer0 keeps a metric of the other peer")
		}
	}
	c := identityCids(t, "cluster-name", 1)[0]
	pin, err := peers[0].Cluster.Pin(t.Context(), c, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Allocations) != 2 || slices.Contains(pin.Allocations, oid) {
		t.Fatalf("allocations %v, want the two peers of the cluster", pin.Allocations)
	}
	for _, p := range append(peers, other) {
		for _, q := range append(peers, other) {
			if p != q && inPeerset(p, q.Identity.ID) != (p != other && q != other) {
				t.Fatalf("%s lists %s: %v", p.Config.Cluster.Peername, q.Config.Cluster.Peername, inPeerset(p, q.Identity.ID))
			}
		}
	}
	gpi, err := peers[1].Cluster.Status(t.Context(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gpi.PeerMap[oid.String()]; ok || len(gpi.PeerMap) != 2 {
		t.Fatalf("status lists %v, want the two peers of the cluster", gpi.PeerMap)
	}
}

// TestUntrustedPeerPinStaysLocal trusts peers 0 and 1 only, on every peer
// and without the bootstrap trust: a pin committed on peer 2 stays there,
// while peer 2 still merges what the trusted peers commit. Peer 0 pins only
// on trusted peers and peer 1 only on untrusted ones.
func TestUntrustedPeerPinStaysLocal(t *testing.T) {
	idents := make([]*config.Identity, 3)
	for i := range idents {
		var err error
		if idents[i], err = config.NewIdentity(); err != nil {
			t.Fatal(err)
		}
	}
	trusted := []string{idents[0].ID.String(), idents[1].ID.String()}
	secret, err := config.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	peers := make([]*daemontest.Peer, 3)
	for i := range peers {
		var opts daemon.Options
		if i > 0 {
			opts = daemon.Options{Bootstrap: []string{peers[0].ClusterAddr()}, NoTrust: true}
		}
		peers[i] = daemontest.StartWithIdentity(t, kubotest.Start(t), idents[i], func(c *config.Config) {
			c.Cluster.Secret = secret
			c.Cluster.Peername = "peer" + strconv.Itoa(i)
			c.Consensus.CRDT.TrustedPeers = trusted
			c.Cluster.PinOnlyOnTrustedPeers = i == 0
			c.Cluster.PinOnlyOnUntrustedPeers = i == 1
		}, opts)
	}
	for _, p := range peers {
		waitUntil(t, 20*time.Second, p.Config.Cluster.Peername+" sees 3 peers", func() (bool, string) {
			ids, err := p.Consensus.Peers(t.Context())
			n := len(p.Cluster.ID(t.Context()).ClusterPeers)
			return err == nil && len(ids) == 3 && n == 3, fmt.Sprintf("%d topic peers, peerset of %d", len(ids), n)
		})
	}
	if peers[0].Consensus.IsTrusted(idents[2].ID) || !peers[2].Consensus.IsTrusted(idents[0].ID) || !peers[0].Consensus.IsTrusted(idents[1].ID) {
		t.Fatal("trust does not follow trusted_peers")
	}

	cs := identityCids(t, "trust", 3)
	fromTrusted, fromUntrusted, later := cs[0], cs[1], cs[2]
	if _, err := peers[0].Cluster.Pin(t.Context(), fromTrusted, everywhere); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		waitPinset(t, 10*time.Second, p, []api.Cid{fromTrusted})
	}
	if _, err := peers[2].Cluster.Pin(t.Context(), fromUntrusted, everywhere); err != nil {
		t.Fatal(err)
	}
	waitPinset(t, 5*time.Second, peers[2], []api.Cid{fromTrusted, fromUntrusted})
	// 5s: many rebroadcasts of peer 2's heads (every 300ms).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range peers[:2] {
			if ok, diff := sameSet(pinset(t, p), []api.Cid{fromTrusted}); !ok {
				t.Fatalf("%s merged the pin of the untrusted peer: %s", p.Config.Cluster.Peername, diff)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The trusted peers still work together and reach peer 2; peer 2's
	// pin still stays out.
	if _, err := peers[1].Cluster.Pin(t.Context(), later, everywhere); err != nil {
		t.Fatal(err)
	}
	waitPinset(t, 10*time.Second, peers[2], cs)
	for _, p := range peers[:2] {
		waitPinset(t, 10*time.Second, p, []api.Cid{fromTrusted, later})
	}

	for _, p := range peers[:2] {
		waitUntil(t, 20*time.Second, p.Config.Cluster.Peername+" has every free-space metric", func() (bool, string) {
			n := len(p.Cluster.LatestMetrics("freespace"))
			return n == 3, fmt.Sprintf("%d metrics", n)
		})
	}
	placed := identityCids(t, "placement", 2)
	pin, err := peers[0].Cluster.Pin(t.Context(), placed[0], api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 3})
	if err != nil || !sameSet2(pin.Allocations, idents[0].ID, idents[1].ID) {
		t.Fatalf("pin_only_on_trusted_peers: allocations %v, %v; want peers 0 and 1", pin.Allocations, err)
	}
	pin, err = peers[1].Cluster.Pin(t.Context(), placed[1], api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 3})
	if err != nil || len(pin.Allocations) != 1 || pin.Allocations[0] != idents[2].ID {
		t.Fatalf("pin_only_on_untrusted_peers: allocations %v, %v; want peer 2", pin.Allocations, err)
	}
	if _, err := peers[1].Cluster.Pin(t.Context(), placed[1], api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2}); !errors.Is(err, cluster.ErrNotEnoughPeers) ||
		!strings.Contains(err.Error(), "2 trusted (pin_only_on_untrusted_peers)") {
		t.Fatalf("two copies on the one untrusted peer: %v, want not enough peers, naming the rule", err)
	}
	if _, err := peers[0].Cluster.Pin(t.Context(), placed[0], api.PinOptions{ReplicationFactorMin: 3, ReplicationFactorMax: 3}); !errors.Is(err, cluster.ErrNotEnoughPeers) ||
		!strings.Contains(err.Error(), "1 not trusted ("+idents[2].ID.String()) {
		t.Fatalf("three copies on the two trusted peers: %v, want not enough peers, naming the untrusted one", err)
	}
}

// sameSet2 reports whether allocs are exactly a and b, in any order.
func sameSet2(allocs []peer.ID, a, b peer.ID) bool {
	return len(allocs) == 2 && slices.Contains(allocs, a) && slices.Contains(allocs, b)
}

// partition cuts the libp2p connections between the two groups until the
// returned function is called, for longer than the ping's TTL. The peers redial each other (a peer
// reconnects to the peers whose ping it holds), so the cut is kept: every
// connection across the groups is closed as soon as it opens, each side
// forgets the other's addresses, and a ticker closes whatever remains.
func partition(t *testing.T, left, right []*daemontest.Peer) (heal func()) {
	t.Helper()
	group := map[peer.ID]int{}
	for _, p := range left {
		group[p.Identity.ID] = 1
	}
	for _, p := range right {
		group[p.Identity.ID] = 2
	}
	all := append(slices.Clone(left), right...)
	var mu sync.Mutex
	reopened := 0
	notifiees := make([]*network.NotifyBundle, len(all))
	for i, p := range all {
		self := group[p.Identity.ID]
		notifiees[i] = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
			if g := group[c.RemotePeer()]; g != 0 && g != self {
				_ = c.Close()
				mu.Lock()
				reopened++
				mu.Unlock()
			}
		}}
		p.Host.Network().Notify(notifiees[i])
	}
	cut := func() {
		for _, l := range left {
			for _, r := range right {
				l.Host.Peerstore().ClearAddrs(r.Identity.ID)
				r.Host.Peerstore().ClearAddrs(l.Identity.ID)
				_ = l.Host.Network().ClosePeer(r.Identity.ID)
				_ = r.Host.Network().ClosePeer(l.Identity.ID)
			}
		}
	}
	cut()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				cut()
			}
		}
	}()
	stop := sync.OnceFunc(func() {
		cancel()
		<-done
		for i, p := range all {
			p.Host.Network().StopNotify(notifiees[i])
		}
		mu.Lock()
		t.Logf("partition: %d connections across the groups closed as they opened", reopened)
		mu.Unlock()
	})
	t.Cleanup(stop)
	// Healing only stops the cut: the peers must find each other again
	// by themselves, although by then each side's pings of the other have
	// expired.
	return stop
}

// TestPartitionedClusterConverges splits 4 peers into two groups that keep
// accepting pins and unpins, then heals the network: every peer must end
// with the same pinset. With repinning on, each side moves the pins of the
// other, which it sees down: a pin the other side removed meanwhile must
// stay removed.
func TestPartitionedClusterConverges(t *testing.T) {
	peers := daemontest.StartCluster(t, 4, func(_ int, c *config.Config) { c.Cluster.DisableRepinning = false })
	base := identityCids(t, "base", 20)
	pinAll(t, peers[:1], base, everywhere, 4)
	left, right := peers[:2], peers[2:]
	onLeft := identityCids(t, "on-left", 6)
	pinAll(t, peers[:1], onLeft, api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2,
		UserAllocations: []peer.ID{left[0].Identity.ID, left[1].Identity.ID}}, 2)
	base = append(base, onLeft...)
	for _, p := range peers {
		waitPinset(t, 10*time.Second, p, base)
	}

	heal := partition(t, left, right)
	for _, p := range peers {
		waitUntil(t, 10*time.Second, p.Config.Cluster.Peername+" sees only its group", func() (bool, string) {
			ids, err := p.Consensus.Peers(t.Context())
			return err == nil && len(ids) == 2, fmt.Sprintf("topic peers %v (%v)", ids, err)
		})
	}

	leftPins, rightPins := identityCids(t, "left", 20), identityCids(t, "right", 20)
	pinAll(t, left, leftPins, everywhere, 4)
	pinAll(t, right, rightPins, everywhere, 4)
	// Each side unpins a different base pin, and the left half of the
	// pins held on the left, which the right moves to itself.
	if _, err := left[1].Cluster.Unpin(t.Context(), base[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := right[1].Cluster.Unpin(t.Context(), base[1]); err != nil {
		t.Fatal(err)
	}
	removed, kept := onLeft[:3], onLeft[3:]
	for _, c := range removed {
		if _, err := left[0].Cluster.Unpin(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range onLeft {
		waitUntil(t, 10*time.Second, c.String()+" moved to the right", func() (bool, string) {
			pin, err := right[0].Cluster.PinGet(t.Context(), c)
			return err == nil && sameSet2(pin.Allocations, right[0].Identity.ID, right[1].Identity.ID), fmt.Sprintf("%v (%v)", pin.Allocations, err)
		})
	}
	leftWant := append(slices.DeleteFunc(slices.Clone(base[1:]), func(c api.Cid) bool { return slices.Contains(removed, c) }), leftPins...)
	rightWant := append(append([]api.Cid{base[0]}, base[2:]...), rightPins...)
	for _, p := range left {
		waitPinset(t, 10*time.Second, p, leftWant)
	}
	for _, p := range right {
		waitPinset(t, 10*time.Second, p, rightWant)
	}
	// A few rebroadcasts later, nothing crossed the partition.
	time.Sleep(time.Second)
	for _, p := range left {
		if ok, diff := sameSet(pinset(t, p), leftWant); !ok {
			t.Fatalf("%s during the partition: %s", p.Config.Cluster.Peername, diff)
		}
	}
	for _, p := range right {
		if ok, diff := sameSet(pinset(t, p), rightWant); !ok {
			t.Fatalf("%s during the partition: %s", p.Config.Cluster.Peername, diff)
		}
	}

	heal()
	start := time.Now()
	want := append(append(slices.Clone(base[2:len(base)-len(onLeft)]), kept...), append(leftPins, rightPins...)...)
	for _, p := range peers {
		waitPinset(t, 30*time.Second, p, want)
	}
	t.Logf("after healing, 4 peers agree on %d pins in %s", len(want), time.Since(start).Round(time.Millisecond))
}

// TestStatusWithAPeerDown stops the peer a pin is allocated to: the global
// status asked of another peer shows cluster_error for it and remote for
// the others, before and after its ping expires.
func TestStatusWithAPeerDown(t *testing.T) {
	const ping = 2 * time.Second // the ping lives 4s
	peers := daemontest.StartCluster(t, 3, func(_ int, c *config.Config) {
		c.Cluster.MonitorPingInterval = config.Duration(ping)
	})
	dead, live := peers[2], peers[:2]
	c := identityCids(t, "status", 1)[0]
	pin, err := live[0].Cluster.Pin(t.Context(), c, api.PinOptions{
		ReplicationFactorMin: 1, ReplicationFactorMax: 1, UserAllocations: []peer.ID{dead.Identity.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Allocations) != 1 || pin.Allocations[0] != dead.Identity.ID {
		t.Fatalf("allocations %v, want the peer to stop", pin.Allocations)
	}
	dead.WaitStatus(t, c, api.TrackerStatusPinned)
	all := identityCids(t, "status-everywhere", 1)[0]
	if _, err := live[0].Cluster.Pin(t.Context(), all, everywhere); err != nil {
		t.Fatal(err)
	}
	dead.WaitStatus(t, all, api.TrackerStatusPinned)
	for _, p := range live {
		waitPinset(t, 10*time.Second, p, []api.Cid{all, c})
	}

	// check asks each live peer for the status of c (GET /pins/{cid}) and
	// for the listings, whole and filtered for errors (GET /pins), and
	// expects the dead peer's entry to be deadStatus and the others
	// remote. The entry of the dead peer carries its name, from its last
	// ping, expired or not.
	check := func(when string, deadStatus api.TrackerStatus, pingValid bool) {
		t.Helper()
		for _, p := range live {
			name := p.Config.Cluster.Peername
			// A filtered listing holds only the entries that match.
			gpis := map[api.TrackerStatus][]api.GlobalPinInfo{api.TrackerStatusUndefined: {restStatus(t, p, c)}}
			for _, filter := range []api.TrackerStatus{api.TrackerStatusUndefined, api.TrackerStatusError} {
				var listed []api.GlobalPinInfo
				err := p.Cluster.StatusAll(t.Context(), filter, false, func(g api.GlobalPinInfo) error {
					if g.Cid == c {
						listed = append(listed, g)
					}
					return nil
				})
				want := 0
				if deadStatus.Match(filter) {
					want = 1
				}
				if err != nil || len(listed) != want {
					t.Fatalf("%s: status --filter %s from %s: %d pins (%v), want %d", when, filter, name, len(listed), err, want)
				}
				gpis[filter] = append(gpis[filter], listed...)
			}
			for filter, list := range gpis {
				for _, gpi := range list {
					entries := 3
					if filter != api.TrackerStatusUndefined {
						entries = 1
					}
					if len(gpi.PeerMap) != entries {
						t.Fatalf("%s: status from %s has %d entries: %+v", when, name, len(gpi.PeerMap), gpi.PeerMap)
					}
					for id, pi := range gpi.PeerMap {
						want := api.TrackerStatusRemote
						if id == dead.Identity.ID.String() {
							want = deadStatus
						}
						if pi.Status != want {
							t.Fatalf("%s: status from %s: %s is %s, want %s (%+v)", when, name, id, pi.Status, want, gpi.PeerMap)
						}
						if want == api.TrackerStatusClusterError && pi.Error == "" {
							t.Fatalf("%s: cluster_error without an error message", when)
						}
						if id == dead.Identity.ID.String() && (pi.PeerName != dead.Config.Cluster.Peername || pi.IPFS == "") {
							t.Fatalf("%s: the entry of the stopped peer names %q with kubo %q, want %q (ping valid: %v)",
								when, pi.PeerName, pi.IPFS, dead.Config.Cluster.Peername, pingValid)
						}
					}
				}
			}
		}
	}
	check("all up", api.TrackerStatusPinned, true)

	stopStart := time.Now()
	dead.Stop()
	stopped := time.Since(stopStart)
	up := inPeerset(live[0], dead.Identity.ID) && inPeerset(live[1], dead.Identity.ID)
	if !up {
		t.Fatalf("the ping of the stopped peer expired before it was asked (stop took %s)", stopped)
	}
	check("down, ping valid", api.TrackerStatusClusterError, true)
	if !inPeerset(live[0], dead.Identity.ID) {
		t.Fatal("the ping expired during the first check: lengthen the ping interval")
	}
	t.Logf("peer stopped in %s; status checked while its ping was valid", stopped.Round(time.Millisecond))

	for _, p := range live {
		waitUntil(t, 4*ping, p.Config.Cluster.Peername+" drops the stopped peer", func() (bool, string) {
			return !inPeerset(p, dead.Identity.ID), ""
		})
	}
	// Out of the peerset, the peer is still an allocation: the status of
	// the pin asks it and reports it unreachable; the listings, which ask
	// only live peers, report it down.
	check("down, ping expired", api.TrackerStatusClusterError, false)
	// A pin on every peer, which the stopped peer held, says the same.
	gpi := restStatus(t, live[0], all)
	if pi, ok := gpi.PeerMap[dead.Identity.ID.String()]; len(gpi.PeerMap) != 3 || !ok || pi.Status != api.TrackerStatusClusterError {
		t.Fatalf("status of a pin on every peer with one down: %+v, want the stopped peer in cluster_error", gpi.PeerMap)
	}
}

// TestStatusAllWithAKuboDown kills the kubo of one peer: the listings show
// cluster_error for that peer on every pin it held, instead of the PINNED
// it last recorded, also filtered and asked of that peer alone; a recover,
// which needs kubo, fails on that peer, and lists its pins with its error
// instead of an empty success.
func TestStatusAllWithAKuboDown(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, nil)
	cs := identityCids(t, "kubo-down", 5)
	pinAll(t, peers[:1], cs, everywhere, 2)
	for _, c := range cs {
		peers[2].WaitStatus(t, c, api.TrackerStatusPinned)
	}
	peers[2].Kubo.Kill()
	down := peers[2].Identity.ID.String()

	for name, list := range map[string]func(func(api.GlobalPinInfo) error) error{
		"status": func(fn func(api.GlobalPinInfo) error) error {
			return peers[0].Cluster.StatusAll(t.Context(), api.TrackerStatusUndefined, false, fn)
		},
		"status --filter error": func(fn func(api.GlobalPinInfo) error) error {
			return peers[0].Cluster.StatusAll(t.Context(), api.TrackerStatusError, false, fn)
		},
		"status --local": func(fn func(api.GlobalPinInfo) error) error {
			return peers[2].Cluster.StatusAll(t.Context(), api.TrackerStatusUndefined, true, fn)
		},
	} {
		var listed int
		err := list(func(g api.GlobalPinInfo) error {
			listed++
			pi := g.PeerMap[down]
			if pi.Status != api.TrackerStatusClusterError || !strings.Contains(pi.Error, "cannot check the pin in kubo") {
				return fmt.Errorf("%s on the peer whose kubo is down: %s %q", g.Cid, pi.Status, pi.Error)
			}
			return nil
		})
		if err != nil || listed != len(cs) {
			t.Errorf("%s: %d pins listed (%v), want %d with cluster_error", name, listed, err, len(cs))
		}
	}

	// Nothing failed on the others, so only the pins of the peer that
	// could not recover are listed, with its error.
	var recovered int
	err := peers[0].Cluster.RecoverAll(t.Context(), false, func(g api.GlobalPinInfo) error {
		recovered++
		if pi := g.PeerMap[down]; len(g.PeerMap) != 1 || pi.Status != api.TrackerStatusClusterError || !strings.Contains(pi.Error, "is kubo running") {
			return fmt.Errorf("recover listed %s with %+v, want only the error of the peer whose kubo is down", g.Cid, g.PeerMap)
		}
		return nil
	})
	if err != nil || recovered != len(cs) {
		t.Errorf("recover: %d pins listed (%v), want %d in error on the peer whose kubo is down", recovered, err, len(cs))
	}
}

// TestMovedPinKeptUntilHeldElsewhere moves a pin from the peer that holds
// it to one whose kubo is frozen: the first keeps its copy, in unpin_error
// saying why, until the new allocation has pinned it (fetching it from
// that copy), and only then releases it.
func TestMovedPinKeptUntilHeldElsewhere(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, func(_ int, c *config.Config) {
		c.PinTracker.Stateless.RetryMinDelay = config.Duration(200 * time.Millisecond)
		c.PinTracker.Stateless.RetryMaxDelay = config.Duration(time.Second)
	})
	from, to := peers[0], peers[1]
	c := cids(t, from, 1)[0]
	one := api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1, UserAllocations: []peer.ID{from.Identity.ID}}
	if _, err := from.Cluster.Pin(t.Context(), c, one); err != nil {
		t.Fatal(err)
	}
	from.WaitStatus(t, c, api.TrackerStatusPinned)

	resume, err := to.Kubo.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	defer resume()
	// As a repin does when the holder was down: a new version of the pin
	// allocated elsewhere (a plain re-pin keeps valid allocations).
	pin, err := from.Cluster.PinGet(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	pin.Allocations = []peer.ID{to.Identity.ID}
	if err := from.Consensus.LogPin(t.Context(), pin); err != nil {
		t.Fatal(err)
	}
	// Asked of the other peer, the status of the CID says so too.
	waitUntil(t, 20*time.Second, "the old holder keeps its copy, saying why", func() (bool, string) {
		pi, err := to.Cluster.Status(t.Context(), c, false)
		mine := pi.PeerMap[from.Identity.ID.String()]
		return err == nil && mine.Status == api.TrackerStatusUnpinError && strings.Contains(mine.Error, "release pending"),
			fmt.Sprintf("%s %q (%v)", mine.Status, mine.Error, err)
	})
	if !kubotest.Pins(t, from.Kubo, "recursive")[c.String()] {
		t.Fatal("the old holder dropped the only copy before the new allocation held it")
	}

	resume()
	to.WaitStatus(t, c, api.TrackerStatusPinned)
	waitUntil(t, 20*time.Second, "the old holder releases its copy", func() (bool, string) {
		return !kubotest.Pins(t, from.Kubo, "recursive")[c.String()], ""
	})
}

// TestNumpinCountsHeldPins: the numpin metric of a peer is the number of
// pins its kubo holds, not the size of the shared pinset.
func TestNumpinCountsHeldPins(t *testing.T) {
	peers := daemontest.StartCluster(t, 2, func(_ int, c *config.Config) {
		c.Informer.NumPin.MetricTTL = config.Duration(time.Second)
		c.Allocator.Balanced.AllocateBy = []string{"numpin"}
	})
	holder := peers[1]
	cs := identityCids(t, "numpin", 3)
	pinAll(t, peers[:1], cs, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1,
		UserAllocations: []peer.ID{holder.Identity.ID}}, 1)
	for _, c := range cs {
		holder.WaitStatus(t, c, api.TrackerStatusPinned)
	}
	waitUntil(t, 10*time.Second, "numpin is 3 on the holder and 0 on the other", func() (bool, string) {
		got := map[peer.ID]string{}
		for _, m := range peers[0].Cluster.LatestMetrics("numpin") {
			got[m.Peer] = m.Value
		}
		return got[holder.Identity.ID] == "3" && got[peers[0].Identity.ID] == "0", fmt.Sprint(got)
	})
	// Allocated by numpin, a pin goes to the peer holding fewer.
	next := identityCids(t, "numpin-next", 1)[0]
	pin, err := peers[1].Cluster.Pin(t.Context(), next, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Allocations) != 1 || pin.Allocations[0] != peers[0].Identity.ID {
		t.Fatalf("allocated by numpin to %v, want the peer with no pins, %s", pin.Allocations, peers[0].Identity.ID)
	}
}
