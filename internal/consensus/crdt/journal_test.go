package crdt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

// segmentFiles lists the journal segments in dir (none when dir is gone).
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), journalSuffix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// openTestJournal opens the journal in dir and returns it with the
// operations it gave to replay.
func openTestJournal(t testing.TB, dir string, syncAcks bool, resolved uint64) (*journal, []op) {
	t.Helper()
	var pending []op
	j, err := openJournal(dir, syncAcks, resolved, zerolog.Nop(), func(ops []op) error {
		if len(ops) > groupCommitSize {
			t.Errorf("replay got %d operations at once, more than %d", len(ops), groupCommitSize)
		}
		pending = append(pending, ops...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.close() })
	return j, pending
}

func sameOps(a, b []op) bool {
	return slices.EqualFunc(a, b, func(x, y op) bool {
		return x.seq == y.seq && x.pin == y.pin && x.key == y.key && bytes.Equal(x.value, y.value)
	})
}

func TestJournalRoundTrip(t *testing.T) {
	for _, syncAcks := range []bool{false, true} {
		t.Run(fmt.Sprintf("fsync_acks=%t", syncAcks), func(t *testing.T) {
			dir := t.TempDir()
			j, pending := openTestJournal(t, dir, syncAcks, 0)
			if len(pending) != 0 {
				t.Fatalf("new journal holds %v", pending)
			}
			ops := []op{
				{pin: true, key: "/a", value: []byte("v1")},
				{pin: false, key: "/b"},
				{pin: true, key: "/" + strings.Repeat("k", 300), value: bytes.Repeat([]byte{0}, 1000)},
			}
			if err := j.append(ops[:1], nil); err != nil {
				t.Fatal(err)
			}
			var called bool
			if err := j.append(ops[1:], func() { called = true }); err != nil || !called {
				t.Fatalf("append: %v, then called: %t", err, called)
			}
			if ops[0].seq != 1 || ops[2].seq != 3 {
				t.Fatalf("numbered %d..%d, want 1..3", ops[0].seq, ops[2].seq)
			}
			if err := j.close(); err != nil {
				t.Fatal(err)
			}

			// Everything above resolved comes back, in order.
			j2, pending := openTestJournal(t, dir, syncAcks, 1)
			if !sameOps(pending, ops[1:]) {
				t.Fatalf("loaded %v, want %v", pending, ops[1:])
			}
			next := []op{{pin: true, key: "/c"}}
			if err := j2.append(next, nil); err != nil || next[0].seq != 4 {
				t.Fatalf("numbering does not continue: seq %d, %v", next[0].seq, err)
			}
			// Releasing up to 3 keeps the segment that holds 4.
			if err := j2.release(3); err != nil {
				t.Fatal(err)
			}
			if segs := segmentFiles(t, dir); len(segs) != 1 {
				t.Fatalf("segments after a partial release: %v", segs)
			}
			if err := j2.release(4); err != nil {
				t.Fatal(err)
			}
			if segs := segmentFiles(t, dir); len(segs) != 0 {
				t.Fatalf("segments after releasing everything: %v", segs)
			}
			// Numbering goes on from the resolved position once the
			// files are gone.
			_ = j2.close()
			j3, pending := openTestJournal(t, dir, syncAcks, 4)
			more := []op{{pin: true, key: "/d"}}
			if err := j3.append(more, nil); err != nil || len(pending) != 0 || more[0].seq != 5 {
				t.Fatalf("after release: pending %v, seq %d, %v", pending, more[0].seq, err)
			}
		})
	}
}

// TestJournalTornTail checks that a record cut short or damaged ends its
// segment, that what precedes it is kept, and that appends go on in a new
// segment.
func TestJournalTornTail(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"cut":      func(b []byte) []byte { return b[:len(b)-3] },
		"flipped":  func(b []byte) []byte { b[len(b)-2] ^= 0xff; return b },
		"garbage":  func(b []byte) []byte { return append(b, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5) },
		"zero len": func(b []byte) []byte { return append(b, make([]byte, recordHeader)...) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			j, _ := openTestJournal(t, dir, false, 0)
			ops := []op{{pin: true, key: "/a", value: []byte("one")}, {pin: true, key: "/b", value: []byte("two")}}
			for i := range ops {
				if err := j.append(ops[i:i+1], nil); err != nil {
					t.Fatal(err)
				}
			}
			_ = j.close()
			segs := segmentFiles(t, dir)
			path := filepath.Join(dir, segs[0])
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			j2, pending := openTestJournal(t, dir, false, 0)
			want := ops
			if name == "cut" || name == "flipped" {
				want = ops[:1]
			}
			if !sameOps(pending, want) {
				t.Fatalf("loaded %v, want %v", pending, want)
			}
			next := []op{{pin: false, key: "/c"}}
			if err := j2.append(next, nil); err != nil {
				t.Fatal(err)
			}
			_ = j2.close()
			_, pending = openTestJournal(t, dir, false, 0)
			if !sameOps(pending, append(slices.Clone(want), next...)) {
				t.Fatalf("after a new append: %v", pending)
			}
		})
	}
}

// TestJournalEmptySegment checks that a segment whose first write never
// completed is removed rather than given the same name again.
func TestJournalEmptySegment(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 1, journalSuffix)), []byte{7, 0}, 0o600); err != nil {
		t.Fatal(err)
	}
	j, pending := openTestJournal(t, dir, false, 0)
	ops := []op{{pin: true, key: "/a"}}
	if err := j.append(ops, nil); err != nil || len(pending) != 0 || ops[0].seq != 1 {
		t.Fatalf("pending %v, seq %d, %v", pending, ops[0].seq, err)
	}
}

// TestJournalSegments checks that a full segment is closed and released as
// a whole while appends run concurrently.
func TestJournalSegments(t *testing.T) {
	dir := t.TempDir()
	j, _ := openTestJournal(t, dir, true, 0)
	value := bytes.Repeat([]byte("x"), 4096)
	const writers, each = 8, 200 // 6.5 MB: at least one full segment
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := j.append([]op{{pin: true, key: fmt.Sprintf("/%d-%d", w, i), value: value}}, nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, dir); len(segs) < 2 {
		t.Fatalf("%d segments for %d MB", len(segs), writers*each*len(value)>>20)
	}
	_ = j.close()
	j2, pending := openTestJournal(t, dir, false, 0)
	if len(pending) != writers*each {
		t.Fatalf("loaded %d of %d operations", len(pending), writers*each)
	}
	for i, o := range pending {
		if o.seq != uint64(i+1) {
			t.Fatalf("operation %d has seq %d", i, o.seq)
		}
	}
	first := j2.full[0].last
	if err := j2.release(first); err != nil {
		t.Fatal(err)
	}
	_ = j2.close()
	_, pending = openTestJournal(t, dir, false, 0)
	if len(pending) != writers*each-int(first) || pending[0].seq != first+1 {
		t.Fatalf("after releasing the first segment: %d operations from %d", len(pending), pending[0].seq)
	}
}

// FuzzJournalSegment feeds arbitrary bytes as a segment: reading it must
// never fail or panic, and must keep exactly the intact records before the
// first damaged one.
func FuzzJournalSegment(f *testing.F) {
	var good []byte
	for i, o := range []op{{seq: 1, pin: true, key: "/a", value: []byte("v")}, {seq: 2, key: "/b"}} {
		good = appendRecord(good, &o)
		f.Add(good[:len(good)-i])
	}
	f.Add([]byte{})
	f.Add(make([]byte, recordHeader))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 1, journalSuffix)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		var pending []op
		j, err := openJournal(dir, false, 0, zerolog.Nop(), func(ops []op) error {
			pending = append(pending, ops...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer j.close()
		var last uint64
		for _, o := range pending {
			if o.seq <= last {
				t.Fatalf("seq %d after %d", o.seq, last)
			}
			last = o.seq
		}
		if j.seq != last {
			t.Fatalf("numbering continues from %d, last record %d", j.seq, last)
		}
	})
}

// TestJournalReleasedWhileRunning checks that a running peer drops the
// journal segments of committed operations: the journal does not grow
// with the pinset.
func TestJournalReleasedWhileRunning(t *testing.T) {
	p := newTestPeer(t, "A", testConfig())
	dir := journalDir(p.db, "/c")
	var pins []api.Pin
	for i := range 10000 { // 20 MB of records: five segments or more
		pins = append(pins, testPin(i, strings.Repeat("n", 2000)))
	}
	logPins(t, p.c, pins, 16)
	waitFor(t, 5*journalReleaseInterval, "the journal to be released", func() bool {
		return len(segmentFiles(t, dir)) <= 1
	})
	if got := p.c.resolved.Load(); got < uint64(len(pins)) {
		t.Fatalf("resolved up to %d after %d operations", got, len(pins))
	}
}

// importPins replaces the pinset of the stopped peer p with pins, as state
// import does.
func importPins(t *testing.T, p *testPeer, pins []api.Pin) {
	t.Helper()
	db, err := state.Open(p.dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	im, err := NewImporter(db, "/c")
	if err != nil {
		t.Fatal(err)
	}
	for _, pin := range pins {
		if err := im.Add(pin); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(im.Close(), db.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestImporterJournalsPins imports pins into a stopped peer and checks
// that its next start commits them, a delta per groupCommitSize, and that
// they reach a peer that joins later.
func TestImporterJournalsPins(t *testing.T) {
	n := 2*groupCommitSize + 7
	if testing.Short() {
		n = groupCommitSize + 7
	}
	if v := os.Getenv("CRDT_TEST_IMPORT_PINS"); v != "" {
		n, _ = strconv.Atoi(v) // to time large imports by hand
	}
	a := newTestPeer(t, "A", testConfig())
	logPins(t, a.c, []api.Pin{testPin(0, "replaced")}, 1)
	a.stop()
	pins := make([]api.Pin, n)
	for i := range pins {
		pins[i] = testPin(i+1, "imported")
	}
	importPins(t, a, pins)

	start := time.Now()
	a.start()
	t.Logf("%d imported pins committed by the start in %s", n, time.Since(start).Round(time.Millisecond))
	want := lines(pins...)
	if got := a.crdtPinset(); !equal(got, want) {
		t.Fatalf("after the start the CRDT holds %d pins, want the %d imported", len(got), n)
	}
	if s, _ := a.c.Stats(context.Background()); s.MaxHeight < uint64((n+groupCommitSize-1)/groupCommitSize) {
		t.Fatalf("DAG height %d for %d pins: want a delta per %d", s.MaxHeight, n, groupCommitSize)
	}
	b := newTestPeer(t, "B", testConfig())
	connect(t, a, b)
	waitSamePinset(t, 30*time.Second+time.Duration(n)*time.Millisecond, want, b)
}

// TestImportingAgainRestoresRemovedPins imports one file twice into a peer
// whose consensus was emptied, with a pin removed by another peer between
// the two: the second import brings it back on both. Byte for byte the
// same delta as the first import, the removal would still apply to it.
func TestImportingAgainRestoresRemovedPins(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	b := newTestPeer(t, "B", testConfig())
	connect(t, a, b)
	pins := []api.Pin{testPin(1, "kept"), testPin(2, "removed then restored"), testPin(3, "kept")}
	importInto := func() {
		t.Helper()
		a.stop()
		importPins(t, a, pins)
		a.start()
		connect(t, a, b)
	}
	importInto()
	waitSamePinset(t, 30*time.Second, lines(pins...), a, b)
	if err := b.c.LogUnpin(context.Background(), pins[1], time.Now()); err != nil {
		t.Fatal(err)
	}
	waitSamePinset(t, 30*time.Second, lines(pins[0], pins[2]), a, b)
	importInto()
	waitSamePinset(t, 30*time.Second, lines(pins...), a, b)
}

// TestPebbleJournalOfAnEarlierVersion checks that operations an earlier
// version left in its pebble journal are committed at start, then dropped.
func TestPebbleJournalOfAnEarlierVersion(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	a.stop()
	db, err := state.Open(a.dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	pins := []api.Pin{testPin(1, "left"), testPin(2, "behind")}
	for i, p := range pins {
		value, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		payload := appendRecord(nil, &op{seq: uint64(i + 1), pin: true, key: keyOf(p.Cid), value: value})[recordHeader:]
		_, w := binary.Uvarint(payload)
		if err := db.Pebble().Set(fmt.Appendf(nil, "/c/j/%020d", i+1), payload[w:], pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	a.start()
	if got, want := a.crdtPinset(), lines(pins...); !equal(got, want) {
		t.Fatalf("CRDT after the start: %v, want %v", got, want)
	}
	it, err := a.db.Pebble().NewIter(&pebble.IterOptions{LowerBound: []byte("/c/j/"), UpperBound: []byte("/c/j0")})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if it.First() {
		t.Fatalf("the old journal is still there: %q", it.Key())
	}
}

// An unpin's journal value keeps both of its times, over the whole range
// of time.Time; other bytes are no unpin value.
func TestUnpinValue(t *testing.T) {
	for _, c := range [][2]time.Time{
		{time.Unix(1700000000, 123456789), time.Unix(1700000001, 5)},
		{{}, time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		removed, at, ok := decodeUnpin(encodeUnpin(c[0], c[1]))
		if !ok || !removed.Equal(c[0]) || !at.Equal(c[1]) {
			t.Fatalf("round trip of %v: %v %v %t", c, removed, at, ok)
		}
	}
	valid := encodeUnpin(time.Unix(1, 2), time.Unix(3, 4))
	for _, bad := range [][]byte{nil, valid[:len(valid)-1], append(valid, 0), {0, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0, 0}} {
		if _, _, ok := decodeUnpin(bad); ok {
			t.Fatalf("%x decoded as an unpin value", bad)
		}
	}
}
