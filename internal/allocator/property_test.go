package allocator

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// world is a random cluster and request, with the facts an independent
// oracle needs to judge the answer.
type world struct {
	alloc    Allocator
	specs    map[peer.ID]spec
	req      Request
	excluded map[peer.ID]bool
	barred   map[peer.ID]bool
	user     map[peer.ID]bool
}

func randomWorld(rng *rand.Rand) world {
	w := world{specs: map[peer.ID]spec{}, excluded: map[peer.ID]bool{}, barred: map[peer.ID]bool{}, user: map[peer.ID]bool{}}
	if rng.IntN(2) == 0 {
		w.alloc.MinFreeSpace = 200
	}
	bars := rng.IntN(3) == 0
	groups := 1 + rng.IntN(4)
	var specs []spec
	var all []peer.ID
	for i := range rng.IntN(16) {
		s := spec{id: "p" + strconv.Itoa(i), group: string(rune('a' + rng.IntN(groups))), free: rng.Int64N(1000)}
		switch rng.IntN(10) {
		case 0:
			s.group = ""
		case 1:
			s.free = noMetric
		}
		id := peer.ID(s.id)
		specs = append(specs, s)
		all = append(all, id)
		w.specs[id] = s
		if bars && rng.IntN(10) < 3 {
			w.req.Barred = append(w.req.Barred, id)
			w.barred[id] = true
		}
	}
	all = append(all, "unknown")
	for _, id := range all {
		if rng.IntN(7) == 0 {
			w.req.Excluded = append(w.req.Excluded, id)
			w.excluded[id] = true
		}
		if rng.IntN(5) == 0 {
			w.req.Current = append(w.req.Current, id)
		}
		if rng.IntN(5) == 0 {
			w.req.Pin.UserAllocations = append(w.req.Pin.UserAllocations, id)
			w.user[id] = true
		}
	}
	rmin := 1 + rng.IntN(5)
	w.req.Pin.ReplicationFactorMin, w.req.Pin.ReplicationFactorMax = rmin, rmin+rng.IntN(4)
	w.req.Metrics = metricsOf(specs)
	return w
}

// qualifies is the oracle's eligibility rule.
func (w world) qualifies(id peer.ID, current bool) bool {
	s, ok := w.specs[id]
	return ok && s.group != "" && s.free != noMetric && !w.excluded[id] &&
		!w.barred[id] &&
		(current || w.alloc.MinFreeSpace == 0 || s.free >= int64(w.alloc.MinFreeSpace))
}

// TestAllocateProperties checks random clusters against an oracle: length
// within bounds or ErrNotEnoughPeers exactly when too few peers qualify, no
// duplicates, only qualifying peers (current allocations of peers that are
// down stay when nothing is added), current allocations kept, and every
// pick going to a least-used group (so the spread is maximal), a priority
// peer there when there is one, and otherwise the peer with the most free
// space. It also checks that the generator reaches every outcome.
func TestAllocateProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	outcomes := map[string]int{}
	for i := range 3000 {
		w := randomWorld(rng)
		got, err := w.alloc.Allocate(w.req)
		outcome, msg := w.judge(got, err)
		if msg != "" {
			t.Fatalf("case %d: %s\nworld: alloc %+v specs %v\nrequest: %+v\ngot %v, %v", i, msg, w.alloc, w.specs, w.req, got, err)
		}
		outcomes[outcome]++
	}
	for _, o := range []string{"not enough", "trim", "unchanged", "added"} {
		if outcomes[o] < 50 {
			t.Errorf("outcome %q reached %d times: %v", o, outcomes[o], outcomes)
		}
	}
}

// judge returns the outcome the oracle expects and what is wrong, if
// anything.
func (w world) judge(got []peer.ID, err error) (outcome, msg string) {
	rmin, rmax := w.req.Pin.ReplicationFactorMin, w.req.Pin.ReplicationFactorMax
	var kept, fresh []peer.ID
	for _, id := range w.req.Current {
		if w.qualifies(id, true) && !slices.Contains(kept, id) {
			kept = append(kept, id)
		}
	}
	for id := range w.specs {
		if !slices.Contains(w.req.Current, id) && w.qualifies(id, false) {
			fresh = append(fresh, id)
		}
	}
	needed := rmin - len(kept)
	if needed > 0 && len(fresh) < needed {
		if !errors.Is(err, ErrNotEnoughPeers) {
			return "not enough", "want ErrNotEnoughPeers"
		}
		return "not enough", ""
	}
	if err != nil {
		return "", "unexpected error"
	}
	seen := map[peer.ID]bool{}
	for _, id := range got {
		if seen[id] {
			return "", "duplicate peer"
		}
		seen[id] = true
	}
	switch {
	case len(kept) > rmax:
		if len(got) != rmax {
			return "trim", "want max peers"
		}
		if w.groups(got) != min(rmax, w.groups(kept)) {
			return "trim", "spread not maximal"
		}
		return "trim", w.judgePicks(nil, kept, got)
	case needed <= 0:
		// Unchanged: down peers (no metrics) stay after the qualifying
		// ones, up to max; only the excluded and barred ones leave.
		held := slices.Clone(kept)
		for _, id := range w.req.Current {
			if len(held) < rmax && !w.excluded[id] && !w.barred[id] && !slices.Contains(held, id) {
				held = append(held, id)
			}
		}
		if !slices.Equal(got, held) {
			return "unchanged", "want current allocations unchanged, up to max"
		}
		return "unchanged", ""
	}
	added := got[min(len(kept), len(got)):]
	if len(added) != min(rmax-len(kept), len(fresh)) || len(got) < rmin || len(got) > rmax {
		return "added", "wrong length"
	}
	if !slices.Equal(got[:len(kept)], kept) {
		return "added", "current allocations not kept first"
	}
	if w.groups(got) != min(w.groups(kept)+len(added), w.groups(slices.Concat(kept, fresh))) {
		return "added", "spread not maximal"
	}
	return "added", w.judgePicks(kept, fresh, added)
}

// groups counts the distinct groups of peers.
func (w world) groups(peers []peer.ID) int {
	set := map[string]bool{}
	for _, id := range peers {
		set[w.specs[id].group] = true
	}
	return len(set)
}

// judgePicks replays the picks: each must go to a group with the fewest
// allocations among the groups that still have a pool peer, to a priority
// peer when such a group holds one, and within its group to the peer with
// the most free space among those of its priority class.
func (w world) judgePicks(used, pool, picks []peer.ID) string {
	count := map[string]int{}
	for _, id := range used {
		count[w.specs[id].group]++
	}
	left := slices.Clone(pool)
	for _, p := range picks {
		if !slices.Contains(left, p) {
			return "picked a peer outside the pool"
		}
		least, prioAtLeast := -1, false
		for _, id := range left {
			if c := count[w.specs[id].group]; least < 0 || c < least {
				least, prioAtLeast = c, w.user[id]
			} else if c == least && w.user[id] {
				prioAtLeast = true
			}
		}
		g := w.specs[p].group
		if count[g] != least {
			return "pick is not in a least-used group"
		}
		if prioAtLeast && !w.user[p] {
			return "priority peer passed over"
		}
		for _, id := range left {
			if w.specs[id].group == g && w.user[id] == w.user[p] && w.specs[id].free > w.specs[p].free {
				return "peer with more free space passed over in its group"
			}
			if w.specs[id].group == g && w.user[id] && !w.user[p] {
				return "priority peer passed over in its group"
			}
		}
		count[g]++
		left = slices.DeleteFunc(left, func(id peer.ID) bool { return id == p })
	}
	return ""
}

// TestOrderExtendsAllocate checks on random clusters that Order lists every
// qualifying peer once, current allocations first, and that whenever
// Allocate adds peers its answer is a prefix of Order: a policy taking a
// prefix of Order gets the balanced choice.
func TestOrderExtendsAllocate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for i := range 3000 {
		w := randomWorld(rng)
		order := w.alloc.Order(w.req)
		var want int
		for id := range w.specs {
			if w.qualifies(id, slices.Contains(w.req.Current, id)) {
				want++
			}
		}
		seen := map[peer.ID]bool{}
		for _, id := range order {
			if seen[id] || !w.qualifies(id, slices.Contains(w.req.Current, id)) {
				t.Fatalf("case %d: order %v has %s twice or unqualified", i, order, id)
			}
			seen[id] = true
		}
		if len(order) != want {
			t.Fatalf("case %d: order %v lists %d peers, %d qualify", i, order, len(order), want)
		}
		got, err := w.alloc.Allocate(w.req)
		if err != nil || len(got) <= len(w.req.Current) {
			continue
		}
		if !slices.Equal(got, order[:len(got)]) {
			t.Fatalf("case %d: Allocate %v is not a prefix of Order %v", i, got, order)
		}
	}
}
