package crdt

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfig()
	bad.TrustedPeers = []string{"not-a-peer"}
	bad.DatastoreNamespace = "c/"
	if err := bad.Validate(); err == nil {
		t.Fatal("invalid config accepted")
	}
}

func TestTopicIsReferenceCompatible(t *testing.T) {
	cfg := DefaultConfig()
	topic, err := cfg.Topic()
	if err != nil {
		t.Fatal(err)
	}
	// base58 of the multihash (varint 0xd5, length 16) of md5("ipfs-cluster").
	if topic != "fzhnp2UwTBkgNabrJi1VanzwgN" {
		t.Fatalf("topic %s", topic)
	}
}

// TestThreePeersConverge commits pins, unpins, re-pins and updates on
// different peers and checks that all three end with the same pinset and
// that the Applier heard exactly the effective changes.
func TestThreePeersConverge(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	b := newTestPeer(t, "B", testConfig())
	c := newTestPeer(t, "C", testConfig())
	peers := []*testPeer{a, b, c}
	connect(t, peers...)

	var all []api.Pin
	for i, p := range peers {
		var mine []api.Pin
		for j := range 30 {
			mine = append(mine, testPin(i*30+j, "v1"))
		}
		start := time.Now()
		logPins(t, p.c, mine, 4)
		t.Logf("%s: 30 pins logged in %s", p.name, time.Since(start).Round(time.Millisecond))
		all = append(all, mine...)
	}
	start := time.Now()
	waitSamePinset(t, 10*time.Second, lines(all...), peers...)
	t.Logf("90 pins from 3 peers converged in %s", time.Since(start).Round(time.Millisecond))
	checkCalls(t, peers, all, 1, 0)

	// Each peer unpins ten pins another peer committed.
	var unpinned []api.Pin
	for i, p := range peers {
		victims := all[((i+1)%3)*30 : ((i+1)%3)*30+10]
		for _, pin := range victims {
			if err := p.c.LogUnpin(context.Background(), pin, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		unpinned = append(unpinned, victims...)
	}
	remaining := without(all, unpinned)
	start = time.Now()
	waitSamePinset(t, 10*time.Second, lines(remaining...), peers...)
	t.Logf("30 unpins from 3 peers converged in %s", time.Since(start).Round(time.Millisecond))
	checkCalls(t, peers, unpinned, 1, 1)

	// C re-pins five unpinned pins; A updates five pins of B; B pins the
	// current value of a pin again, which changes nothing.
	repinned := make([]api.Pin, 5)
	for i := range repinned {
		repinned[i] = testPin(30+i, "repinned")
		if err := c.c.LogPin(context.Background(), repinned[i]); err != nil {
			t.Fatal(err)
		}
	}
	updated := make([]api.Pin, 5)
	for i := range updated {
		updated[i] = testPin(45+i, "v2")
		if err := a.c.LogPin(context.Background(), updated[i]); err != nil {
			t.Fatal(err)
		}
	}
	same := testPin(80, "v1")
	if err := b.c.LogPin(context.Background(), same); err != nil {
		t.Fatal(err)
	}
	final := append(append(without(remaining, updated), repinned...), updated...)
	waitSamePinset(t, 10*time.Second, lines(final...), peers...)
	checkCalls(t, peers, repinned, 2, 1)
	checkCalls(t, peers, updated, 2, 0)
	checkCalls(t, peers, []api.Pin{same}, 1, 0)

	// Concurrent unpin and update of the same pins on two peers: whatever
	// wins, every peer must agree.
	done := make(chan error, 2)
	go func() {
		for i := 50; i < 55; i++ {
			if err := a.c.LogUnpin(context.Background(), testPin(i, "v1"), time.Now()); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for i := 50; i < 55; i++ {
			if err := b.c.LogPin(context.Background(), testPin(i, "raced")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	waitConverged(t, 10*time.Second, peers...)
	t.Logf("concurrent unpin/update converged in %s", time.Since(start).Round(time.Millisecond))
}

// checkCalls checks that every peer applied each pin the given number of
// times.
func checkCalls(t *testing.T, peers []*testPeer, pins []api.Pin, wantPins, wantUnpins int) {
	t.Helper()
	for _, p := range peers {
		for _, pin := range pins {
			if np, nu := p.app.calls(pin.Cid); np != wantPins || nu != wantUnpins {
				t.Errorf("%s: %s: %d ApplyPin, %d ApplyUnpin; want %d, %d", p.name, pin.Cid, np, nu, wantPins, wantUnpins)
			}
		}
	}
}

func without(pins, drop []api.Pin) []api.Pin {
	gone := map[string]bool{}
	for _, p := range drop {
		gone[p.Cid.String()] = true
	}
	var out []api.Pin
	for _, p := range pins {
		if !gone[p.Cid.String()] {
			out = append(out, p)
		}
	}
	return out
}

// TestLateJoinerCatchesUp starts a fourth peer after 1,000 pins: it must
// receive them all within 30 seconds.
func TestLateJoinerCatchesUp(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	b := newTestPeer(t, "B", testConfig())
	c := newTestPeer(t, "C", testConfig())
	connect(t, a, b, c)

	pins := make([]api.Pin, 1000)
	for i := range pins {
		pins[i] = testPin(i, "late")
	}
	took := logPins(t, a.c, pins, 16)
	start := time.Now()
	waitSamePinset(t, 30*time.Second, lines(pins...), a, b, c)
	t.Logf("1000 pins: logged on A in %s (%.0f pins/s), on B and C %s later",
		took.Round(time.Millisecond), 1000/took.Seconds(), time.Since(start).Round(time.Millisecond))

	d := newTestPeer(t, "D", testConfig())
	start = time.Now()
	connect(t, a, b, c, d)
	waitSamePinset(t, 30*time.Second, lines(pins...), d)
	t.Logf("late joiner D received 1000 pins in %s", time.Since(start).Round(time.Millisecond))
	checkCalls(t, []*testPeer{d}, pins, 1, 0)
}

// TestJoinerLearnsHeadsAtOnce sets the rebroadcast interval to an hour:
// a peer that joins learns the heads because the others announce them when
// it joins the topic, not from a rebroadcast.
func TestJoinerLearnsHeadsAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.RebroadcastInterval = time.Hour
	a := newTestPeer(t, "A", cfg)
	pins := make([]api.Pin, 100)
	for i := range pins {
		pins[i] = testPin(i, "welcome")
	}
	logPins(t, a.c, pins, 4)

	d := newTestPeer(t, "D", cfg)
	connect(t, a, d)
	waitSamePinset(t, 10*time.Second, lines(pins...), d)
}

// TestUntrustedPeerIsIgnored trusts only A on A and B: what C commits must
// not reach them until A trusts C.
func TestUntrustedPeerIsIgnored(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	a.restartWith(func(cfg *Config) { cfg.TrustedPeers = []string{a.id().String()} })
	b := newTestPeer(t, "B", testConfig())
	b.restartWith(func(cfg *Config) { cfg.TrustedPeers = []string{a.id().String()} })
	c := newTestPeer(t, "C", testConfig())
	connect(t, a, b, c)

	if !a.c.IsTrusted(a.id()) || a.c.IsTrusted(c.id()) || !b.c.IsTrusted(a.id()) || !c.c.IsTrusted(b.id()) {
		t.Fatal("trust does not follow trusted_peers")
	}
	fromC := testPin(1, "from C")
	fromA := testPin(2, "from A")
	if err := c.c.LogPin(context.Background(), fromC); err != nil {
		t.Fatal(err)
	}
	if err := a.c.LogPin(context.Background(), fromA); err != nil {
		t.Fatal(err)
	}
	waitSamePinset(t, 10*time.Second, lines(fromA), b)
	waitSamePinset(t, 10*time.Second, lines(fromA, fromC), c)
	// Several rebroadcasts of C's heads.
	time.Sleep(5 * testConfig().RebroadcastInterval)
	for _, p := range []*testPeer{a, b} {
		if got := p.pinset(); !equal(got, lines(fromA)) {
			t.Fatalf("%s merged a change of an untrusted peer: %v", p.name, got)
		}
		if np, _ := p.app.calls(fromC.Cid); np != 0 {
			t.Fatalf("%s applied a pin of an untrusted peer", p.name)
		}
	}

	a.c.Trust(c.id())
	waitSamePinset(t, 10*time.Second, lines(fromA, fromC), a)
}

// restartWith stops the peer, changes its config and starts it again on the
// same database and identity.
func (p *testPeer) restartWith(change func(*Config)) {
	p.t.Helper()
	p.stop()
	change(&p.cfg)
	p.start()
}

// TestPartitionHeals cuts four peers into two groups that keep committing,
// then heals the network: every peer must end with the same pinset.
func TestPartitionHeals(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	b := newTestPeer(t, "B", testConfig())
	c := newTestPeer(t, "C", testConfig())
	d := newTestPeer(t, "D", testConfig())
	all := []*testPeer{a, b, c, d}
	connect(t, all...)

	base := make([]api.Pin, 40)
	for i := range base {
		base[i] = testPin(i, "base")
	}
	logPins(t, a.c, base, 4)
	waitSamePinset(t, 10*time.Second, lines(base...), all...)

	left, right := []*testPeer{a, b}, []*testPeer{c, d}
	for _, l := range left {
		for _, r := range right {
			l.gater.block(r.id())
			r.gater.block(l.id())
			_ = l.h.Network().ClosePeer(r.id())
		}
	}
	for _, p := range all {
		waitFor(t, 10*time.Second, p.name+" sees only its group", func() bool {
			ids, err := p.c.Peers(context.Background())
			return err == nil && len(ids) == 2
		})
	}

	leftPins, rightPins := make([]api.Pin, 50), make([]api.Pin, 50)
	for i := range 50 {
		leftPins[i] = testPin(100+i, "left")
		rightPins[i] = testPin(200+i, "right")
	}
	logPins(t, a.c, leftPins[:25], 4)
	logPins(t, b.c, leftPins[25:], 4)
	logPins(t, c.c, rightPins[:25], 4)
	logPins(t, d.c, rightPins[25:], 4)
	for i := range 5 {
		if err := b.c.LogUnpin(context.Background(), base[i], time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := d.c.LogUnpin(context.Background(), base[10+i], time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// The same pin unpinned on the left and updated on the right.
	contested := base[20]
	if err := a.c.LogUnpin(context.Background(), contested, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := c.c.LogPin(context.Background(), testPin(20, "contested")); err != nil {
		t.Fatal(err)
	}
	leftSet := waitConverged(t, 10*time.Second, left...)
	rightSet := waitConverged(t, 10*time.Second, right...)
	if equal(leftSet, rightSet) {
		t.Fatal("the partition did not separate the groups")
	}

	for _, p := range all {
		p.gater.unblockAll()
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, l := range left {
		for _, r := range right {
			if err := l.h.Connect(ctx, r.addrInfo()); err != nil {
				t.Fatal(err)
			}
		}
	}
	healed := waitConverged(t, 30*time.Second, all...)
	t.Logf("after healing, 4 peers converged on %d pins in %s", len(healed), time.Since(start).Round(time.Millisecond))

	gone := append(append([]api.Pin{contested}, base[:5]...), base[10:15]...)
	want := lines(append(append(without(base, gone), leftPins...), rightPins...)...)
	if got := dropCid(healed, testPin(20, "")); !equal(got, want) {
		t.Fatalf("healed pinset: %d pins, want %d", len(got), len(want))
	}
}

// dropCid drops the line of pin's CID from a sorted pinset.
func dropCid(set []string, pin api.Pin) []string {
	var out []string
	prefix := pin.Cid.String() + " "
	for _, l := range set {
		if len(l) < len(prefix) || l[:len(prefix)] != prefix {
			out = append(out, l)
		}
	}
	return out
}

// TestApplyRetriedAfterRestart makes the Applier fail once: the committed
// change stays pending and is applied on the next start.
func TestApplyRetriedAfterRestart(t *testing.T) {
	p := newTestPeer(t, "A", testConfig())
	failing := &failingApplier{testApplier: p.app, fail: testCid(7)}
	p.c.applies.applier = failing
	pin := testPin(7, "retried")
	if err := p.c.LogPin(context.Background(), pin); err != nil {
		t.Fatal(err)
	}
	if got := p.pinset(); len(got) != 0 {
		t.Fatalf("state holds %v after a failed apply", got)
	}
	p.restartWith(func(*Config) {})
	waitSamePinset(t, 5*time.Second, lines(pin), p)
}

// TestApplyRetriedWhileRunning makes the Applier fail twice: the change is
// applied on the second retry, without a restart.
func TestApplyRetriedWhileRunning(t *testing.T) {
	p := newTestPeer(t, "A", testConfig())
	failing := &failingApplier{testApplier: p.app, fail: testCid(7), times: 2}
	p.c.applies.applier = failing
	pin := testPin(7, "retried")
	if err := p.c.LogPin(context.Background(), pin); err != nil {
		t.Fatal(err)
	}
	waitSamePinset(t, 3*applyRetry, lines(pin), p)
	if n := failing.failures(); n != 2 {
		t.Fatalf("applier failed %d times, want 2", n)
	}
}

// failingApplier fails the pins of one CID: its first times calls, or all
// of them when times is 0.
type failingApplier struct {
	*testApplier
	fail  api.Cid
	times int

	mu     sync.Mutex
	failed int
}

func (a *failingApplier) ApplyPin(p api.Pin) error {
	if p.Cid.Equals(a.fail.Cid) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.times == 0 || a.failed < a.times {
			a.failed++
			return errors.New("disk on fire")
		}
	}
	return a.testApplier.ApplyPin(p)
}

func (a *failingApplier) failures() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failed
}

// TestBatchingCommitsOnSizeAndAge checks both commit triggers and the queue
// bound.
func TestBatchingCommitsOnSizeAndAge(t *testing.T) {
	cfg := testConfig()
	cfg.Batching = BatchingConfig{MaxBatchSize: 10, MaxBatchAge: 300 * time.Millisecond, MaxQueueSize: 25}
	a := newTestPeer(t, "A", cfg)
	b := newTestPeer(t, "B", testConfig())
	connect(t, a, b)

	pins := make([]api.Pin, 10)
	for i := range pins {
		pins[i] = testPin(i, "sized")
	}
	start := time.Now()
	logPins(t, a.c, pins, 1)
	waitSamePinset(t, 5*time.Second, lines(pins...), a, b)
	t.Logf("a full batch of 10 reached both peers in %s", time.Since(start).Round(time.Millisecond))

	one := testPin(100, "aged")
	start = time.Now()
	if err := a.c.LogPin(context.Background(), one); err != nil {
		t.Fatal(err)
	}
	waitSamePinset(t, 5*time.Second, lines(append(pins, one)...), a)
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("a lone pin was committed after %s, before max_batch_age", waited)
	}

	// A queue that commits only in an hour holds max_queue_size pins.
	cfg.Batching = BatchingConfig{MaxBatchSize: 1000, MaxBatchAge: time.Hour, MaxQueueSize: 3}
	q := newTestPeer(t, "Q", cfg)
	for i := range 3 {
		if err := q.c.LogPin(context.Background(), testPin(i, "queued")); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.c.LogPin(context.Background(), testPin(3, "refused")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("full queue: %v", err)
	}
	if s, err := q.c.Stats(context.Background()); err != nil || s.Batched != 3 {
		t.Fatalf("stats %+v, %v", s, err)
	}
}

// TestShutdownCommitsBatch checks that a clean stop commits the pending
// batch, leaves no journal, and needs no repair on the next start.
func TestShutdownCommitsBatch(t *testing.T) {
	cfg := testConfig()
	cfg.Batching = BatchingConfig{MaxBatchSize: 1000, MaxBatchAge: time.Hour, MaxQueueSize: 1000}
	p := newTestPeer(t, "A", cfg)
	pins := []api.Pin{testPin(1, "x"), testPin(2, "y")}
	logPins(t, p.c, pins, 2)
	if got := p.pinset(); len(got) != 0 {
		t.Fatalf("committed before the batch was due: %v", got)
	}
	p.stop()
	db, err := state.Open(p.dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, journalDir(db, "/c")); len(segs) != 0 {
		t.Fatalf("journal after a clean stop: %v", segs)
	}
	if db.Len() != len(pins) {
		t.Fatalf("%d pins applied before the stop, want %d", db.Len(), len(pins))
	}
	if _, _, err := db.Pebble().Get([]byte("/c/o")); !errors.Is(err, pebble.ErrNotFound) {
		t.Fatalf("open marker after a clean stop: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	p.start()
	if s, _ := p.c.Stats(context.Background()); s.Dirty {
		t.Fatal("dirty after a clean stop")
	}
	waitSamePinset(t, 5*time.Second, lines(pins...), p)

	if err := p.c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.c.LogPin(context.Background(), testPin(3, "late")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("LogPin after Shutdown: %v", err)
	}
	if err := p.c.Shutdown(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestCleanupDropsOnlyTheNamespace(t *testing.T) {
	p := newTestPeer(t, "A", testConfig())
	pins := []api.Pin{testPin(1, "x"), testPin(2, "y")}
	logPins(t, p.c, pins, 2)
	p.stop()
	db, err := state.Open(p.dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(db, "/c"); err != nil {
		t.Fatal(err)
	}
	it, err := db.Pebble().NewIter(&pebble.IterOptions{LowerBound: []byte("/"), UpperBound: []byte{0xff}})
	if err != nil {
		t.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
		t.Errorf("key left after cleanup: %q", it.Key())
	}
	_ = it.Close()
	if _, err := os.Stat(journalDir(db, "/c")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal folder after cleanup: %v", err)
	}
	if db.Len() != 2 {
		t.Fatalf("cleanup touched the state: %d pins", db.Len())
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	p.start()
	if got := p.crdtPinset(); len(got) != 0 {
		t.Fatalf("crdt after cleanup: %v", got)
	}
}
