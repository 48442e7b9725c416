package allocator

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// noMetric marks a peer that publishes no freespace metric, or no tag.
const noMetric = -1

// spec describes a test peer by its "group" tag and free bytes.
type spec struct {
	id    string
	group string // "" publishes no tag:group metric
	free  int64  // noMetric publishes no freespace metric
}

// metricsOf builds the monitor's view of the given peers.
func metricsOf(specs []spec) map[string][]api.Metric {
	ms := map[string][]api.Metric{}
	for _, s := range specs {
		if s.group != "" {
			ms["tag:group"] = append(ms["tag:group"], api.Metric{Name: "tag:group", Peer: peer.ID(s.id), Value: s.group, Valid: true, Partitionable: true})
		}
		if s.free != noMetric {
			ms["freespace"] = append(ms["freespace"], api.Metric{Name: "freespace", Peer: peer.ID(s.id), Value: strconv.FormatInt(s.free, 10), Weight: s.free, Valid: true})
		}
	}
	return ms
}

// queue is a pinqueue metric as the informer publishes it (bucket 10).
func queue(id string, n int64) api.Metric {
	return api.Metric{Name: "pinqueue", Peer: peer.ID(id), Value: strconv.FormatInt(n, 10), Weight: -n / 10, Valid: true}
}

func ids(s ...string) []peer.ID {
	out := make([]peer.ID, 0, len(s))
	for _, id := range s {
		out = append(out, peer.ID(id))
	}
	return out
}

func pinOf(rmin, rmax int, user ...string) api.Pin {
	return api.Pin{PinOptions: api.PinOptions{ReplicationFactorMin: rmin, ReplicationFactorMax: rmax, UserAllocations: ids(user...)}}
}

// aab is the cluster of cluster#1764: two peers in group a, one in b. Group
// a has the most free space in all and a1 the most of any peer.
var aab = []spec{{"a1", "a", 300}, {"a2", "a", 200}, {"b1", "b", 100}}

func TestAllocate(t *testing.T) {
	tests := []struct {
		name      string
		alloc     Allocator
		peers     []spec
		extra     []api.Metric
		pin       api.Pin
		current   []string
		excluded  []string
		barred    []string
		want      []string
		wantErr   error
		errSubstr []string
	}{
		{name: "spread across groups", peers: aab, pin: pinOf(2, 2), want: []string{"a1", "b1"}},
		{name: "third replica returns to the larger group", peers: aab, pin: pinOf(3, 3), want: []string{"a1", "b1", "a2"}},
		{name: "max beyond the cluster takes everyone", peers: aab, pin: pinOf(1, 10), want: []string{"a1", "b1", "a2"}},
		{name: "user allocation leads without breaking the spread", peers: aab, pin: pinOf(2, 2, "a2"), want: []string{"a2", "b1"}},
		{name: "user allocations in one group still spread", peers: aab, pin: pinOf(2, 2, "a2", "a1"), want: []string{"a1", "b1"}},
		{name: "user allocation in the smaller group leads", peers: aab, pin: pinOf(2, 2, "b1"), want: []string{"b1", "a1"}},
		{name: "user allocations fill the group once spread", peers: aab, pin: pinOf(3, 3, "a2"), want: []string{"a2", "b1", "a1"}},
		{name: "unknown user allocation is ignored", peers: aab, pin: pinOf(2, 2, "zz"), want: []string{"a1", "b1"}},
		{
			name: "groups ranked by summed free space", pin: pinOf(1, 1),
			peers: []spec{{"a1", "a", 500}, {"b1", "b", 300}, {"b2", "b", 300}},
			want:  []string{"b1"},
		},
		{
			name: "equal groups ranked by value", pin: pinOf(1, 1),
			peers: []spec{{"z1", "z", 100}, {"y1", "y", 100}},
			want:  []string{"y1"},
		},
		{name: "current allocation kept, new replica in another group", peers: aab, pin: pinOf(2, 2), current: []string{"a2"}, want: []string{"a2", "b1"}},
		{name: "current allocations kept unchanged when min is met", peers: aab, pin: pinOf(1, 3), current: []string{"a2", "a1"}, want: []string{"a2", "a1"}},
		{name: "duplicate current allocations count once", peers: aab, pin: pinOf(2, 2), current: []string{"a2", "a2"}, want: []string{"a2", "b1"}},
		{name: "trim keeps the best-ranked spread", peers: aab, pin: pinOf(1, 2), current: []string{"a2", "a1", "b1"}, want: []string{"a1", "b1"}},
		{name: "trim prefers user allocations within the spread", peers: aab, pin: pinOf(1, 2, "a2"), current: []string{"a1", "a2", "b1"}, want: []string{"a2", "b1"}},
		{
			name: "dead current allocation replaced in its group", pin: pinOf(2, 2),
			peers:   []spec{{"a1", "a", 300}, {"a2", "a", 200}, {"b1", "b", 100}, {"b2", "b", 50}},
			current: []string{"a1", "b1"}, excluded: []string{"b1"},
			want: []string{"a1", "b2"},
		},
		{name: "current allocation without metrics dropped", peers: aab, pin: pinOf(2, 2), current: []string{"gone", "b1"}, want: []string{"b1", "a1"}},
		{name: "current allocation without metrics kept when min is met", peers: aab, pin: pinOf(1, 3), current: []string{"b1", "down", "b1"}, want: []string{"b1", "down"}},
		{name: "lowered factor keeps live allocations first, then down ones, up to max", peers: aab, pin: pinOf(1, 2), current: []string{"down", "gone", "b1"}, want: []string{"b1", "down"}},
		{
			name: "excluded and barred current allocations dropped when min is met", pin: pinOf(1, 3), peers: aab,
			current: []string{"a1", "a2", "b1"}, excluded: []string{"a1"}, barred: []string{"b1"}, want: []string{"a2"},
		},
		{name: "excluded peers never chosen", peers: aab, pin: pinOf(2, 2), excluded: []string{"a1"}, want: []string{"a2", "b1"}},
		{name: "excluded user allocation ignored", peers: aab, pin: pinOf(2, 2, "a2"), excluded: []string{"a2"}, want: []string{"a1", "b1"}},
		{
			name: "peer missing a metric is no candidate", pin: pinOf(2, 2),
			peers: []spec{{"a1", "a", 300}, {"a2", "a", 200}, {"x1", "", 900}, {"y1", "y", noMetric}},
			want:  []string{"a1", "a2"},
		},
		{
			name: "invalid metric is ignored", pin: pinOf(1, 1), peers: aab,
			extra: []api.Metric{{Name: "freespace", Peer: "c1", Value: "900", Weight: 900}, {Name: "tag:group", Peer: "c1", Value: "c", Partitionable: true, Valid: true}},
			want:  []string{"a1"},
		},
		{
			name: "peer below the floor never chosen, even alone in its group", pin: pinOf(2, 2),
			alloc: Allocator{MinFreeSpace: 150},
			peers: []spec{{"a1", "a", 300}, {"a2", "a", 200}, {"b1", "b", 100}},
			want:  []string{"a1", "a2"},
		},
		{
			name: "floor is inclusive", pin: pinOf(2, 2), alloc: Allocator{MinFreeSpace: 100},
			peers: aab, want: []string{"a1", "b1"},
		},
		{
			name: "current allocation below the floor is kept", pin: pinOf(2, 2), alloc: Allocator{MinFreeSpace: 150},
			peers: aab, current: []string{"b1"}, want: []string{"b1", "a1"},
		},
		{
			name: "floor needs freespace even when not ranked by it", pin: pinOf(2, 2),
			alloc: Allocator{AllocateBy: []string{"tag:group"}, MinFreeSpace: 1},
			peers: []spec{{"a1", "a", 10}, {"b1", "b", noMetric}, {"c1", "c", 10}},
			want:  []string{"a1", "c1"},
		},
		{
			name: "barred peers are not chosen", pin: pinOf(2, 2),
			barred: []string{"a1"}, peers: aab, want: []string{"a2", "b1"},
		},
		{
			name: "barred current allocation dropped", pin: pinOf(1, 1),
			barred: []string{"a1", "a2"}, peers: aab, current: []string{"a1"}, want: []string{"b1"},
		},
		{
			name: "barred peers named with their reason", pin: pinOf(3, 3),
			barred: []string{"a1"}, peers: aab, wantErr: ErrNotEnoughPeers,
			errSubstr: []string{"Not eligible: 1 not trusted (" + peer.ID("a1").String() + ")"},
		},
		{
			name: "fewer queued pins first within a group", pin: pinOf(2, 2),
			alloc: Allocator{AllocateBy: []string{"tag:group", "pinqueue", "freespace"}},
			peers: []spec{{"a1", "a", 300}, {"a2", "a", 200}, {"a3", "a", 100}},
			extra: []api.Metric{queue("a1", 250), queue("a2", 12), queue("a3", 19)},
			want:  []string{"a2", "a3"},
		},
		{
			name: "ranked by free space alone", pin: pinOf(3, 3), alloc: Allocator{AllocateBy: []string{"freespace"}},
			peers: aab, want: []string{"a1", "a2", "b1"},
		},
		{
			name: "ranked by tag alone spreads by peer ID", pin: pinOf(3, 3), alloc: Allocator{AllocateBy: []string{"tag:group"}},
			peers: []spec{{"a2", "a", 1}, {"a1", "a", 1}, {"b1", "b", 1}}, want: []string{"a1", "b1", "a2"},
		},
		{
			name: "equal free space ties broken by peer ID", pin: pinOf(2, 2), alloc: Allocator{AllocateBy: []string{"freespace"}},
			peers: []spec{{"p3", "a", 5}, {"p1", "a", 5}, {"p2", "a", 5}}, want: []string{"p1", "p2"},
		},
		{
			name: "not enough peers", peers: aab, pin: pinOf(4, 5), wantErr: ErrNotEnoughPeers,
			errSubstr: []string{"not enough peers to allocate CID. Needed at least: 4. Wanted at most: 5. Available candidates: 3."},
		},
		{
			name: "not enough peers says who was turned away", pin: pinOf(3, 4),
			alloc:    Allocator{MinFreeSpace: 150},
			peers:    []spec{{"a1", "a", 300}, {"a2", "a", 200}, {"b1", "b", 100}, {"b2", "b", 10}, {"c1", "", 10}, {"d1", "d", 500}},
			current:  []string{"a2", "d1"},
			excluded: []string{"d1"},
			wantErr:  ErrNotEnoughPeers,
			errSubstr: []string{
				"Needed at least: 2. Wanted at most: 3. Available candidates: 1. Current allocations kept: 1. Not eligible: ",
				"1 excluded (" + peer.ID("d1").String() + ")",
				"1 without a valid tag:group metric (" + peer.ID("c1").String() + ")",
				"2 below the free-space floor of 150 bytes (" + peer.ID("b1").String() + ", " + peer.ID("b2").String() + ").",
			},
		},
		{name: "min above max is invalid", peers: aab, pin: pinOf(3, 2), wantErr: ErrInvalidReplication},
		{name: "everywhere is not allocated", peers: aab, pin: pinOf(-1, -1), wantErr: ErrInvalidReplication},
		{name: "min of zero is invalid", peers: aab, pin: pinOf(0, 2), wantErr: ErrInvalidReplication},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := metricsOf(tt.peers)
			for _, m := range tt.extra {
				ms[m.Name] = append(ms[m.Name], m)
			}
			got, err := tt.alloc.Allocate(Request{Pin: tt.pin, Current: ids(tt.current...), Metrics: ms, Excluded: ids(tt.excluded...),
				Barred: ids(tt.barred...), BarredBy: "not trusted"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, %v; want error %v", got, err, tt.wantErr)
				}
				for _, sub := range tt.errSubstr {
					if !strings.Contains(err.Error(), sub) {
						t.Errorf("error %q lacks %q", err, sub)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, ids(tt.want...)) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		alloc Allocator
		want  []string
	}{
		{Allocator{}, []string{"tag:group", "freespace"}},
		{Allocator{MinFreeSpace: 1}, []string{"tag:group", "freespace"}},
		{Allocator{AllocateBy: []string{"tag:region", "pinqueue"}}, []string{"tag:region", "pinqueue"}},
		{Allocator{AllocateBy: []string{"tag:region"}, MinFreeSpace: 1}, []string{"tag:region", "freespace"}},
	}
	for _, tt := range tests {
		if got := tt.alloc.MetricNames(); !slices.Equal(got, tt.want) {
			t.Errorf("%+v: got %v, want %v", tt.alloc, got, tt.want)
		}
	}
}

// TestNestedTags checks that every level spreads: regions first, then racks
// within a region, counting the racks current allocations occupy.
func TestNestedTags(t *testing.T) {
	type p struct {
		id, region, rack string
		free             int64
	}
	peers := []p{
		{"e1", "eu", "r1", 90}, {"e2", "eu", "r1", 80}, {"e3", "eu", "r2", 10},
		{"u1", "us", "r1", 50}, {"u2", "us", "r2", 40},
	}
	ms := map[string][]api.Metric{}
	for _, x := range peers {
		id := peer.ID(x.id)
		ms["tag:region"] = append(ms["tag:region"], api.Metric{Peer: id, Value: x.region, Valid: true, Partitionable: true})
		ms["tag:rack"] = append(ms["tag:rack"], api.Metric{Peer: id, Value: x.region + x.rack, Valid: true, Partitionable: true})
		ms["freespace"] = append(ms["freespace"], api.Metric{Peer: id, Weight: x.free, Valid: true})
	}
	a := Allocator{AllocateBy: []string{"tag:region", "tag:rack", "freespace"}}
	tests := []struct {
		rep     int
		current []string
		want    []string
	}{
		{3, nil, []string{"e1", "u1", "e3"}},
		{5, nil, []string{"e1", "u1", "e3", "u2", "e2"}},
		{3, []string{"e2"}, []string{"e2", "u1", "e3"}},
	}
	for _, tt := range tests {
		got, err := a.Allocate(Request{Pin: pinOf(tt.rep, tt.rep), Current: ids(tt.current...), Metrics: ms})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, ids(tt.want...)) {
			t.Errorf("rep %d current %v: got %v, want %v", tt.rep, tt.current, got, tt.want)
		}
	}
}

// TestDeterministic checks that the answer does not depend on the order in
// which metrics, exclusions or user allocations are listed.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var specs []spec
	for i := range 40 {
		specs = append(specs, spec{id: "p" + strconv.Itoa(i), group: string(rune('a' + i%4)), free: int64(1 + i%7)})
	}
	a := Allocator{MinFreeSpace: 2}
	req := func() Request {
		ms := metricsOf(specs)
		for _, list := range ms {
			rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
		}
		user, excl := ids("p5", "p6", "p9"), ids("p1", "p2", "p13")
		rng.Shuffle(len(user), func(i, j int) { user[i], user[j] = user[j], user[i] })
		rng.Shuffle(len(excl), func(i, j int) { excl[i], excl[j] = excl[j], excl[i] })
		return Request{Pin: pinOf(5, 9, string(user[0]), string(user[1]), string(user[2])), Current: ids("p3", "p10"), Metrics: ms, Excluded: excl}
	}
	first, err := a.Allocate(req())
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		got, err := a.Allocate(req())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, first) {
			t.Fatalf("got %v, then %v", first, got)
		}
	}
}

// TestConcurrentUse shares one Allocator and one Request between goroutines:
// Allocate writes nothing they hold, so all agree (and -race stays quiet).
func TestConcurrentUse(t *testing.T) {
	a := Allocator{MinFreeSpace: 150}
	req := Request{Pin: pinOf(2, 3, "a2"), Current: ids("b1"), Metrics: metricsOf(aab), Excluded: ids("zz"), Barred: ids("yy")}
	want, err := a.Allocate(req)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 100 {
				got, err := a.Allocate(req)
				if err == nil && !slices.Equal(got, want) {
					err = errors.New("answers differ")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
