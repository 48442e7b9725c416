package state

import (
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
)

// byStatus lists the CIDs ListByStatus returns for filter, in its order.
func byStatus(t *testing.T, db *DB, filter api.TrackerStatus) []api.Cid {
	t.Helper()
	var got []api.Cid
	err := db.ListByStatus(t.Context(), filter, func(c api.Cid, s LocalStatus) error {
		if !s.Status.Match(filter) {
			t.Fatalf("filter %s returned %s with status %s", filter, c, s.Status)
		}
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sortedCids(cids ...api.Cid) []api.Cid {
	return slices.SortedFunc(slices.Values(cids), func(a, b api.Cid) int {
		return strings.Compare(a.KeyString(), b.KeyString())
	})
}

func TestStatusIndexMoves(t *testing.T) {
	db := newTestDB(t)
	set := func(i int, st api.TrackerStatus) {
		t.Helper()
		if err := db.SetStatus(testCid(i), LocalStatus{Status: st, TS: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		set(i, api.TrackerStatusPinned)
	}
	set(3, api.TrackerStatusPinError)
	set(7, api.TrackerStatusPinError)
	set(8, api.TrackerStatusPinError)
	set(8, api.TrackerStatusPinned)
	set(5, api.TrackerStatusUnpinError)
	set(5, api.TrackerStatusUnpinError)

	if got, want := byStatus(t, db, api.TrackerStatusPinError), sortedCids(testCid(3), testCid(7)); !slices.Equal(got, want) {
		t.Fatalf("pin_error = %v, want %v", got, want)
	}
	// A composite filter merges the statuses' ranges in CID order.
	want := sortedCids(testCid(3), testCid(7), testCid(5))
	if got := byStatus(t, db, api.TrackerStatusError); !slices.Equal(got, want) {
		t.Fatalf("error = %v, want %v", got, want)
	}
	if got := byStatus(t, db, api.TrackerStatusPinned); len(got) != 7 || slices.Contains(got, testCid(3)) {
		t.Fatalf("pinned = %v", got)
	}
	if got := byStatus(t, db, api.TrackerStatusPinQueued); len(got) != 0 {
		t.Fatalf("pin_queued = %v", got)
	}
	all := make([]api.Cid, 10)
	for i := range all {
		all[i] = testCid(i)
	}
	if got := byStatus(t, db, 0); !slices.Equal(got, sortedCids(all...)) {
		t.Fatalf("filter 0 = %v, want every record in CID order", got)
	}
	counts := map[api.TrackerStatus]int{
		api.TrackerStatusPinned:     7,
		api.TrackerStatusPinError:   2,
		api.TrackerStatusUnpinError: 1,
	}
	if got := db.CountStatus(); !reflect.DeepEqual(got, counts) {
		t.Fatalf("CountStatus = %v, want %v", got, counts)
	}

	if err := db.DeleteStatus(testCid(3)); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteStatus(testCid(3)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.GetStatus(testCid(3)); ok || err != nil {
		t.Fatalf("GetStatus of deleted record: %v %v", ok, err)
	}
	if got := byStatus(t, db, api.TrackerStatusPinError); !slices.Equal(got, []api.Cid{testCid(7)}) {
		t.Fatalf("pin_error after delete = %v", got)
	}
	if got := db.CountStatus()[api.TrackerStatusPinError]; got != 1 {
		t.Fatalf("pin_error count after delete = %d", got)
	}

	for _, bad := range []api.TrackerStatus{0, api.TrackerStatusError, api.TrackerStatusQueued} {
		if err := db.SetStatus(testCid(1), LocalStatus{Status: bad}); !errors.Is(err, ErrInvalidStatus) {
			t.Fatalf("SetStatus(%d): %v, want ErrInvalidStatus", bad, err)
		}
	}
	if err := db.SetStatus(api.CidUndef, LocalStatus{Status: api.TrackerStatusPinned}); !errors.Is(err, ErrUndefinedCid) {
		t.Fatalf("SetStatus of undefined cid: %v", err)
	}

	stop := errors.New("stop")
	if err := db.ListByStatus(t.Context(), api.TrackerStatusPinned, func(api.Cid, LocalStatus) error { return stop }); err != stop {
		t.Fatalf("ListByStatus stop: %v", err)
	}
}

func TestStatusRecordFields(t *testing.T) {
	db := newTestDB(t)
	want := LocalStatus{
		Status:   api.TrackerStatusPinError,
		Attempts: 4,
		Error:    "context deadline exceeded",
		TS:       time.Date(2025, 6, 7, 8, 9, 10, 11, time.UTC),
		Priority: true,
	}
	if err := db.SetStatus(testCid(1), want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.GetStatus(testCid(1))
	if err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetStatus = %+v %v %v, want %+v", got, ok, err, want)
	}
	var listed LocalStatus
	list := func() {
		t.Helper()
		if err := db.ListByStatus(t.Context(), api.TrackerStatusPinError, func(_ api.Cid, s LocalStatus) error {
			listed = s
			return nil
		}); err != nil || !reflect.DeepEqual(listed, want) {
			t.Fatalf("ListByStatus record = %+v, %v, want %+v", listed, err, want)
		}
	}
	list()
	// A new record with the same status updates the index entry too.
	want.Attempts++
	want.Priority = false
	if err := db.SetStatus(testCid(1), want); err != nil {
		t.Fatal(err)
	}
	list()
}

// TestConcurrentSetStatus has writers race on the same few CIDs (which the
// tracker never does) and checks that index and counts stay exact.
func TestConcurrentSetStatus(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	statuses := []api.TrackerStatus{api.TrackerStatusPinned, api.TrackerStatusPinning, api.TrackerStatusPinError, api.TrackerStatusPinQueued}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 300 {
				c := testCid(r.IntN(20))
				var err error
				if r.IntN(10) == 0 {
					err = db.DeleteStatus(c)
				} else {
					err = db.SetStatus(c, LocalStatus{Status: statuses[r.IntN(len(statuses))]})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	check := func() {
		t.Helper()
		want := map[api.TrackerStatus]int{}
		for i := range 20 {
			s, ok, err := db.GetStatus(testCid(i))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				want[s.Status]++
			}
		}
		if got := db.CountStatus(); !maps.Equal(got, want) {
			t.Fatalf("CountStatus = %v, records say %v", got, want)
		}
		for _, st := range statuses {
			if got := len(byStatus(t, db, st)); got != want[st] {
				t.Fatalf("index of %s has %d entries, records say %d", st, got, want[st])
			}
		}
	}
	check()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir)
	defer db.Close()
	check()
}

func TestLocalStatusEncoding(t *testing.T) {
	for _, s := range []LocalStatus{
		{Status: api.TrackerStatusPinned},
		{Status: api.TrackerStatusRemote, Attempts: -3, Priority: true},
		{Status: api.TrackerStatusPinError, Attempts: math.MaxInt, Error: "ü\x00", TS: time.Unix(0, 0).UTC()},
		{Status: api.TrackerStatusUnexpectedlyUnpinned, TS: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		{Status: api.TrackerStatusPinError, Attempts: 5, Error: "policy", Terminal: true},
		{Status: api.TrackerStatusPinError, Attempts: 2, PolicyQueue: true, Priority: true},
		{Status: api.TrackerStatusPinned, Direct: true},
		{Status: api.TrackerStatusPinError, Attempts: 1, PolicyQueue: true, RetryDelay: 6 * time.Hour, TS: time.Unix(1_700_000_000, 0).UTC()},
		{Status: api.TrackerStatusPinError, RetryDelay: math.MaxInt64},
		{Status: api.TrackerStatus(1) << 63, TS: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		var got LocalStatus
		if err := got.unmarshalBinary(s.appendBinary(nil)); err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("round trip: got %+v, want %+v", got, s)
		}
	}
	valid := (&LocalStatus{Status: api.TrackerStatusPinned, TS: time.Now(), Error: "x"}).appendBinary(nil)
	for name, v := range map[string][]byte{
		"empty":        nil,
		"version":      {2, 16, 0, 0, 0},
		"no status":    {1, 0, 0, 0, 0},
		"two statuses": {1, 48, 0, 0, 0},
		"flags":        {1, 16, 0, 64, 0},
		"nanoseconds":  append(binary.AppendUvarint([]byte{1, 16, 0, 2, 0}, uint64(time.Second)), 0),
		"truncated":    valid[:len(valid)-1],
		"trailing":     append(slices.Clone(valid), 0),
		"error length": {1, 16, 0, 0, 5, 'a'},
		"zero delay":   {1, 16, 0, 32, 0, 0},
		"huge delay":   {1, 16, 0, 32, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0},
	} {
		var s LocalStatus
		if err := s.unmarshalBinary(v); !errors.Is(err, errCorruptRecord) {
			t.Errorf("%s: err = %v, want errCorruptRecord", name, err)
		}
	}
}

// FuzzLocalStatus checks that the record decoder never panics and that
// what it accepts encodes back to an equal record.
func FuzzLocalStatus(f *testing.F) {
	for _, s := range []LocalStatus{
		{Status: api.TrackerStatusPinned},
		{Status: api.TrackerStatusPinError, Attempts: 7, Error: "timeout", TS: time.Unix(1_700_000_000, 5), Priority: true},
		{Status: api.TrackerStatusPinError, Attempts: 3, Error: "failed by policy", Terminal: true, PolicyQueue: true},
		{Status: api.TrackerStatusPinError, Attempts: 1, PolicyQueue: true, RetryDelay: time.Hour},
	} {
		f.Add(s.appendBinary(nil))
	}
	f.Add([]byte{1, 16, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s LocalStatus
		if err := s.unmarshalBinary(data); err != nil {
			if !errors.Is(err, errCorruptRecord) {
				t.Fatalf("error does not wrap errCorruptRecord: %v", err)
			}
			return
		}
		var again LocalStatus
		if err := again.unmarshalBinary(s.appendBinary(nil)); err != nil {
			t.Fatalf("re-encoding %+v: %v", s, err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip: got %+v, want %+v", again, s)
		}
	})
}
