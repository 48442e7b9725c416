package state

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
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
	if err := db.DeleteApplied(p); err != nil {
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
	if err := db.DeleteApplied(p); err != nil {
		t.Fatal(err)
	}
	if err := db.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.RemovedAt(p.Cid); ok {
		t.Fatal("record kept after Clear")
	}
}
