package state

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

func TestRemovalRecords(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	p := testPin(1)
	p.Timestamp = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	p.Allocations = []peer.ID{"peer-a", "peer-b"}
	if err := db.Put(p); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.RemovedAt(p.Cid); ok || err != nil {
		t.Fatalf("record of a pin never removed: %v, %v", ok, err)
	}
	if err := db.DeleteApplied(p, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.RemovedAt(p.Cid)
	if !ok || err != nil || !got.Equal(p.Timestamp) {
		t.Fatalf("record %v, %v, %v; want the removed version's timestamp %v", got, ok, err, p.Timestamp)
	}
	// A reopened database finds its records.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	if _, ok, err := db.RemovedAt(p.Cid); !ok || err != nil {
		t.Fatalf("record after reopening: %v, %v", ok, err)
	}
	if err := db.ForgetRemoved(p.Cid); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.RemovedAt(p.Cid); ok {
		t.Fatal("record kept after ForgetRemoved")
	}
	// Clear (state cleanup, import) drops the records with the pins.
	if err := db.Put(p); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteApplied(p, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := db.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.RemovedAt(p.Cid); ok {
		t.Fatal("record kept after Clear")
	}
}

// The records of this peer's own unpins keep when each was asked, and
// survive a restart; records in the older format still read.
func TestOwnUnpins(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	mine, old, others, legacy := testPin(1), testPin(2), testPin(3), testPin(4)
	asked := map[string]time.Time{mine.Cid.String(): t0.Add(time.Minute), old.Cid.String(): t0.Add(-time.Hour)}
	for _, p := range []api.Pin{mine, old, others, legacy} {
		p.Timestamp = t0
		if err := db.Put(p); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteApplied(p, asked[p.Cid.String()]); err != nil {
			t.Fatal(err)
		}
	}
	// A record written by an earlier version: the bare timestamp.
	v, err := t0.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(removedKey(legacy.Cid.KeyString()), v, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	var got []string
	err = db.OwnUnpins(t0, func(c api.Cid, removed, at time.Time) error {
		got = append(got, fmt.Sprint(c, " ", removed.Equal(t0), " ", at.Sub(t0)))
		return nil
	})
	if want := []string{fmt.Sprint(mine.Cid, " true 1m0s")}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("own unpins %q (%v), want %q", got, err, want)
	}
	for _, p := range []api.Pin{mine, others, legacy} {
		if ts, ok, err := db.RemovedAt(p.Cid); !ok || err != nil || !ts.Equal(t0) {
			t.Errorf("%s: removed at %v, %t, %v; want %v", p.Cid, ts, ok, err, t0)
		}
	}
}
