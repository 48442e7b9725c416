package pintracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/ipfsconn"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
	"ipfs-cluster/internal/state"
)

type fixture struct {
	t       *testing.T
	kubo    *kubo.Daemon
	conn    *ipfsconn.Connector
	db      *state.DB
	tracker *Tracker
	self    peer.ID
	cfg     Config
	logs    lockedBuffer // the tracker's log
}

// lockedBuffer is a bytes.Buffer for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFixture(t *testing.T, tweak func(*Config, *ipfsconn.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, kubo: kubotest.Start(t)}
	id, err := config.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	f.self = id.ID
	ccfg := ipfsconn.Config{
		NodeMultiaddress:      f.kubo.APIAddr,
		IPFSRequestTimeout:    30 * time.Second,
		PinTimeout:            30 * time.Second,
		UnpinTimeout:          30 * time.Second,
		RepoGCTimeout:         30 * time.Second,
		MaxConcurrentRequests: 16,
	}
	f.cfg = Config{
		Peer: f.self, PeerName: "test", ConcurrentPins: 4, MaxQueueSize: 1000,
		PriorityMaxAge: time.Hour, PriorityMaxRetries: 5,
		RetryMinDelay: time.Minute, RetryMaxDelay: time.Hour,
	}
	if tweak != nil {
		tweak(&f.cfg, &ccfg)
	}
	if f.conn, err = ipfsconn.New(ccfg, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if f.db, err = state.Open(filepath.Join(t.TempDir(), "pebble"), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	f.start()
	t.Cleanup(func() {
		f.tracker.Close()
		f.db.Close()
	})
	return f
}

func (f *fixture) start() {
	f.tracker = New(f.cfg, f.conn, f.db, f.db, zerolog.New(&f.logs))
	if err := f.tracker.Start(); err != nil {
		f.t.Fatal(err)
	}
}

// addContent puts n small distinct files into kubo, unpinned.
func (f *fixture) addContent(n int) []api.Cid {
	f.t.Helper()
	var cids []api.Cid
	for _, s := range kubotest.AddFiles(f.t, f.kubo, n) {
		c, err := api.DecodeCid(s)
		if err != nil {
			f.t.Fatal(err)
		}
		cids = append(cids, c)
	}
	return cids
}

func (f *fixture) pin(c api.Cid, mutate func(*api.Pin)) api.Pin {
	f.t.Helper()
	p := api.PinWithOpts(c, api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1})
	p.Timestamp = time.Now()
	if mutate != nil {
		mutate(&p)
	}
	if err := f.db.Put(p); err != nil {
		f.t.Fatal(err)
	}
	if err := f.tracker.Track(p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// waitStatus waits until Status says want for c.
func (f *fixture) waitStatus(c api.Cid, want api.TrackerStatus, within time.Duration) api.PinInfo {
	f.t.Helper()
	return f.waitUntil(c, want, within, f.tracker.Status)
}

// waitRecorded waits until c's record says want. Unlike Status, which
// checks a pinned CID with kubo, it reads only the records.
func (f *fixture) waitRecorded(c api.Cid, want api.TrackerStatus, within time.Duration) api.PinInfo {
	f.t.Helper()
	return f.waitUntil(c, want, within, func(ctx context.Context, c api.Cid) (api.PinInfo, error) {
		found := api.PinInfo{Cid: c}
		err := f.tracker.StatusAll(ctx, api.TrackerStatusUndefined, func(pi api.PinInfo) error {
			if pi.Cid == c {
				found = pi
			}
			return nil
		})
		return found, err
	})
}

func (f *fixture) waitUntil(c api.Cid, want api.TrackerStatus, within time.Duration, status func(context.Context, api.Cid) (api.PinInfo, error)) api.PinInfo {
	f.t.Helper()
	deadline := time.Now().Add(within)
	var last api.PinInfo
	for time.Now().Before(deadline) {
		pi, err := status(f.t.Context(), c)
		if err != nil {
			f.t.Fatal(err)
		}
		if pi.Status == want {
			return pi
		}
		last = pi
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("%s: status %s (error %q) after %s, want %s", c, last.Status, last.Error, within, want)
	return last
}

// failWhileKuboDown pins c while kubo is stopped, waits for the pin to
// fail, and starts kubo again.
func (f *fixture) failWhileKuboDown(c api.Cid) {
	f.t.Helper()
	if err := f.kubo.Terminate(); err != nil {
		f.t.Fatal(err)
	}
	f.pin(c, nil)
	f.waitStatus(c, api.TrackerStatusPinError, 20*time.Second)
	if err := f.kubo.Restart(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) kuboPins(typ string) map[string]bool { return kubotest.Pins(f.t, f.kubo, typ) }

// pinAllAndWait pins every CID and waits until each is pinned.
func (f *fixture) pinAllAndWait(cids []api.Cid) {
	f.t.Helper()
	for _, c := range cids {
		f.pin(c, nil)
	}
	for _, c := range cids {
		f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)
	}
}

// requireHeld fails the test unless kubo pins every CID recursively.
func (f *fixture) requireHeld(cids []api.Cid) {
	f.t.Helper()
	held := f.kuboPins("recursive")
	for _, c := range cids {
		if !held[c.String()] {
			f.t.Fatalf("kubo does not hold %s recursively", c)
		}
	}
}

func TestPinAndUnpin(t *testing.T) {
	f := newFixture(t, nil)
	cids := f.addContent(20)
	for _, c := range cids {
		f.pin(c, nil)
	}
	for _, c := range cids {
		pi := f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)
		if pi.Peer != f.self || pi.PeerName != "test" {
			t.Fatalf("pin info peer: %+v", pi)
		}
	}
	f.requireHeld(cids)
	for _, c := range cids {
		p, _ := f.db.Get(c)
		if err := f.db.Delete(c); err != nil {
			t.Fatal(err)
		}
		if err := f.tracker.Untrack(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cids {
		f.waitStatus(c, api.TrackerStatusUnpinned, 30*time.Second)
	}
	held := f.kuboPins("recursive")
	for _, c := range cids {
		if held[c.String()] {
			t.Fatalf("kubo still holds %s after unpin", c)
		}
	}
}

func TestDirectModeMakesDirectPin(t *testing.T) {
	f := newFixture(t, nil)
	c := f.addContent(1)[0]
	f.pin(c, func(p *api.Pin) { p.Mode, p.MaxDepth = api.PinModeDirect, 0 })
	f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)
	if !f.kuboPins("direct")[c.String()] {
		t.Fatalf("kubo holds no direct pin of %s", c)
	}
}

func TestRemotePinNeverReachesKubo(t *testing.T) {
	f := newFixture(t, nil)
	other, _ := config.NewIdentity()
	c := f.addContent(1)[0]
	f.pin(c, func(p *api.Pin) {
		p.ReplicationFactorMin, p.ReplicationFactorMax = 1, 1
		p.Allocations = []peer.ID{other.ID}
	})
	f.waitStatus(c, api.TrackerStatusRemote, 5*time.Second)
	if f.kuboPins("recursive")[c.String()] {
		t.Fatal("kubo pinned a pin allocated elsewhere")
	}
}

func TestKuboDownThenBack(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *ipfsconn.Config) {
		c.RetryMinDelay, c.RetryMaxDelay = 500*time.Millisecond, time.Second
	})
	cids := f.addContent(5)
	if err := f.kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cids {
		f.pin(c, nil)
	}
	for _, c := range cids {
		pi := f.waitStatus(c, api.TrackerStatusPinError, 20*time.Second)
		if !strings.Contains(pi.Error, "kubo") || pi.AttemptCount < 1 {
			t.Fatalf("error not readable: %q (attempts %d)", pi.Error, pi.AttemptCount)
		}
	}
	var errs []api.Cid
	err := f.tracker.StatusAll(t.Context(), api.TrackerStatusPinError, func(pi api.PinInfo) error {
		errs = append(errs, pi.Cid)
		return nil
	})
	if err != nil || len(errs) != len(cids) {
		t.Fatalf("StatusAll(pin_error) = %d items, %v; want %d", len(errs), err, len(cids))
	}
	if err := f.kubo.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	// No manual step: the backoff retry brings them back.
	for _, c := range cids {
		f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)
	}
}

func TestRecoverRequeuesAtOnce(t *testing.T) {
	f := newFixture(t, nil) // retries wait a minute: only recover can help
	c := f.addContent(1)[0]
	f.failWhileKuboDown(c)
	n := 0
	if err := f.tracker.RecoverAll(t.Context(), true, func(api.PinInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("RecoverAll requeued %d items, want 1", n)
	}
	f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)
}

// TestKnownAbsentPinsSkipTheCheck checks that kubo is asked whether it
// holds a pin only when the tracker cannot know: a CID new to the tracker,
// or one kubo's pin list lacks, goes straight to pin/add; a pin retried
// after a failure is checked first, as kubo may have pinned it before the
// failure was seen.
//
// The waits read the records: Status would check the pinned CIDs itself.
func TestKnownAbsentPinsSkipTheCheck(t *testing.T) {
	p := &kuboProxy{}
	f := newFixture(t, p.proxied(t))
	cids := f.addContent(3)
	fresh, lost, failed := cids[0], cids[1], cids[2]
	f.pin(fresh, nil)
	f.pin(lost, nil)
	f.waitRecorded(fresh, api.TrackerStatusPinned, 30*time.Second)
	f.waitRecorded(lost, api.TrackerStatusPinned, 30*time.Second)
	if p.checked(fresh) || p.checked(lost) {
		t.Fatal("pins new to the tracker were checked with pin/ls")
	}

	if _, err := f.kubo.Run(t.Context(), "pin", "rm", lost.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.tracker.Reconcile(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	f.waitRecorded(lost, api.TrackerStatusPinned, 30*time.Second)
	if p.checked(lost) {
		t.Fatal("a pin kubo's pin list lacked was checked with pin/ls")
	}

	f.failWhileKuboDown(failed)
	if _, err := f.tracker.Recover(t.Context(), failed); err != nil {
		t.Fatal(err)
	}
	f.waitRecorded(failed, api.TrackerStatusPinned, 30*time.Second)
	if !p.checked(failed) {
		t.Fatal("a pin retried after a failure went to pin/add unchecked")
	}
	f.requireHeld(cids)
}

func TestStalledPinFails(t *testing.T) {
	f := newFixture(t, func(_ *Config, cc *ipfsconn.Config) { cc.PinTimeout = time.Second })
	// A CID whose blocks exist nowhere: kubo (no routing) waits forever.
	missing, _ := api.DecodeCid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	f.pin(missing, nil)
	pi := f.waitStatus(missing, api.TrackerStatusPinError, 20*time.Second)
	if !strings.Contains(pi.Error, "progress") {
		t.Fatalf("stall error %q does not say no progress", pi.Error)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	f := newFixture(t, nil)
	cids := f.addContent(10)
	if err := f.kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	f.tracker.Close()
	// Records say queued, as after a crash with work in flight.
	for _, c := range cids {
		p := api.PinWithOpts(c, api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1})
		if err := f.db.Put(p); err != nil {
			t.Fatal(err)
		}
		if err := f.db.SetStatus(c, state.LocalStatus{Status: api.TrackerStatusPinQueued, TS: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.kubo.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.start()
	for _, c := range cids {
		f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)
	}
}

func TestReconcileRepairsRecords(t *testing.T) {
	f := newFixture(t, nil)
	cids := f.addContent(3)
	held, lost, untracked := cids[0], cids[1], cids[2]
	f.pin(held, nil)
	f.pin(lost, nil)
	f.waitStatus(held, api.TrackerStatusPinned, 30*time.Second)
	f.waitStatus(lost, api.TrackerStatusPinned, 30*time.Second)
	// kubo loses one pin behind our back; another pin is in the state with
	// no record at all, already held by kubo.
	if _, err := f.kubo.Run(t.Context(), "pin", "rm", lost.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.kubo.Run(t.Context(), "pin", "add", untracked.String()); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Put(api.PinWithOpts(untracked, api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1})); err != nil {
		t.Fatal(err)
	}
	n, err := f.tracker.Reconcile(t.Context(), nil)
	if err != nil || n != 3 {
		t.Fatalf("Reconcile = %d, %v", n, err)
	}
	f.waitStatus(untracked, api.TrackerStatusPinned, 5*time.Second)
	f.waitStatus(lost, api.TrackerStatusPinned, 30*time.Second)
	if !f.kuboPins("recursive")[lost.String()] {
		t.Fatal("reconcile did not pin the lost item again")
	}
}

func TestQueueFullRecordsError(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *ipfsconn.Config) { c.MaxQueueSize = 1; c.ConcurrentPins = 1 })
	if err := f.kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	f.tracker.Close()
	f.tracker = New(f.cfg, f.conn, f.db, f.db, zerolog.Nop()) // not started: nothing drains
	cids := f.addContentOffline(3)
	var full int
	for _, c := range cids {
		p := api.PinWithOpts(c, api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1})
		if err := f.tracker.Track(p); errors.Is(err, ErrQueueFull) {
			full++
		}
	}
	if full != 2 {
		t.Fatalf("%d pins hit the full queue, want 2", full)
	}
	pi, err := f.tracker.Status(context.Background(), cids[2])
	if err != nil || pi.Status != api.TrackerStatusUnpinned && pi.Status != api.TrackerStatusPinError {
		t.Fatalf("status after full queue: %+v %v", pi, err)
	}
	rec, ok, _ := f.db.GetStatus(cids[2])
	if !ok || rec.Status != api.TrackerStatusPinError || !strings.Contains(rec.Error, "max_pin_queue_size") {
		t.Fatalf("full queue not recorded as an error: %+v", rec)
	}
}

// addContentOffline makes CIDs without kubo (their content is irrelevant).
func (f *fixture) addContentOffline(n int) []api.Cid {
	out := make([]api.Cid, n)
	for i := range out {
		out[i] = testCid(f.t, fmt.Sprintf("%s %d", f.t.Name(), i))
	}
	return out
}

func TestStatusAllCoversEveryState(t *testing.T) {
	f := newFixture(t, nil)
	cids := f.addContent(3)
	pinned, unpinning, untracked := cids[0], cids[1], cids[2]
	f.pin(pinned, nil)
	p := f.pin(unpinning, nil)
	f.waitStatus(pinned, api.TrackerStatusPinned, 30*time.Second)
	f.waitStatus(unpinning, api.TrackerStatusPinned, 30*time.Second)
	<-f.tracker.Reconciled()
	if err := f.kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Delete(unpinning); err != nil {
		t.Fatal(err)
	}
	if err := f.tracker.Untrack(p); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(unpinning, api.TrackerStatusUnpinError, 20*time.Second)
	// In the pinset with no record at all (as after losing unsynced writes).
	if err := f.db.Put(api.PinWithOpts(untracked, api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1})); err != nil {
		t.Fatal(err)
	}
	collect := func(filter api.TrackerStatus) map[string]api.TrackerStatus {
		got := map[string]api.TrackerStatus{}
		err := f.tracker.StatusAll(t.Context(), filter, func(pi api.PinInfo) error {
			if _, dup := got[pi.Cid.String()]; dup {
				t.Errorf("%s listed twice", pi.Cid)
			}
			got[pi.Cid.String()] = pi.Status
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	all := collect(api.TrackerStatusUndefined)
	// kubo is down: what it held is listed as cluster_error.
	want := map[string]api.TrackerStatus{
		pinned.String():    api.TrackerStatusClusterError,
		unpinning.String(): api.TrackerStatusUnpinError,
		untracked.String(): api.TrackerStatusUnexpectedlyUnpinned,
	}
	if len(all) != len(want) {
		t.Fatalf("StatusAll = %v, want %v", all, want)
	}
	for c, st := range want {
		if all[c] != st {
			t.Fatalf("StatusAll = %v, want %v", all, want)
		}
	}
	if got := collect(api.TrackerStatusUnpinError); len(got) != 1 || got[unpinning.String()] == 0 {
		t.Fatalf("unpin_error filter: %v", got)
	}
	if got := collect(api.TrackerStatusClusterError | api.TrackerStatusUnpinError); len(got) != 2 {
		t.Fatalf("cluster_error,unpin_error filter: %v", got)
	}
	if got := collect(api.TrackerStatusPinned); len(got) != 0 {
		t.Fatalf("pinned filter with kubo down: %v", got)
	}
}

// TestRetryPolicyDecides drives the retry decision: a short priority delay
// brings a pin back on its own once kubo returns, and a final failure
// stays in pin_error with the policy's reason until an operator recovers
// it; periodic recovery leaves it alone.
func TestRetryPolicyDecides(t *testing.T) {
	var calls atomic.Int64
	f := newFixture(t, func(c *Config, _ *ipfsconn.Config) {
		c.Retry = func(pin api.Pin, attempts int, cause error) (Retry, bool) {
			calls.Add(1)
			if pin.Name == "doomed" {
				return Retry{Class: RetryFailed, Reason: "too many attempts"}, true
			}
			return Retry{Class: RetryPriority, Delay: 200 * time.Millisecond}, true
		}
	})
	cids := f.addContent(2)
	retried, doomed := cids[0], cids[1]
	if err := f.kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	f.pin(retried, nil)
	f.pin(doomed, func(p *api.Pin) { p.Name = "doomed" })
	f.waitStatus(retried, api.TrackerStatusPinError, 20*time.Second)
	pi := f.waitStatus(doomed, api.TrackerStatusPinError, 20*time.Second)
	if !strings.Contains(pi.Error, "too many attempts") {
		t.Fatalf("final failure %q does not carry the policy's reason", pi.Error)
	}
	if err := f.kubo.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The retry policy's 200ms beats the configured one-minute backoff.
	f.waitStatus(retried, api.TrackerStatusPinned, 20*time.Second)
	n := 0
	if err := f.tracker.RecoverAll(t.Context(), false, func(api.PinInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("periodic recovery requeued %d final failures", n)
	}
	time.Sleep(time.Second) // no retry is scheduled either
	if pi, err := f.tracker.Status(t.Context(), doomed); err != nil || pi.Status != api.TrackerStatusPinError {
		t.Fatalf("final failure became %s (%v)", pi.Status, err)
	}
	if _, err := f.tracker.Recover(t.Context(), doomed); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(doomed, api.TrackerStatusPinned, 20*time.Second)
	if calls.Load() < 2 {
		t.Fatalf("retry policy consulted %d times", calls.Load())
	}
}

// TestRetryPolicyDelaySurvivesRestart: the delay the retry policy chose
// still holds after the tracker restarts, instead of the tracker's own
// backoff (here 100 ms).
func TestRetryPolicyDelaySurvivesRestart(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *ipfsconn.Config) {
		c.RetryMinDelay, c.RetryMaxDelay = 100*time.Millisecond, 100*time.Millisecond
		c.Retry = func(api.Pin, int, error) (Retry, bool) {
			return Retry{Class: RetryNormal, Delay: time.Hour}, true
		}
	})
	c := f.addContent(1)[0]
	if err := f.kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	f.pin(c, nil)
	f.waitStatus(c, api.TrackerStatusPinError, 20*time.Second)
	f.tracker.Close()
	if err := f.kubo.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.start()
	time.Sleep(2 * time.Second) // twenty built-in backoffs
	if pi, err := f.tracker.Status(t.Context(), c); err != nil || pi.Status != api.TrackerStatusPinError || pi.AttemptCount != 1 {
		t.Fatalf("after a restart: %s, %d attempts (%v); want pin_error, 1 attempt, the retry an hour away", pi.Status, pi.AttemptCount, err)
	}
	if _, err := f.tracker.Recover(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(c, api.TrackerStatusPinned, 20*time.Second)
}

// TestNewVersionOfAPinnedPin checks that a new version of a pin kubo
// already holds in the same mode (a new name, other allocations) leaves
// the status pinned without going through the queue, while a direct pin
// made recursive is pinned again.
func TestNewVersionOfAPinnedPin(t *testing.T) {
	f := newFixture(t, nil)
	cids := f.addContent(2)
	f.pin(cids[0], nil)
	f.waitStatus(cids[0], api.TrackerStatusPinned, 20*time.Second)
	f.pin(cids[0], func(p *api.Pin) { p.Name = "renamed" })
	if pi, err := f.tracker.Status(t.Context(), cids[0]); err != nil || pi.Status != api.TrackerStatusPinned {
		t.Fatalf("renamed pin: status %s (%v), want pinned at once", pi.Status, err)
	}

	f.pin(cids[1], func(p *api.Pin) { p.Mode, p.MaxDepth = api.PinModeDirect, 0 })
	f.waitStatus(cids[1], api.TrackerStatusPinned, 20*time.Second)
	if !f.kuboPins("direct")[cids[1].String()] {
		t.Fatal("direct pin not in kubo")
	}
	f.pin(cids[1], nil) // recursive now
	f.waitStatus(cids[1], api.TrackerStatusPinned, 20*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for !f.kuboPins("recursive")[cids[1].String()] {
		if time.Now().After(deadline) {
			t.Fatal("a direct pin made recursive was not pinned recursively")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStatusAndRecoverCheckKubo removes pins from kubo behind the
// tracker's back: the status of one CID asks kubo and says
// unexpectedly_unpinned, RecoverAll finds every lost pin through kubo's
// pin list and pins it again, and with kubo down the status of a pinned
// CID says it cannot be checked.
func TestStatusAndRecoverCheckKubo(t *testing.T) {
	f := newFixture(t, nil)
	cids := f.addContent(3)
	f.pinAllAndWait(cids)
	for _, c := range cids[:2] {
		if _, err := f.kubo.Run(t.Context(), "pin", "rm", c.String()); err != nil {
			t.Fatal(err)
		}
	}
	pi, err := f.tracker.Status(t.Context(), cids[0])
	if err != nil || pi.Status != api.TrackerStatusUnexpectedlyUnpinned || pi.Error != lostPin {
		t.Fatalf("status of a pin kubo lost: %s %q (%v), want unexpectedly_unpinned", pi.Status, pi.Error, err)
	}
	if pi, err := f.tracker.Status(t.Context(), cids[2]); err != nil || pi.Status != api.TrackerStatusPinned {
		t.Fatalf("status of a pin kubo holds: %s (%v)", pi.Status, err)
	}
	// A listing that asks for lost pins asks kubo too: the second one,
	// never asked about by CID, shows.
	var lost []string
	err = f.tracker.StatusAll(t.Context(), api.TrackerStatusUnexpectedlyUnpinned|api.TrackerStatusPinError, func(pi api.PinInfo) error {
		lost = append(lost, pi.Cid.String())
		return nil
	})
	slices.Sort(lost)
	if want := []string{cids[0].String(), cids[1].String()}; err != nil || !slices.Equal(lost, slices.Sorted(slices.Values(want))) {
		t.Fatalf("status filtered by unexpectedly_unpinned: %v (%v), want %v", lost, err, want)
	}

	var requeued []string
	err = f.tracker.RecoverAll(t.Context(), false, func(pi api.PinInfo) error {
		requeued = append(requeued, pi.Cid.String())
		return nil
	})
	slices.Sort(requeued)
	want := []string{cids[0].String(), cids[1].String()}
	slices.Sort(want)
	if err != nil || !slices.Equal(requeued, want) {
		t.Fatalf("RecoverAll requeued %v (%v), want the two pins kubo lost %v", requeued, err, want)
	}
	for _, c := range cids {
		f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)
	}
	f.requireHeld(cids)

	if err := f.kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	pi, err = f.tracker.Status(t.Context(), cids[2])
	if err != nil || pi.Status != api.TrackerStatusClusterError || !strings.Contains(pi.Error, "kubo") {
		t.Fatalf("status of a pinned CID with kubo down: %s %q (%v), want cluster_error naming kubo", pi.Status, pi.Error, err)
	}
	// The listing says the same of every pinned CID, whatever the filter.
	for _, filter := range []api.TrackerStatus{api.TrackerStatusUndefined, api.TrackerStatusClusterError, api.TrackerStatusPinned} {
		var listed []api.PinInfo
		err := f.tracker.StatusAll(t.Context(), filter, func(pi api.PinInfo) error {
			listed = append(listed, pi)
			return nil
		})
		want := len(cids)
		if filter == api.TrackerStatusPinned {
			want = 0
		}
		if err != nil || len(listed) != want {
			t.Fatalf("StatusAll(%s) with kubo down: %d items (%v), want %d", filter, len(listed), err, want)
		}
		for _, pi := range listed {
			if pi.Status != api.TrackerStatusClusterError || !strings.Contains(pi.Error, "cannot check the pin in kubo") {
				t.Fatalf("StatusAll(%s) with kubo down: %s %q, want cluster_error", filter, pi.Status, pi.Error)
			}
		}
	}
}

// TestPinModesKuboHoldsOtherwise: every check agrees on what kubo holds
// when its pin's mode differs from the cluster pin's. A direct pin of a
// CID kubo pins recursively is held (kubo will not weaken a pin, and the
// block is kept), and stays pinned through status, the listing of lost
// pins and recover. A recursive pin that kubo holds only directly is not
// held: its DAG is not, and recover pins it recursively.
func TestPinModesKuboHoldsOtherwise(t *testing.T) {
	f := newFixture(t, nil)
	cids := f.addContent(2)
	above, below := cids[0], cids[1]
	if _, err := f.kubo.Run(t.Context(), "pin", "add", above.String()); err != nil {
		t.Fatal(err)
	}
	f.pin(above, func(p *api.Pin) { p.Mode, p.MaxDepth = api.PinModeDirect, 0 })
	f.pinAllAndWait([]api.Cid{below})
	if _, err := f.kubo.Run(t.Context(), "pin", "rm", below.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.kubo.Run(t.Context(), "pin", "add", "--recursive=false", below.String()); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(above, api.TrackerStatusPinned, 30*time.Second)

	for range 2 { // the second time after recover
		if pi, err := f.tracker.Status(t.Context(), above); err != nil || pi.Status != api.TrackerStatusPinned {
			t.Fatalf("status of a direct pin kubo holds recursively: %s %q (%v), want pinned", pi.Status, pi.Error, err)
		}
		var lost []string
		err := f.tracker.StatusAll(t.Context(), api.TrackerStatusUnexpectedlyUnpinned, func(pi api.PinInfo) error {
			lost = append(lost, pi.Cid.String())
			return nil
		})
		if err != nil || len(lost) > 1 || len(lost) == 1 && lost[0] != below.String() {
			t.Fatalf("lost pins: %v (%v), want at most the recursive pin kubo holds directly", lost, err)
		}
		if err := f.tracker.RecoverAll(t.Context(), false, func(api.PinInfo) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if !f.kuboPins("recursive")[above.String()] {
		t.Fatal("kubo's own recursive pin was weakened")
	}
	f.waitStatus(below, api.TrackerStatusPinned, 30*time.Second)
	f.requireHeld([]api.Cid{below})
}

// TestHungKuboBoundsStatusAndRecover: with kubo hung (it keeps its
// connections but answers nothing), the status of a pinned CID and a
// recover of everything answer within kuboCheckTimeout, saying kubo is
// at fault, instead of waiting ipfs_request_timeout.
func TestHungKuboBoundsStatusAndRecover(t *testing.T) {
	f := newFixture(t, nil)
	c := f.addContent(1)[0]
	f.pinAllAndWait([]api.Cid{c})
	resume, err := f.kubo.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	defer resume()
	start := time.Now()
	var wg sync.WaitGroup
	var pi api.PinInfo
	var statusErr, recoverErr error
	wg.Go(func() { pi, statusErr = f.tracker.Status(t.Context(), c) })
	wg.Go(func() {
		recoverErr = f.tracker.RecoverAll(t.Context(), false, func(api.PinInfo) error { return nil })
	})
	wg.Wait()
	if took := time.Since(start); took > kuboCheckTimeout+5*time.Second {
		t.Errorf("status and recover with kubo hung took %s", took)
	}
	if statusErr != nil || pi.Status != api.TrackerStatusClusterError || !strings.Contains(pi.Error, "cannot check the pin in kubo") {
		t.Errorf("status with kubo hung: %s %q (%v), want cluster_error naming kubo", pi.Status, pi.Error, statusErr)
	}
	if recoverErr == nil || !strings.Contains(recoverErr.Error(), "kubo does not answer") {
		t.Errorf("recover all with kubo hung: %v, want an error naming kubo", recoverErr)
	}
}

// TestReleaseWaitsForHandoff moves a pinned CID to another peer: this
// peer keeps it in kubo, in unpin_error saying why, as long as Handoff
// refuses, and releases it (record remote) once Handoff agrees.
func TestReleaseWaitsForHandoff(t *testing.T) {
	var ready atomic.Bool
	f := newFixture(t, func(c *Config, _ *ipfsconn.Config) {
		c.RetryMinDelay, c.RetryMaxDelay = 100*time.Millisecond, 200*time.Millisecond
		c.Handoff = func(context.Context, api.Pin) error {
			if !ready.Load() {
				return errors.New("the new allocation is still pinning")
			}
			return nil
		}
	})
	other, _ := config.NewIdentity()
	c := f.addContent(1)[0]
	f.pin(c, nil)
	f.waitStatus(c, api.TrackerStatusPinned, 30*time.Second)

	f.pin(c, func(p *api.Pin) {
		p.ReplicationFactorMin, p.ReplicationFactorMax = 1, 1
		p.Allocations = []peer.ID{other.ID}
	})
	pi := f.waitRecorded(c, api.TrackerStatusUnpinError, 10*time.Second)
	if !strings.Contains(pi.Error, "still pinning") {
		t.Fatalf("release refused with %q, want Handoff's reason", pi.Error)
	}
	time.Sleep(500 * time.Millisecond) // a few retries
	f.requireHeld([]api.Cid{c})
	// An expected wait, not a fault: logged at info.
	for line := range strings.Lines(f.logs.String()) {
		if strings.Contains(line, "still pinning") && !strings.Contains(line, `"level":"info"`) {
			t.Fatalf("a release held back is logged as %s", line)
		}
	}
	if !strings.Contains(f.logs.String(), "still pinning") {
		t.Fatal("a release held back is not logged")
	}

	ready.Store(true)
	f.waitRecorded(c, api.TrackerStatusRemote, 10*time.Second)
	if f.kuboPins("recursive")[c.String()] {
		t.Fatal("kubo still holds the released pin")
	}
}
