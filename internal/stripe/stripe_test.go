package stripe

import (
	"slices"
	"testing"
)

func TestSetEachAscendingAndAll(t *testing.T) {
	var s Set
	for _, i := range []int{200, 3, 64, 3, 255, 0} {
		s.Add(i)
	}
	if got := slices.Collect(s.Each()); !slices.Equal(got, []int{0, 3, 64, 200, 255}) {
		t.Fatalf("Each = %v", got)
	}
	all := All()
	if n := len(slices.Collect(all.Each())); n != N {
		t.Fatalf("All has %d stripes", n)
	}
	var l Locks
	all.Lock(&l)
	all.Unlock(&l)
	unlock := l.LockKey("k")
	unlock()
}

func TestOfIsStable(t *testing.T) {
	// Persisted counters depend on this mapping: it must never change.
	h := uint32(2166136261) ^ 'a'
	h *= 16777619
	if Of("") != 2166136261%N || Of("a") != int(h%N) {
		t.Fatalf("Of changed: %d %d", Of(""), Of("a"))
	}
}
