package state

import (
	"bufio"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	for i := range 20 {
		if err := db.Put(testPin(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Delete(testCid(3)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := db.SetStatus(testCid(i), LocalStatus{Status: api.TrackerStatusPinned}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetStatus(testCid(7), LocalStatus{Status: api.TrackerStatusPinError, Error: "boom", Attempts: 2}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTestDB(t, dir)
	defer db.Close()
	if got := db.Len(); got != 19 {
		t.Fatalf("Len after reopen = %d, want 19", got)
	}
	for i := range 20 {
		p, err := db.Get(testCid(i))
		if i == 3 {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted pin: err = %v, want ErrNotFound", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, testPin(i)) {
			t.Fatalf("pin %d after reopen:\n got %+v\nwant %+v", i, p, testPin(i))
		}
	}
	want := map[api.TrackerStatus]int{api.TrackerStatusPinned: 5, api.TrackerStatusPinError: 1}
	if got := db.CountStatus(); !reflect.DeepEqual(got, want) {
		t.Fatalf("CountStatus after reopen = %v, want %v", got, want)
	}
	s, ok, err := db.GetStatus(testCid(7))
	if err != nil || !ok || s.Error != "boom" || s.Attempts != 2 {
		t.Fatalf("GetStatus after reopen = %+v %v %v", s, ok, err)
	}
}

func TestOverwriteAndLen(t *testing.T) {
	db := newTestDB(t)
	c := testCid(1)
	first := testPin(1)
	second := testPin(1)
	second.Name = "renamed"
	mustPut(t, db, first)
	mustPut(t, db, second)
	if db.Len() != 1 {
		t.Fatalf("Len after overwrite = %d, want 1", db.Len())
	}
	if p, err := db.Get(c); err != nil || p.Name != "renamed" {
		t.Fatalf("Get after overwrite = %q, %v", p.Name, err)
	}
	if ok, err := db.Has(c); err != nil || !ok {
		t.Fatalf("Has = %v, %v", ok, err)
	}

	// A batch with new, existing and repeated CIDs counts each new CID once.
	mustPut(t, db, testPin(1), testPin(2), testPin(2), testPin(3))
	if db.Len() != 3 {
		t.Fatalf("Len after PutMany = %d, want 3", db.Len())
	}

	for range 2 {
		if err := db.Delete(c); err != nil {
			t.Fatal(err)
		}
	}
	if db.Len() != 2 {
		t.Fatalf("Len after delete = %d, want 2", db.Len())
	}
	_, err := db.Get(c)
	if !errors.Is(err, ErrNotFound) || err.Error() != "pin is not part of the pinset" {
		t.Fatalf("Get of deleted pin: %v", err)
	}
	if ok, err := db.Has(c); err != nil || ok {
		t.Fatalf("Has of deleted pin = %v, %v", ok, err)
	}
	if err := db.Put(api.Pin{}); !errors.Is(err, ErrUndefinedCid) {
		t.Fatalf("Put of undefined pin: %v", err)
	}
	if err := db.PutMany([]api.Pin{testPin(9), {}}); !errors.Is(err, ErrUndefinedCid) || db.Len() != 2 {
		t.Fatalf("PutMany with an undefined pin: %v, Len %d", err, db.Len())
	}
	// Any time.Time survives, and an empty origin is dropped.
	odd := testPin(9)
	odd.Origins = append(odd.Origins, api.Multiaddr{})
	odd.ExpireAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	odd.Timestamp = time.Unix(0, 0).UTC()
	if err := db.Put(odd); err != nil {
		t.Fatal(err)
	}
	got, err := db.Get(odd.Cid)
	if err != nil || !got.ExpireAt.Equal(odd.ExpireAt) || !got.Timestamp.Equal(odd.Timestamp) || len(got.Origins) != len(odd.Origins)-1 {
		t.Fatalf("odd pin stored as %+v, %v", got, err)
	}
	if err := db.Delete(odd.Cid); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get(api.CidUndef); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of undefined cid: %v", err)
	}
}

func TestConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	const writers, perWriter, distinct = 16, 40, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				// Writers overlap on the same CIDs, to test the counting
				// of concurrent Puts of one CID.
				n := (w*7 + i) % distinct
				var err error
				if i%10 == 9 {
					err = db.PutMany([]api.Pin{testPin(n), testPin((n + 1) % distinct)})
				} else {
					err = db.Put(testPin(n))
				}
				if err != nil {
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
	n := 0
	if err := db.List(t.Context(), func(api.Pin) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if db.Len() != n || n != distinct {
		t.Fatalf("Len = %d, listed %d, want %d", db.Len(), n, distinct)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir)
	defer db.Close()
	if db.Len() != distinct {
		t.Fatalf("Len after reopen = %d, want %d", db.Len(), distinct)
	}
}

func TestListOrderAndEarlyStop(t *testing.T) {
	db := newTestDB(t)
	var want []string
	for _, i := range rand.Perm(300) {
		mustPut(t, db, testPin(i))
		want = append(want, testCid(i).KeyString())
	}
	slices.Sort(want)

	var got []string
	if err := db.List(t.Context(), func(p api.Pin) error {
		got = append(got, p.Cid.KeyString())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatal("List is not in CID-byte order or misses pins")
	}

	stop := errors.New("stop")
	calls := 0
	err := db.List(t.Context(), func(api.Pin) error {
		calls++
		if calls == 10 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 10 {
		t.Fatalf("early stop: err %v after %d calls, want stop after 10", err, calls)
	}

	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	err = db.List(ctx, func(api.Pin) error {
		calls++
		if calls == 5 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 5 {
		t.Fatalf("cancel: err %v after %d calls", err, calls)
	}
}

func TestListSnapshot(t *testing.T) {
	db := newTestDB(t)
	for i := range 10 {
		mustPut(t, db, testPin(i))
	}
	n := 0
	err := db.List(t.Context(), func(p api.Pin) error {
		n++
		// Writes made during the listing are not part of it.
		return errors.Join(db.Put(testPin(100+n)), db.Delete(testCid(9-n+1)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("listed %d pins, want the 10 of the snapshot", n)
	}
}

func TestListType(t *testing.T) {
	db := newTestDB(t)
	types := []api.PinType{api.DataType, api.MetaType, api.ClusterDAGType, api.ShardType}
	want := map[api.PinType]int{}
	for i := range 40 {
		p := testPin(i)
		p.Type = types[i%len(types)]
		want[p.Type]++
		mustPut(t, db, p)

		// The fast path agrees with the decoder.
		b, err := p.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if typ, ok := peekPinType(b); !ok || typ != p.Type {
			t.Fatalf("peekPinType = %v %v, want %v", typ, ok, p.Type)
		}
	}
	for _, filter := range []api.PinType{api.MetaType, api.ShardType | api.ClusterDAGType, api.AllType, 0} {
		got := map[api.PinType]int{}
		if err := db.ListType(t.Context(), filter, func(p api.Pin) error { got[p.Type]++; return nil }); err != nil {
			t.Fatal(err)
		}
		exp := map[api.PinType]int{}
		for typ, n := range want {
			if typ&filter != 0 {
				exp[typ] = n
			}
		}
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("ListType(%b) = %v, want %v", filter, got, exp)
		}
	}
	for _, v := range [][]byte{nil, {2}, {1}, {1, 5, 0}, {1, 0x80}} {
		if _, ok := peekPinType(v); ok {
			t.Fatalf("peekPinType(%x) accepted a malformed value", v)
		}
	}
}

func TestClear(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	for i := range 50 {
		mustPut(t, db, testPin(i))
		if err := db.SetStatus(testCid(i), LocalStatus{Status: api.TrackerStatusPinned}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Clear(t.Context()); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if db.Len() != 0 || len(db.CountStatus()) != 0 {
			t.Fatalf("%s: Len %d, CountStatus %v", when, db.Len(), db.CountStatus())
		}
		n := 0
		count := func(api.Cid, LocalStatus) error { n++; return nil }
		if err := errors.Join(
			db.List(t.Context(), func(api.Pin) error { n++; return nil }),
			db.ListByStatus(t.Context(), 0, count),
			db.ListByStatus(t.Context(), api.TrackerStatusPinned, count),
		); err != nil || n != 0 {
			t.Fatalf("%s: %d entries left, %v", when, n, err)
		}
	}
	check("after Clear")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir)
	defer db.Close()
	check("after reopen")
	mustPut(t, db, testPin(1))
	if db.Len() != 1 {
		t.Fatalf("Len after Clear and Put = %d", db.Len())
	}
}

func TestClosed(t *testing.T) {
	db := openTestDB(t, t.TempDir())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, getErr := db.Get(testCid(1))
	_, _, statusErr := db.GetStatus(testCid(1))
	for i, err := range []error{
		db.Close(),
		db.Put(testPin(1)),
		db.Delete(testCid(1)),
		getErr,
		statusErr,
		db.SetStatus(testCid(1), LocalStatus{Status: api.TrackerStatusPinned}),
		db.List(t.Context(), func(api.Pin) error { return nil }),
		db.ListByStatus(t.Context(), 0, func(api.Cid, LocalStatus) error { return nil }),
		db.Clear(t.Context()),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call %d after Close: %v, want ErrClosed", i, err)
		}
	}
}

func TestFormatVersion(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	if err := db.Pebble().Set([]byte{prefixSys, metaFormat}, []byte{9}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, db.log); err == nil || !strings.Contains(err.Error(), "unsupported format version") {
		t.Fatalf("Open of a newer format: %v", err)
	}
}

const (
	writerEnv     = "STATE_TEST_WRITER_DIR"
	writerModeEnv = "STATE_TEST_WRITER_MODE"
	// appliedWrites is how many pins the writer of applied pins writes
	// before it goes quiet: a few KiB, far less than a WAL block.
	appliedWrites = 20
)

// runWriter puts pins into the database in dir and prints the number of
// each pin once it is written, until it is killed. In mode "applied" it
// writes appliedWrites pins as applied consensus deltas and their tracker
// records, both unsynced, and then waits to be killed.
func runWriter(dir, mode string) int {
	db, err := Open(dir, zerolog.Nop())
	if err != nil {
		return 1
	}
	for i := 0; ; i++ {
		if mode == "applied" {
			if i == appliedWrites {
				time.Sleep(time.Minute)
				return 1
			}
			err = errors.Join(db.PutApplied(testPin(i)), db.SetStatus(testCid(i), LocalStatus{Status: api.TrackerStatusPinned}))
		} else {
			err = db.Put(testPin(i))
		}
		if err != nil {
			return 1
		}
		if _, err := os.Stdout.WriteString(strconv.Itoa(i) + "\n"); err != nil {
			return 1
		}
	}
}

// startWriter runs runWriter in a child process and returns its command
// and its output.
func startWriter(t *testing.T, dir, mode string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerEnv+"="+dir, writerModeEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewScanner(out)
}

// TestKillDurability kills a writer with SIGKILL and checks that every Put
// it acknowledged is in the database.
func TestKillDurability(t *testing.T) {
	dir := t.TempDir()
	cmd, sc := startWriter(t, dir, "")
	acked := -1
	var err error
	for acked < 300 && sc.Scan() {
		if acked, err = strconv.Atoi(sc.Text()); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked < 300 {
		t.Fatalf("writer stopped after %d pins", acked)
	}

	db := openTestDB(t, dir)
	defer db.Close()
	for i := 0; i <= acked; i++ {
		if ok, err := db.Has(testCid(i)); err != nil || !ok {
			t.Fatalf("acknowledged pin %d lost after kill -9 (%v)", i, err)
		}
	}
	n := 0
	if err := db.List(t.Context(), func(api.Pin) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if db.Len() != n {
		t.Fatalf("Len %d disagrees with the %d pins listed after kill -9", db.Len(), n)
	}
}

// TestKillAfterQuietWrites kills, with SIGKILL, a process that wrote a few
// pins and records unsynced and then went quiet: a moment later they must
// have reached the disk, although nothing synced them explicitly.
func TestKillAfterQuietWrites(t *testing.T) {
	dir := t.TempDir()
	cmd, sc := startWriter(t, dir, "applied")
	written := -1
	for written < appliedWrites-1 && sc.Scan() {
		var err error
		if written, err = strconv.Atoi(sc.Text()); err != nil {
			t.Fatal(err)
		}
	}
	if written < appliedWrites-1 {
		t.Fatalf("writer stopped after %d pins", written)
	}
	// Ten flush intervals: room for a loaded machine to schedule the
	// flusher; without it nothing reaches the file however long we wait.
	time.Sleep(10 * walFlushEvery)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	db := openTestDB(t, dir)
	defer db.Close()
	for i := range appliedWrites {
		if ok, err := db.Has(testCid(i)); err != nil || !ok {
			t.Fatalf("pin %d, written %s before kill -9, is lost (%v)", i, 10*walFlushEvery, err)
		}
		if st, ok, err := db.GetStatus(testCid(i)); err != nil || !ok || st.Status != api.TrackerStatusPinned {
			t.Fatalf("record of pin %d after kill -9: %+v, found %v (%v)", i, st, ok, err)
		}
	}
}
