package crdt

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

// A change committed later than it was made (it waited in a batch, or in
// the journal across a crash) gives way to a version of the pin made after
// it that the peer merged meanwhile: an update, a repin and an unpin alike.
// A change made knowing the version it replaces stands against it, even
// when its clock is behind.
func TestLateChangeGivesWayToALaterVersion(t *testing.T) {
	batched := testConfig()
	batched.Batching = BatchingConfig{MaxBatchSize: 1000, MaxBatchAge: 300 * time.Millisecond, MaxQueueSize: 1000}
	a := newTestPeer(t, "A", batched)
	b := newTestPeer(t, "B", testConfig())
	connect(t, a, b)
	ctx := context.Background()

	t0 := time.Now().UTC()
	version := func(i int, name string, made, replaced time.Time) api.Pin {
		p := testPin(i, name)
		p.Timestamp, p.Replaced = made, replaced
		return p
	}
	const updated, unpinned, moved, knowing = 0, 1, 2, 3
	var first, later []api.Pin
	for i := range 4 {
		first = append(first, version(i, "first", t0, time.Time{}))
		later = append(later, version(i, "later", t0.Add(2*time.Second), t0))
	}
	logPins(t, b.c, first, 1)
	waitSamePinset(t, 5*time.Second, lines(first...), a, b)
	logPins(t, b.c, later, 1)
	waitSamePinset(t, 5*time.Second, lines(later...), a, b)

	// A's changes, made at t0+1s but committed only now: only the one
	// that names B's later version as the one it replaces stands.
	repin := first[moved]
	repin.Moved = true
	stands := version(knowing, "knew the later one", t0.Add(time.Second), later[knowing].Timestamp)
	logPins(t, a.c, []api.Pin{version(updated, "earlier", t0.Add(time.Second), t0), repin, stands}, 1)
	if err := a.c.LogUnpin(ctx, first[unpinned], t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	want := lines(later[updated], later[unpinned], later[moved], stands)
	waitSamePinset(t, 5*time.Second, want, a, b)
	time.Sleep(500 * time.Millisecond) // one batch age more: nothing else arrives
	for _, p := range []*testPeer{a, b} {
		if got := p.pinset(); !equal(got, want) {
			t.Fatalf("%s: pinset %v, want %v", p.name, got, want)
		}
		for i := range 3 {
			if pins, unpins := p.app.calls(testCid(i)); pins != 2 || unpins != 0 {
				t.Errorf("%s: cid %d applied %d pins and %d unpins, want the 2 versions of B only", p.name, i, pins, unpins)
			}
		}
	}
}

// The journal's operations that a restart commits again are told to the
// Applier before their commit, with the times they were made at; repins
// and unpins journaled without their times are not.
func TestReplayResumesTheJournaledChanges(t *testing.T) {
	dir := t.TempDir()
	db, err := state.Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	jdir := journalDir(db, testConfig().DatastoreNamespace)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 5).UTC()
	update := testPin(1, "update")
	update.Timestamp, update.Replaced = t0.Add(time.Second), t0
	repin := testPin(2, "repin")
	repin.Moved = true
	value := func(p api.Pin) []byte {
		v, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	j, _ := openTestJournal(t, jdir, false, 0)
	ops := []op{
		{pin: true, key: keyOf(update.Cid), value: value(update)},
		{pin: true, key: keyOf(repin.Cid), value: value(repin)},
		{key: keyOf(testCid(3)), value: encodeUnpin(t0, t0.Add(3*time.Second))},
		{key: keyOf(testCid(4))}, // an older journal's unpin
	}
	if err := j.append(ops, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}

	p := newTestPeerIn(t, "A", testConfig(), dir)
	n := func(t time.Time) string { return fmt.Sprint(t.UnixNano()) }
	want := []string{
		fmt.Sprint(update.Cid, " ", n(t0), " ", n(update.Timestamp), " ", n(update.Timestamp)),
		fmt.Sprint(testCid(3), " ", n(t0), " 0 ", n(t0.Add(3*time.Second))),
	}
	p.app.mu.Lock()
	got := slices.Clone(p.app.resumed)
	p.app.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("resumed %q, want %q", got, want)
	}
	waitSamePinset(t, 5*time.Second, lines(update, repin), p)
}
