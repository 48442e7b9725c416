package crdt

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

func TestMain(m *testing.M) {
	// The kill -9 test re-runs this binary as a peer that it kills.
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	if dir := os.Getenv(walkChildDirEnv); dir != "" {
		os.Exit(runWalkChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// testPSK is the private network key every test host shares.
var testPSK = func() pnet.PSK {
	k := sha256.Sum256([]byte("crdt consensus tests"))
	return k[:]
}()

// dsQueryAll lists every key of a datastore.
var dsQueryAll = query.Query{}

// testConfig is the default config with test-sized intervals.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.ClusterName = "crdt-test"
	cfg.RebroadcastInterval = 300 * time.Millisecond
	cfg.DAGSyncTimeout = 5 * time.Second
	cfg.RepairInterval = 5 * time.Second
	return cfg
}

// testApplier is a small real applier: it writes to the state, as the
// cluster core does, and counts the calls per CID.
type testApplier struct {
	db *state.DB

	mu      sync.Mutex
	pins    map[string]int
	unpins  map[string]int
	resumed []string // "cid replaced version at", Unix nanoseconds
}

func newTestApplier(db *state.DB) *testApplier {
	return &testApplier{db: db, pins: map[string]int{}, unpins: map[string]int{}}
}

func (a *testApplier) ApplyPin(p api.Pin) error {
	// Counted before the state shows it, so that a test that saw the state
	// change also sees the call.
	a.count(a.pins, p.Cid, 1)
	if err := a.db.Put(p); err != nil {
		a.count(a.pins, p.Cid, -1)
		return err
	}
	return nil
}

func (a *testApplier) ApplyUnpin(p api.Pin) error {
	a.count(a.unpins, p.Cid, 1)
	if err := a.db.Delete(p.Cid); err != nil {
		a.count(a.unpins, p.Cid, -1)
		return err
	}
	return nil
}

func (a *testApplier) Resume(c api.Cid, replaced, version, at time.Time) {
	nanos := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	a.mu.Lock()
	a.resumed = append(a.resumed, fmt.Sprint(c, " ", nanos(replaced), " ", nanos(version), " ", nanos(at)))
	a.mu.Unlock()
}

func (a *testApplier) count(m map[string]int, c api.Cid, n int) {
	a.mu.Lock()
	m[c.String()] += n
	a.mu.Unlock()
}

// calls returns the number of ApplyPin and ApplyUnpin calls for c.
func (a *testApplier) calls(c api.Cid) (pins, unpins int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pins[c.String()], a.unpins[c.String()]
}

// gater refuses connections to and from the peers it blocks, to cut a
// network in two.
type gater struct {
	mu      sync.Mutex
	blocked map[peer.ID]bool
}

func (g *gater) block(ids ...peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		g.blocked[id] = true
	}
}

func (g *gater) unblockAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.blocked)
}

func (g *gater) allowed(id peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.blocked[id]
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return g.allowed(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.allowed(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(p)
}
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// testPeer is one in-process cluster peer: a loopback libp2p host, its
// gossipsub, a state database and the consensus.
type testPeer struct {
	t     testing.TB
	name  string
	dir   string
	key   crypto.PrivKey
	cfg   Config
	gater *gater

	h        host.Host
	psCancel context.CancelFunc
	db       *state.DB
	app      *testApplier
	c        *Consensus
}

// newTestPeer starts a peer with its own database in a temporary folder. It
// is stopped at the end of the test.
func newTestPeer(t testing.TB, name string, cfg Config) *testPeer {
	t.Helper()
	return newTestPeerIn(t, name, cfg, t.TempDir())
}

// newTestPeerIn is newTestPeer with the database in dir.
func newTestPeerIn(t testing.TB, name string, cfg Config, dir string) *testPeer {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPeer{t: t, name: name, dir: dir, key: key, cfg: cfg}
	p.start()
	t.Cleanup(p.stop)
	return p
}

// newHost returns a host listening on a random loopback TCP port, with no
// NAT mapping, relay or discovery.
func newHost(key crypto.PrivKey, g *gater) (host.Host, error) {
	return libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.PrivateNetwork(testPSK),
		libp2p.ConnectionGater(g),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
}

// newPubSub returns the gossipsub of a test peer. Flood publishing sends a
// peer's own announcements to every topic peer at once instead of waiting
// for the first heartbeat to build the mesh.
func newPubSub(ctx context.Context, h host.Host) (*pubsub.PubSub, error) {
	return pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true))
}

// start (re)starts the peer on its database.
func (p *testPeer) start() {
	t := p.t
	t.Helper()
	var err error
	p.gater = &gater{blocked: map[peer.ID]bool{}}
	if p.h, err = newHost(p.key, p.gater); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.psCancel = cancel
	ps, err := newPubSub(ctx, p.h)
	if err != nil {
		t.Fatal(err)
	}
	if p.db, err = state.Open(p.dir, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	p.app = newTestApplier(p.db)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("peer", p.name).Logger()
	if p.c, err = New(p.cfg, p.h, ps, p.db, p.app, log); err != nil {
		t.Fatal(err)
	}
}

// stop shuts the peer down cleanly; it does nothing on a stopped peer.
func (p *testPeer) stop() {
	if p.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.c.Shutdown(ctx); err != nil && !errors.Is(err, ErrShutdown) {
		p.t.Errorf("%s: shutdown: %v", p.name, err)
	}
	p.psCancel()
	if err := p.h.Close(); err != nil {
		p.t.Errorf("%s: close host: %v", p.name, err)
	}
	if err := p.db.Close(); err != nil {
		p.t.Errorf("%s: close state: %v", p.name, err)
	}
	p.c = nil
}

func (p *testPeer) id() peer.ID { return p.h.ID() }

func (p *testPeer) addrInfo() peer.AddrInfo { return peer.AddrInfo{ID: p.h.ID(), Addrs: p.h.Addrs()} }

// connect connects every pair of peers and waits until each sees the others
// on the cluster topic.
func connect(t testing.TB, peers ...*testPeer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, a := range peers {
		for _, b := range peers[i+1:] {
			if err := a.h.Connect(ctx, b.addrInfo()); err != nil {
				t.Fatalf("connect %s to %s: %v", a.name, b.name, err)
			}
		}
	}
	for _, a := range peers {
		waitFor(t, 10*time.Second, a.name+" sees the topic peers", func() bool {
			ids, err := a.c.Peers(ctx)
			return err == nil && len(ids) >= len(peers)
		})
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testCid returns a distinct CIDv1 (raw, sha2-256) for every i.
func testCid(i int) api.Cid {
	h := sha256.Sum256(binary.AppendVarint([]byte("cid"), int64(i)))
	c, err := cid.Cast(append([]byte{0x01, 0x55, 0x12, 0x20}, h[:]...))
	if err != nil {
		panic(err)
	}
	return api.NewCid(c)
}

// testPin returns a pin of testCid(i) named name.
func testPin(i int, name string) api.Pin {
	p := api.PinWithOpts(testCid(i), api.PinOptions{Name: name, ReplicationFactorMin: -1, ReplicationFactorMax: -1})
	p.Timestamp = time.Unix(1_700_000_000, int64(i)).UTC()
	return p
}

// pinset returns the pins of the peer's state as "cid name" lines, sorted.
func (p *testPeer) pinset() []string {
	p.t.Helper()
	var out []string
	err := p.db.List(context.Background(), func(pin api.Pin) error {
		out = append(out, pin.Cid.String()+" "+pin.Name)
		return nil
	})
	if err != nil {
		p.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// crdtPinset returns the pins of the peer's CRDT as "cid name" lines,
// sorted: the state must always end up equal to it.
func (p *testPeer) crdtPinset() []string {
	p.t.Helper()
	var out []string
	for key, v := range p.crdtValues() {
		var pin api.Pin
		if err := pin.UnmarshalBinary(v); err != nil {
			p.t.Fatalf("%s: value of %s: %v", p.name, key, err)
		}
		out = append(out, pin.Cid.String()+" "+pin.Name)
	}
	sort.Strings(out)
	return out
}

func (p *testPeer) crdtValues() map[string][]byte {
	p.t.Helper()
	res, err := p.c.crdt.Query(context.Background(), dsQueryAll)
	if err != nil {
		p.t.Fatal(err)
	}
	entries, err := res.Rest()
	if err != nil {
		p.t.Fatal(err)
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		out[e.Key] = e.Value
	}
	return out
}

// waitSamePinset waits until every peer's state and CRDT hold want.
func waitSamePinset(t testing.TB, timeout time.Duration, want []string, peers ...*testPeer) {
	t.Helper()
	for _, p := range peers {
		waitFor(t, timeout, p.name+" holds the expected pinset", func() bool {
			return equal(p.pinset(), want) && equal(p.crdtPinset(), want)
		})
	}
}

// waitConverged waits until every peer holds the same pinset in state and
// CRDT, and returns it.
func waitConverged(t testing.TB, timeout time.Duration, peers ...*testPeer) []string {
	t.Helper()
	var sets [][]string
	waitFor(t, timeout, "the peers converge", func() bool {
		sets = sets[:0]
		for _, p := range peers {
			sets = append(sets, p.pinset(), p.crdtPinset())
		}
		for _, s := range sets[1:] {
			if !equal(s, sets[0]) {
				return false
			}
		}
		return true
	})
	return sets[0]
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func lines(pins ...api.Pin) []string {
	out := make([]string, len(pins))
	for i, p := range pins {
		out[i] = p.Cid.String() + " " + p.Name
	}
	sort.Strings(out)
	return out
}

// logPins commits pins from workers goroutines and returns the elapsed
// time.
func logPins(t testing.TB, c *Consensus, pins []api.Pin, workers int) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan api.Pin)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				if err := c.LogPin(context.Background(), p); err != nil {
					select {
					case errs <- fmt.Errorf("log pin %s: %w", p.Cid, err):
					default:
					}
				}
			}
		}()
	}
	for _, p := range pins {
		next <- p
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return time.Since(start)
}
