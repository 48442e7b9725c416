// Package allocator chooses the peers that hold a pin: the balanced
// allocator of IPFS Cluster, ranking candidates by the metrics named in
// allocate_by, with the placement faults of the reference fixed:
//
//   - priority peers (a pin's user allocations) come first but never at the
//     cost of the tag spread, so two replicas do not land in one group while
//     another group has room (cluster#1764);
//   - the spread counts the groups that current allocations already occupy,
//     so a re-pin that adds a replica goes to a group that holds none;
//   - a peer whose free space is below a floor is never given a new
//     allocation, even when it is the only peer of its group (cluster#1207).
//
// The package is pure logic: no I/O, no clock, no randomness. The same
// request always yields the same answer.
package allocator

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// ErrNotEnoughPeers is wrapped by the error Allocate returns when fewer
// peers qualify than the pin's replication_factor_min requires.
var ErrNotEnoughPeers = errors.New("not enough peers to allocate CID")

// ErrInvalidReplication is wrapped by the error Allocate returns when the
// replication factors are not 1 <= min <= max. Pins replicated everywhere
// (-1/-1) are not allocated at all, so they land here too.
var ErrInvalidReplication = errors.New("invalid replication factors for allocation")

// FreeSpaceMetric is the metric whose weight is a peer's free bytes; the
// free-space floor is checked against it.
const FreeSpaceMetric = "freespace"

// defaultAllocateBy is the allocate_by list used when none is configured:
// spread across the "group" tag, then most free space first. It is shared
// read-only.
var defaultAllocateBy = []string{"tag:group", FreeSpaceMetric}

// Allocator ranks peers for a pin. Its fields are configuration, read but
// never written by Allocate, so one Allocator is safe for concurrent use by
// any number of goroutines as long as nobody modifies the fields while
// calls are running.
type Allocator struct {
	// AllocateBy names the metrics to rank by, most significant first.
	// Empty means defaultAllocateBy.
	AllocateBy []string
	// MinFreeSpace is the floor in bytes: a peer whose freespace metric
	// is below it never receives a new allocation. 0 disables the floor.
	// With a floor, the freespace metric is required of every peer, even
	// when AllocateBy does not rank by it (see MetricNames).
	MinFreeSpace uint64
}

// Request is one allocation problem. Allocate reads it and never modifies
// it or anything it refers to.
type Request struct {
	// Pin is the pin being allocated, its replication factors already
	// resolved. Its UserAllocations are the priority peers.
	Pin api.Pin
	// Current are the allocations of the existing pin, if any.
	Current []peer.ID
	// Metrics holds, for each name of MetricNames, the latest metric of
	// each peer, as the monitor's LatestMetrics returns them. Invalid
	// metrics are ignored; when a peer has several of one name the one
	// expiring last counts. A peer missing any of them is no candidate.
	Metrics map[string][]api.Metric
	// Excluded peers are never chosen and are dropped from Current: for
	// example a dead peer whose pins are being re-pinned elsewhere.
	Excluded []peer.ID
	// Barred peers are never chosen and are dropped from Current, as
	// Excluded ones, for the reason BarredBy names in the not-enough-peers
	// error: the trust rule (pin_only_on_trusted_peers bars the peers
	// not trusted).
	Barred   []peer.ID
	BarredBy string
}

// MetricNames lists the metrics Request.Metrics must carry: AllocateBy,
// plus freespace when a floor is set and AllocateBy lacks it.
func (a *Allocator) MetricNames() []string {
	names := slices.Clone(a.allocateBy())
	if a.MinFreeSpace > 0 && !slices.Contains(names, FreeSpaceMetric) {
		names = append(names, FreeSpaceMetric)
	}
	return names
}

// allocateBy is the effective AllocateBy, not to be modified.
func (a *Allocator) allocateBy() []string {
	if len(a.AllocateBy) == 0 {
		return defaultAllocateBy
	}
	return a.AllocateBy
}

// Allocate returns the peers that should hold req.Pin: the current
// allocations that still qualify, followed by the new peers in rank order.
//
// With current = the qualifying current allocations, needed = min − current
// and wanted = max − current: when wanted < 0 the current allocations are
// trimmed to max, keeping the best-ranked spread; when needed ≤ 0 the
// current allocations that are neither excluded nor barred are returned,
// up to max, the qualifying ones first, those of peers that are down
// after them (a re-pin that changes only a name must not drop a replica
// that comes back with its peer); otherwise
// up to wanted new peers are added, and fewer than needed available is an
// error wrapping ErrNotEnoughPeers.
func (a *Allocator) Allocate(req Request) ([]peer.ID, error) {
	rmin, rmax := req.Pin.ReplicationFactorMin, req.Pin.ReplicationFactorMax
	if rmin < 1 || rmax < rmin {
		return nil, fmt.Errorf("%w: min %d, max %d (want 1 <= min <= max)", ErrInvalidReplication, rmin, rmax)
	}
	names, levels := a.MetricNames(), len(a.allocateBy())
	s := a.survey(req, names)

	needed, wanted := rmin-len(s.kept), rmax-len(s.kept)
	switch {
	case wanted < 0:
		for _, c := range s.kept {
			c.pickable = true
		}
		return newTree(s.kept, levels).take(make([]peer.ID, 0, rmax), rmax), nil
	case needed <= 0:
		out := s.keptIDs(rmax - len(s.kept))
		for _, id := range held(req) {
			if len(out) < rmax && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
		return out, nil
	case len(s.fresh) < needed:
		return nil, s.notEnough(needed, wanted, a.MinFreeSpace)
	}
	for _, c := range s.fresh {
		c.pickable = true
	}
	add := min(wanted, len(s.fresh))
	t := newTree(slices.Concat(s.kept, s.fresh), levels)
	return t.take(s.keptIDs(add), add), nil
}

// Order returns every peer that may hold req.Pin in the built-in order: the
// current allocations that still qualify, then each eligible new peer in
// the order Allocate would add them. Allocate's answer for any count is a
// prefix of it, so a policy that reorders or shortens Order and takes a
// prefix gets the balanced choice unless it says otherwise.
func (a *Allocator) Order(req Request) []peer.ID {
	names, levels := a.MetricNames(), len(a.allocateBy())
	s := a.survey(req, names)
	for _, c := range s.fresh {
		c.pickable = true
	}
	t := newTree(slices.Concat(s.kept, s.fresh), levels)
	return t.take(s.keptIDs(len(s.fresh)), len(s.fresh))
}

// NotEnough is the ErrNotEnoughPeers error for a choice narrowed to
// available peers (by a policy, say) when needed were required.
func NotEnough(needed, wanted, available int, why string) error {
	//lint:ignore ST1005 the reference's clients show this text; it stays word for word
	return fmt.Errorf("%w. Needed at least: %d. Wanted at most: %d. Available candidates: %d (%s).",
		ErrNotEnoughPeers, needed, wanted, available, why)
}

// reason says why a peer cannot receive a new allocation.
type reason int

const (
	eligible reason = iota
	excluded
	barred
	missingMetric
	belowFloor
	numReasons
)

// candidate is one peer known through its metrics, for one call.
type candidate struct {
	id       peer.ID
	metrics  []*api.Metric // by position in MetricNames; nil when missing
	excluded bool
	barred   bool
	current  bool
	priority bool
	pickable bool // may be chosen (otherwise it only counts as used)
}

// survey is the request sorted out: who is kept, who may be added, who
// was turned away and why.
type survey struct {
	kept     []*candidate // current allocations that still qualify, in request order
	fresh    []*candidate // peers that may receive a new allocation
	rejected [numReasons][]peer.ID
	missing  []string // the metrics the peers rejected for missingMetric lack
	barredBy string   // why the barred peers are
}

func (a *Allocator) survey(req Request, names []string) survey {
	width := len(names)
	n := len(req.Metrics[names[0]])
	index := make(map[peer.ID]int, n)
	cands := make([]candidate, 0, n)
	slots := make([]*api.Metric, 0, n*width)
	blank := make([]*api.Metric, width)
	for i, name := range names {
		ms := req.Metrics[name]
		for j := range ms {
			m := &ms[j]
			if !m.Valid {
				continue
			}
			k, ok := index[m.Peer]
			if !ok {
				k = len(cands)
				index[m.Peer] = k
				cands = append(cands, candidate{id: m.Peer})
				slots = append(slots, blank...)
			}
			if slot := &slots[k*width+i]; *slot == nil || m.Expire > (*slot).Expire {
				*slot = m
			}
		}
	}
	for k := range cands {
		cands[k].metrics = slots[k*width : (k+1)*width : (k+1)*width]
	}
	mark := func(ids []peer.ID, set func(*candidate)) {
		for _, id := range ids {
			if k, ok := index[id]; ok {
				set(&cands[k])
			}
		}
	}
	mark(req.Excluded, func(c *candidate) { c.excluded = true })
	mark(req.Barred, func(c *candidate) { c.barred = true })
	mark(req.Pin.UserAllocations, func(c *candidate) { c.priority = true })
	mark(req.Current, func(c *candidate) { c.current = true })

	s := survey{barredBy: cmp.Or(req.BarredBy, "barred")}
	freeAt := slices.Index(names, FreeSpaceMetric)
	for k := range cands {
		c := &cands[k]
		switch r := a.check(c, freeAt); {
		case r != eligible:
			s.rejected[r] = append(s.rejected[r], c.id)
			if r == missingMetric {
				for i, m := range c.metrics {
					if m == nil && !slices.Contains(s.missing, names[i]) {
						s.missing = append(s.missing, names[i])
					}
				}
			}
		case !c.current:
			s.fresh = append(s.fresh, c)
		}
	}
	mark(req.Current, func(c *candidate) {
		if a.check(c, freeAt) == eligible && !slices.Contains(s.kept, c) {
			s.kept = append(s.kept, c)
		}
	})
	return s
}

// check classifies a peer. The free-space floor applies to new allocations
// only: a current holder below it keeps its replica, since moving the data
// would cost space elsewhere and churn for nothing.
func (a *Allocator) check(c *candidate, freeAt int) reason {
	switch {
	case c.excluded:
		return excluded
	case c.barred:
		return barred
	case slices.Contains(c.metrics, nil):
		return missingMetric
	case !c.current && a.MinFreeSpace > 0 && below(c.metrics[freeAt].Weight, a.MinFreeSpace):
		return belowFloor
	}
	return eligible
}

// below reports whether a free-space weight in bytes is under floor.
func below(free int64, floor uint64) bool {
	return free < 0 || uint64(free) < floor
}

// held is req.Current without the excluded and barred peers and without
// repeats, in request order.
func held(req Request) []peer.ID {
	out := make([]peer.ID, 0, len(req.Current))
	for _, id := range req.Current {
		if !slices.Contains(req.Excluded, id) && !slices.Contains(req.Barred, id) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// keptIDs returns the kept allocations with room for extra more.
func (s *survey) keptIDs(extra int) []peer.ID {
	out := make([]peer.ID, 0, len(s.kept)+extra)
	for _, c := range s.kept {
		out = append(out, c.id)
	}
	return out
}

// notEnough builds the ErrNotEnoughPeers error: the reference's numbers,
// then why the other peers did not qualify, naming a few of them.
func (s *survey) notEnough(needed, wanted int, floor uint64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Needed at least: %d. Wanted at most: %d. Available candidates: %d.", needed, wanted, len(s.fresh))
	if len(s.kept) > 0 {
		fmt.Fprintf(&b, " Current allocations kept: %d.", len(s.kept))
	}
	why := map[reason]string{
		excluded:      "excluded",
		barred:        s.barredBy,
		missingMetric: "without a valid " + strings.Join(s.missing, " or ") + " metric",
		belowFloor:    fmt.Sprintf("below the free-space floor of %d bytes", floor),
	}
	sep := " Not eligible: "
	for r := excluded; r < numReasons; r++ {
		if ids := s.rejected[r]; len(ids) > 0 {
			fmt.Fprintf(&b, "%s%d %s (%s)", sep, len(ids), why[r], someIDs(ids, 3))
			sep = ", "
		}
	}
	if sep == ", " {
		b.WriteString(".")
	}
	return fmt.Errorf("%w. %s", ErrNotEnoughPeers, b.String())
}

// someIDs lists up to limit of ids, sorted, and how many more there are.
func someIDs(ids []peer.ID, limit int) string {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	parts := make([]string, 0, limit+1)
	for _, id := range sorted[:min(limit, len(sorted))] {
		parts = append(parts, id.String())
	}
	if len(sorted) > limit {
		parts = append(parts, fmt.Sprintf("and %d more", len(sorted)-limit))
	}
	return strings.Join(parts, ", ")
}
