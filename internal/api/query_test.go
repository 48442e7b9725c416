package api

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

const (
	testPeer1 = "QmUBuxVHoNNjfmNpTad36UeaFQv3gXAtCv9r6KhmeqhEhD"
	testPeer2 = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	testCid1  = "QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco"
	testCid2  = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
)

func mustPeer(t testing.TB, s string) peer.ID {
	t.Helper()
	p, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCid(t testing.TB, s string) Cid {
	t.Helper()
	c, err := DecodeCid(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustMultiaddr(t testing.TB, s string) Multiaddr {
	t.Helper()
	m, err := NewMultiaddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameOptions compares options the way a round trip must preserve them:
// times by instant, CIDs and multiaddresses by value.
func sameOptions(a, b PinOptions) bool {
	multiaddrs := func(ms []Multiaddr) []string {
		var s []string
		for _, m := range ms {
			s = append(s, m.String())
		}
		return s
	}
	return a.ReplicationFactorMin == b.ReplicationFactorMin &&
		a.ReplicationFactorMax == b.ReplicationFactorMax &&
		a.Name == b.Name &&
		a.Mode == b.Mode &&
		a.ShardSize == b.ShardSize &&
		slices.Equal(a.UserAllocations, b.UserAllocations) &&
		a.ExpireAt.Equal(b.ExpireAt) &&
		maps.Equal(a.Metadata, b.Metadata) &&
		a.PinUpdate.Equals(b.PinUpdate.Cid) &&
		slices.Equal(multiaddrs(a.Origins), multiaddrs(b.Origins))
}

func TestPinOptionsToQueryMatchesReferenceEncoding(t *testing.T) {
	cases := []struct {
		name string
		opts PinOptions
		want string
	}{
		{
			name: "zero options still send the fixed keys",
			opts: PinOptions{},
			want: "mode=recursive&name=&replication-max=0&replication-min=0&shard-size=0&user-allocations=",
		},
		{
			name: "everything set",
			opts: PinOptions{
				ReplicationFactorMin: 2,
				ReplicationFactorMax: 3,
				Name:                 "my pin",
				Mode:                 PinModeDirect,
				ShardSize:            1024,
				UserAllocations:      []peer.ID{mustPeer(t, testPeer1), mustPeer(t, testPeer2)},
				ExpireAt:             time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
				Metadata:             map[string]string{"kind": "text", "": "dropped"},
				PinUpdate:            mustCid(t, testCid1),
				Origins:              []Multiaddr{mustMultiaddr(t, "/ip4/1.2.3.4/tcp/4001/p2p/"+testPeer1)},
			},
			want: "expire-at=2030-01-02T03%3A04%3A05.000000006Z&meta-kind=text&mode=direct&name=my+pin" +
				"&origins=%2Fip4%2F1.2.3.4%2Ftcp%2F4001%2Fp2p%2F" + testPeer1 +
				"&pin-update=" + testCid1 +
				"&replication-max=3&replication-min=2&shard-size=1024" +
				"&user-allocations=" + testPeer1 + "%2C" + testPeer2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := PinOptionsToQuery(tc.opts).Encode(); got != tc.want {
				t.Errorf("query:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestPinOptionsRoundTrip(t *testing.T) {
	zone := time.FixedZone("UTC+2", 2*3600)
	cases := []PinOptions{
		{Metadata: map[string]string{}},
		{
			ReplicationFactorMin: -1,
			ReplicationFactorMax: -1,
			Name:                 "a name, with ünicode & symbols?=",
			Mode:                 PinModeDirect,
			ShardSize:            100 << 20,
			UserAllocations:      []peer.ID{mustPeer(t, testPeer2), mustPeer(t, testPeer1)},
			ExpireAt:             time.Date(2031, 5, 6, 7, 8, 9, 123456789, zone),
			Metadata:             map[string]string{"kind": "text", "meta-nested": "x", "empty": ""},
			PinUpdate:            mustCid(t, testCid2),
			Origins: []Multiaddr{
				mustMultiaddr(t, "/ip4/1.2.3.4/tcp/4001/p2p/"+testPeer1),
				mustMultiaddr(t, "/dns4/example.com/tcp/4001/p2p/"+testPeer2),
			},
		},
	}
	for _, want := range cases {
		got, err := PinOptionsFromQuery(PinOptionsToQuery(want))
		if err != nil {
			t.Fatalf("PinOptionsFromQuery: %v", err)
		}
		if !sameOptions(got, want) {
			t.Errorf("round trip changed the options:\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestPinOptionsFromQueryExtras(t *testing.T) {
	q := url.Values{
		"replication":     {"4"},
		"replication-min": {"1"},
		"replication-max": {"9"},
		"expire-in":       {"1h"},
		"local":           {"true"},
	}
	before := time.Now()
	po, err := PinOptionsFromQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	if po.ReplicationFactorMin != 4 || po.ReplicationFactorMax != 4 {
		t.Errorf("replication should set both factors, got %d/%d", po.ReplicationFactorMin, po.ReplicationFactorMax)
	}
	if po.ExpireAt.Before(before.Add(time.Hour)) || po.ExpireAt.After(time.Now().Add(time.Hour)) {
		t.Errorf("expire-in 1h gave expire_at %s", po.ExpireAt)
	}
	if q.Get("replication-min") != "1" {
		t.Error("the caller's query was modified")
	}
	if po.Mode != PinModeRecursive || po.Metadata == nil {
		t.Errorf("defaults: mode %s, metadata %v", po.Mode, po.Metadata)
	}

	at := "2030-01-01T00:00:00Z"
	po, err = PinOptionsFromQuery(url.Values{"expire-at": {at}, "expire-in": {"not a duration"}})
	if err != nil {
		t.Fatalf("expire-in must be ignored when expire-at is given: %v", err)
	}
	if got := po.ExpireAt.Format(time.RFC3339); got != at {
		t.Errorf("expire_at %s, want %s", got, at)
	}

	po, err = PinOptionsFromQuery(url.Values{"user-allocations": {" " + testPeer1 + ", " + testPeer2 + ","}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []peer.ID{mustPeer(t, testPeer1), mustPeer(t, testPeer2)}; !slices.Equal(po.UserAllocations, want) {
		t.Errorf("user allocations %v, want %v", po.UserAllocations, want)
	}
}

func TestPinOptionsFromQueryErrorsNameTheParameter(t *testing.T) {
	cases := []struct {
		query url.Values
		param string
	}{
		{url.Values{"replication-min": {"two"}}, "replication-min"},
		{url.Values{"replication-max": {"1.5"}}, "replication-max"},
		{url.Values{"replication": {"x"}}, "replication"},
		{url.Values{"mode": {"sideways"}}, "mode"},
		{url.Values{"shard-size": {"-1"}}, "shard-size"},
		{url.Values{"user-allocations": {testPeer1 + ",not-a-peer"}}, "user-allocations"},
		{url.Values{"expire-at": {"tomorrow"}}, "expire-at"},
		{url.Values{"expire-in": {"soon"}}, "expire-in"},
		{url.Values{"expire-in": {"500ms"}}, "expire-in"},
		{url.Values{"pin-update": {"not-a-cid"}}, "pin-update"},
		{url.Values{"origins": {"/ip4/1.2.3.4/tcp/4001"}}, "origins"},
		{url.Values{"origins": {"nonsense"}}, "origins"},
	}
	for _, tc := range cases {
		_, err := PinOptionsFromQuery(tc.query)
		if err == nil {
			t.Errorf("%v: no error", tc.query)
			continue
		}
		if !strings.Contains(err.Error(), "parameter "+tc.param+":") {
			t.Errorf("%v: error %q does not name %s", tc.query, err, tc.param)
		}
	}
}

func TestFilterStrings(t *testing.T) {
	statuses := []struct {
		f    TrackerStatus
		want string
	}{
		{TrackerStatusUndefined, ""},
		{TrackerStatusPinned, "pinned"},
		{TrackerStatusError, "error"},
		{TrackerStatusPinned | TrackerStatusPinning, "pinned,pinning"},
	}
	for _, tc := range statuses {
		if got := TrackerStatusFilterString(tc.f); got != tc.want {
			t.Errorf("TrackerStatusFilterString(%d) = %q, want %q", tc.f, got, tc.want)
		}
		back, unknown, err := ParseTrackerStatusFilter(tc.want)
		if err != nil || back != tc.f || unknown != nil {
			t.Errorf("ParseTrackerStatusFilter(%q) = %d, %q, %v; want %d", tc.want, back, unknown, err, tc.f)
		}
	}
	types := []struct {
		f    PinType
		want string
	}{
		{AllType, "all"},
		{DataType, "pin"},
		{MetaType | ShardType, "meta-pin,shard-pin"},
	}
	for _, tc := range types {
		if got := PinTypeFilterString(tc.f); got != tc.want {
			t.Errorf("PinTypeFilterString(%d) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

// A filter list is taken as the reference takes it: unknown names are
// ignored (and reported), and only a list without one known name fails.
func TestFilterListsIgnoreUnknownNames(t *testing.T) {
	statuses := []struct {
		in      string
		want    TrackerStatus
		unknown []string
	}{
		{"bogus,pinned", TrackerStatusPinned, []string{"bogus"}},
		{" pinned , , error ", TrackerStatusPinned | TrackerStatusError, nil},
		{"undefined,remote", TrackerStatusRemote, []string{"undefined"}},
	}
	for _, tc := range statuses {
		got, unknown, err := ParseTrackerStatusFilter(tc.in)
		if err != nil || got != tc.want || !slices.Equal(unknown, tc.unknown) {
			t.Errorf("ParseTrackerStatusFilter(%q) = %d, %q, %v; want %d, %q", tc.in, got, unknown, err, tc.want, tc.unknown)
		}
	}
	for _, in := range []string{"bogus", "undefined", "bogus,,other"} {
		if _, _, err := ParseTrackerStatusFilter(in); err == nil || !strings.Contains(err.Error(), "no tracker status named") {
			t.Errorf("ParseTrackerStatusFilter(%q): %v, want an error saying no status is named", in, err)
		}
	}
	types := []struct {
		in      string
		want    PinType
		unknown []string
	}{
		{"", AllType, nil},
		{"bogus,pin", DataType, []string{"bogus"}},
		{"meta-pin,all", AllType, nil},
	}
	for _, tc := range types {
		got, unknown, err := ParsePinTypeFilter(tc.in)
		if err != nil || got != tc.want || !slices.Equal(unknown, tc.unknown) {
			t.Errorf("ParsePinTypeFilter(%q) = %d, %q, %v; want %d, %q", tc.in, got, unknown, err, tc.want, tc.unknown)
		}
	}
	if _, _, err := ParsePinTypeFilter("pins"); err == nil || !strings.Contains(err.Error(), `"pins"`) {
		t.Errorf(`ParsePinTypeFilter("pins"): %v, want an error naming the list`, err)
	}
}

func FuzzPinOptionsFromQuery(f *testing.F) {
	f.Add("")
	f.Add("replication-min=2&replication-max=3&name=x&mode=direct&shard-size=10")
	f.Add("replication=-1&expire-in=1h&meta-kind=text&meta-=skipped")
	f.Add("user-allocations=" + testPeer1 + "," + testPeer2 + "&pin-update=" + testCid2)
	f.Add("expire-at=2030-01-02T03:04:05.5%2B02:00&origins=/ip4/1.2.3.4/tcp/1/p2p/" + testPeer1)
	f.Add("mode=DIRECT&origins=/dns4/a.b/tcp/1/p2p/" + testPeer2 + ",/ip6/::1/udp/1/quic-v1/p2p/" + testPeer1)
	f.Add("replication-min=9999999999999999999999&shard-size=18446744073709551616")
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		po, err := PinOptionsFromQuery(q)
		if err != nil {
			return
		}
		again, err := PinOptionsFromQuery(PinOptionsToQuery(po))
		if err != nil {
			t.Fatalf("options parsed from %q do not parse after encoding: %v", raw, err)
		}
		if !sameOptions(again, po) {
			t.Fatalf("round trip of %q changed the options:\n got %+v\nwant %+v", raw, again, po)
		}
	})
}

// A filter of several statuses crosses the wire to other peers intact.
func TestTrackerStatusFilterJSON(t *testing.T) {
	for _, f := range []TrackerStatus{
		TrackerStatusUndefined, TrackerStatusPinned, TrackerStatusError, TrackerStatusQueued,
		TrackerStatusRemote | TrackerStatusPinError,
		TrackerStatusError | TrackerStatusUnexpectedlyUnpinned | TrackerStatusPinQueued,
	} {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		var back TrackerStatus
		if err := json.Unmarshal(b, &back); err != nil || back != f {
			t.Errorf("%d: %s decodes to %d (%v)", f, b, back, err)
		}
	}
	if s := (TrackerStatusRemote | TrackerStatusPinError).String(); s != "pin_error,remote" {
		t.Errorf("String = %q", s)
	}
}
