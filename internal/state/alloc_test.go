package state

import (
	"context"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

func allocated(t *testing.T, db *DB, p peer.ID) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	if err := db.ListAllocatedTo(context.Background(), p, func(c api.Cid) error {
		got[c.String()] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestAllocationIndexFollowsWrites(t *testing.T) {
	db := openTestDB(t, t.TempDir())
	a, b, c := peer.ID("peer-a"), peer.ID("peer-b"), peer.ID("peer-c")
	p1, p2, p3 := testPin(1), testPin(2), testPin(3)
	p1.Allocations = []peer.ID{a, b}
	p2.Allocations = []peer.ID{b}
	p3.Allocations = nil
	if err := db.PutMany([]api.Pin{p1, p2, p3}); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, db, b); len(got) != 2 || !got[p1.Cid.String()] || !got[p2.Cid.String()] {
		t.Fatalf("b holds %v", got)
	}
	// Re-allocation moves the entries.
	p1.Allocations = []peer.ID{c, a}
	if err := db.Put(p1); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, db, b); len(got) != 1 || !got[p2.Cid.String()] {
		t.Fatalf("b after reallocation: %v", got)
	}
	if got := allocated(t, db, c); len(got) != 1 || !got[p1.Cid.String()] {
		t.Fatalf("c after reallocation: %v", got)
	}
	// The same CID twice in one batch ends with its last allocations.
	p2a, p2b := p2, p2
	p2a.Allocations = []peer.ID{a}
	p2b.Allocations = []peer.ID{c}
	if err := db.PutMany([]api.Pin{p2a, p2b}); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, db, a); len(got) != 1 || !got[p1.Cid.String()] {
		t.Fatalf("a after a batch with a repeated CID: %v", got)
	}
	if got := allocated(t, db, c); len(got) != 2 {
		t.Fatalf("c after a batch with a repeated CID: %v", got)
	}
	if err := db.Delete(p1.Cid); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, db, c); len(got) != 1 || !got[p2.Cid.String()] {
		t.Fatalf("c after delete: %v", got)
	}
	if err := db.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, db, c); len(got) != 0 {
		t.Fatalf("c after clear: %v", got)
	}
}

// A peer ID can end in 0xff bytes; its pins must still list, and the
// peers listing must neither skip it nor repeat one.
func TestAllocatedPeersWithIDsEndingInFF(t *testing.T) {
	db := openTestDB(t, t.TempDir())
	a, b, c := peer.ID("peer-a\xff"), peer.ID("peer-a\xff\xff"), peer.ID("peer-b")
	p1, p2, p3 := testPin(1), testPin(2), testPin(3)
	p1.Allocations = []peer.ID{a, c}
	p2.Allocations = []peer.ID{b, a}
	p3.Allocations = []peer.ID{b}
	if err := db.PutMany([]api.Pin{p1, p2, p3}); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, db, a); len(got) != 2 || !got[p1.Cid.String()] || !got[p2.Cid.String()] {
		t.Fatalf("a holds %v", got)
	}
	if got := allocated(t, db, b); len(got) != 2 || !got[p2.Cid.String()] || !got[p3.Cid.String()] {
		t.Fatalf("b holds %v", got)
	}
	peers, err := db.AllocatedPeers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 || !slices.Contains(peers, a) || !slices.Contains(peers, b) || !slices.Contains(peers, c) {
		t.Fatalf("allocated peers %q, want a, b and c", peers)
	}
	if err := db.Delete(p1.Cid); err != nil {
		t.Fatal(err)
	}
	if peers, err = db.AllocatedPeers(context.Background()); err != nil || len(peers) != 2 || slices.Contains(peers, c) {
		t.Fatalf("after deleting c's only pin: %q, %v", peers, err)
	}
}
