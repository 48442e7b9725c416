package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/api"
)

// TestExpiryDue checks the expiry schedule: pins come due in time order,
// an expiry changed since it was noted counts only at its new time, a
// repeated note is one entry, and only a note that comes first wakes the
// loop.
func TestExpiryDue(t *testing.T) {
	e := expiry{wake: make(chan struct{}, 1)}
	ci := func(i byte) api.Cid {
		h, _ := mh.Sum([]byte{i}, mh.SHA2_256, -1)
		return api.NewCid(cid.NewCidV1(cid.Raw, h))
	}
	woken := func() bool {
		select {
		case <-e.wake:
			return true
		default:
			return false
		}
	}
	t0 := time.Unix(1000, 0)
	e.note(ci(1), t0.Add(3*time.Second))
	if !woken() {
		t.Fatal("the first expiry did not wake the loop")
	}
	e.note(ci(2), t0.Add(5*time.Second))
	e.note(ci(2), t0.Add(5*time.Second))
	if woken() {
		t.Fatal("a later expiry woke the loop")
	}
	e.note(ci(3), t0.Add(time.Second))
	if !woken() {
		t.Fatal("a sooner expiry did not wake the loop")
	}
	e.note(ci(1), t0.Add(10*time.Second)) // pinned again, expiring later
	if len(e.due) != 4 {
		t.Fatalf("%d entries, want 4 (a repeated note adds none)", len(e.due))
	}
	due, next := e.takeDue(t0.Add(4 * time.Second))
	if !slices.Equal(due, []api.Cid{ci(3)}) || !next.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("due at +4s: %v, next %s; want the third CID, next at +5s", due, next)
	}
	due, next = e.takeDue(t0.Add(time.Minute))
	if !slices.Equal(due, []api.Cid{ci(2), ci(1)}) || !next.IsZero() || len(e.latest) != 0 {
		t.Fatalf("due at +1m: %v, next %s, %d left; want the second then the first, nothing left", due, next, len(e.latest))
	}
}
