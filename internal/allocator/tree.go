package allocator

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// tree is the balanced partitioning of a set of peers. The children of the
// root partition the peers by the first metric, theirs by the second, and so
// on; below the last metric every peer is a leaf. A partitionable metric
// (a tag) puts the peers sharing a value in one partition; any other metric
// gives each peer a partition of its own. Siblings are kept in rank order:
// summed weight of their pickable peers, descending, metric by metric, then
// value, then lowest peer ID.
//
// Picking walks from the root, at each level into the child holding the
// fewest allocations so far (current ones included), preferring on a tie a
// child with an unpicked priority peer, then rank order. That is the
// reference's round-robin across partitions, except that it starts from
// what current allocations already occupy and lets priority peers go first
// only where the spread allows.
type tree struct {
	root   *node
	levels int
	nodes  []node  // arena: every node of the tree, never reallocated
	kids   []*node // arena of the children slices
	sums   []int64 // arena of the summed weights
}

type node struct {
	parent   *node
	children []*node
	leaf     *candidate
	members  []*candidate // the peers below, during construction
	value    string
	first    peer.ID // lowest peer ID below, the last tie-break
	sums     []int64 // summed weight of pickable peers, for this level's metric and each deeper one
	used     int     // allocations below: current ones and picks so far
	free     int     // pickable peers below not picked yet
	prio     int     // of those, priority peers
}

// newTree partitions members over the first levels metrics. It reorders
// members.
func newTree(members []*candidate, levels int) *tree {
	t := &tree{
		levels: levels,
		nodes:  make([]node, 0, 1+len(members)*(levels+1)),
		kids:   make([]*node, 0, len(members)*(levels+1)),
		sums:   make([]int64, 0, len(members)*levels*(levels+1)/2),
	}
	t.root = t.add(nil)
	t.root.members = members
	t.grow(t.root, 0)
	return t
}

// add appends a node to the arena. The capacity newTree reserves covers
// every node (at most one per peer and level, plus leaves and the root), so
// pointers into the arena stay valid.
func (t *tree) add(parent *node) *node {
	t.nodes = append(t.nodes, node{parent: parent})
	return &t.nodes[len(t.nodes)-1]
}

// grow builds the children of n, which partition n's members by the metric
// at level, recursively, and totals n's counts from them.
func (t *tree) grow(n *node, level int) {
	members := n.members
	n.members = nil
	start := len(t.kids)
	if level == t.levels {
		for _, c := range members {
			t.kids = append(t.kids, t.leaf(n, c))
		}
	} else {
		slices.SortFunc(members, func(x, y *candidate) int { return groupOrder(x, y, level) })
		for i := 0; i < len(members); {
			j := i + 1
			for j < len(members) && sameGroup(members[i], members[j], level) {
				j++
			}
			child := t.add(n)
			child.members, child.first = members[i:j], members[i].id
			child.value = members[i].metrics[level].Value
			child.sums = t.sum(members[i:j], level)
			t.kids = append(t.kids, child)
			i = j
		}
	}
	n.children = t.kids[start:len(t.kids):len(t.kids)]
	for _, child := range n.children {
		if child.leaf == nil {
			t.grow(child, level+1)
		}
		n.used += child.used
		n.free += child.free
		n.prio += child.prio
	}
	slices.SortFunc(n.children, rank)
}

func (t *tree) leaf(parent *node, c *candidate) *node {
	l := t.add(parent)
	l.leaf, l.first = c, c.id
	switch {
	case !c.pickable:
		l.used = 1
	case c.priority:
		l.free, l.prio = 1, 1
	default:
		l.free = 1
	}
	return l
}

// sum totals the weights of the pickable members for the metric at level
// and each deeper one.
func (t *tree) sum(members []*candidate, level int) []int64 {
	start := len(t.sums)
	for m := level; m < t.levels; m++ {
		var s int64
		for _, c := range members {
			if c.pickable {
				s = addSaturated(s, c.metrics[m].Weight)
			}
		}
		t.sums = append(t.sums, s)
	}
	return t.sums[start:len(t.sums):len(t.sums)]
}

// take appends up to k picked peers to out.
func (t *tree) take(out []peer.ID, k int) []peer.ID {
	for range k {
		c := t.pick()
		if c == nil {
			break
		}
		out = append(out, c.id)
	}
	return out
}

// pick chooses the next peer, or nil when none is left.
func (t *tree) pick() *candidate {
	n := t.root
	if n.free == 0 {
		return nil
	}
	for n.leaf == nil {
		n = next(n.children)
	}
	c := n.leaf
	for ; n != nil; n = n.parent {
		n.used++
		n.free--
		if c.priority {
			n.prio--
		}
	}
	return c
}

// next returns the child to descend into: among those with a pickable
// peer left, the fewest allocations, then one holding a priority peer,
// then the first in rank order.
func next(children []*node) *node {
	var best *node
	for _, ch := range children {
		if ch.free == 0 {
			continue
		}
		if best == nil || ch.used < best.used || ch.used == best.used && ch.prio > 0 && best.prio == 0 {
			best = ch
		}
	}
	return best
}

// groupOrder sorts peers so that those sharing a partition at level are
// adjacent: partitionable metrics first, by value, then by peer ID.
func groupOrder(x, y *candidate, level int) int {
	mx, my := x.metrics[level], y.metrics[level]
	if mx.Partitionable != my.Partitionable {
		if mx.Partitionable {
			return -1
		}
		return 1
	}
	if c := strings.Compare(mx.Value, my.Value); c != 0 {
		return c
	}
	return strings.Compare(string(x.id), string(y.id))
}

// sameGroup reports whether two peers share a partition at level.
func sameGroup(x, y *candidate, level int) bool {
	mx, my := x.metrics[level], y.metrics[level]
	return mx.Partitionable && my.Partitionable && mx.Value == my.Value
}

// rank orders siblings: higher summed weights first, then value, then
// lowest peer ID, which makes the order total.
func rank(x, y *node) int {
	for i := range x.sums {
		if c := cmp.Compare(y.sums[i], x.sums[i]); c != 0 {
			return c
		}
	}
	if c := strings.Compare(x.value, y.value); c != 0 {
		return c
	}
	return strings.Compare(string(x.first), string(y.first))
}

// addSaturated adds without wrapping around, so that huge free-space
// figures cannot overflow into a low rank.
func addSaturated(a, b int64) int64 {
	s := a + b
	if (s > a) != (b > 0) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}
