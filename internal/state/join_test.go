package state

import (
	"context"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
)

func TestListWithStatusJoins(t *testing.T) {
	db := openTestDB(t, t.TempDir())
	var pins []api.Pin
	for i := range 50 {
		pins = append(pins, testPin(i))
	}
	if err := db.PutMany(pins); err != nil {
		t.Fatal(err)
	}
	// Records for every third pin, plus one for a CID that is not pinned.
	want := map[string]api.TrackerStatus{}
	for i, p := range pins {
		if i%3 == 0 {
			st := api.TrackerStatusPinned
			if i%2 == 0 {
				st = api.TrackerStatusPinError
			}
			if err := db.SetStatus(p.Cid, LocalStatus{Status: st, TS: time.Now()}); err != nil {
				t.Fatal(err)
			}
			want[p.Cid.KeyString()] = st
		}
	}
	if err := db.SetStatus(testPin(99).Cid, LocalStatus{Status: api.TrackerStatusUnpinQueued, TS: time.Now()}); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := db.ListWithStatus(context.Background(), func(p api.Pin, rec LocalStatus, ok bool) error {
		n++
		st, has := want[p.Cid.KeyString()]
		if ok != has || (ok && rec.Status != st) {
			t.Errorf("%s: record %v %v, want %v %v", p.Cid, ok, rec.Status, has, st)
		}
		return nil
	})
	if err != nil || n != len(pins) {
		t.Fatalf("visited %d pins (%v), want %d", n, err, len(pins))
	}
}
