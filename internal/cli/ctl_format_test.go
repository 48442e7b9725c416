package cli

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
)

const (
	ctlPeer1 = "QmUBuxVHoNNjfmNpTad36UeaFQv3gXAtCv9r6KhmeqhEhD"
	ctlPeer2 = "QmV35LjbEGPfN7KfMAJp43VV2enwXqqQf5esx4vUcgHDQJ"
	ctlPeer3 = "QmZ2ckU7G35MYyJgMTwMUnicsGqSy3YUxGBX7qny6MQmJu"
	ctlCid1  = "QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco"
	ctlCid2  = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
)

func ctlPID(t testing.TB, s string) peer.ID {
	t.Helper()
	p, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctlCID(t testing.TB, s string) api.Cid {
	t.Helper()
	c, err := api.DecodeCid(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctlMaddrs(t testing.TB, ss ...string) []api.Multiaddr {
	t.Helper()
	var out []api.Multiaddr
	for _, s := range ss {
		m, err := api.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func ctlCheckText(t *testing.T, name, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got: %q\nwant: %q", name, got, want)
	}
}

func TestCtlTextID(t *testing.T) {
	id := api.ID{
		ID:           ctlPID(t, ctlPeer1),
		Peername:     "alpha",
		ClusterPeers: []peer.ID{ctlPID(t, ctlPeer1), ctlPID(t, ctlPeer2), ctlPID(t, ctlPeer3)},
		Addresses:    ctlMaddrs(t, "/ip4/192.168.1.2/tcp/9096/p2p/"+ctlPeer1, "/ip4/127.0.0.1/tcp/9096/p2p/"+ctlPeer1),
		IPFS: api.IPFSID{
			ID:        ctlPID(t, ctlPeer3),
			Addresses: ctlMaddrs(t, "/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.1/tcp/4001"),
		},
	}
	ctlCheckText(t, "id", textID(id), ctlPeer1+" | alpha | Sees 2 other peers\n"+
		"  > Addresses:\n"+
		"    - /ip4/127.0.0.1/tcp/9096/p2p/"+ctlPeer1+"\n"+
		"    - /ip4/192.168.1.2/tcp/9096/p2p/"+ctlPeer1+"\n"+
		"  > IPFS: "+ctlPeer3+"\n"+
		"    - /ip4/10.0.0.1/tcp/4001\n"+
		"    - /ip4/127.0.0.1/tcp/4001\n")

	id.IPFS = api.IPFSID{Error: "connection refused"}
	id.Addresses = nil
	ctlCheckText(t, "ipfs error", textID(id), ctlPeer1+" | alpha | Sees 2 other peers\n"+
		"  > Addresses:\n"+
		"  > IPFS ERROR: connection refused\n")

	ctlCheckText(t, "peer error", textID(api.ID{ID: ctlPID(t, ctlPeer2), Error: "dial backoff"}),
		ctlPeer2+" | ERROR: dial backoff\n")

	ctlCheckText(t, "no ipfs", textID(api.ID{ID: ctlPID(t, ctlPeer2), ClusterPeers: []peer.ID{ctlPID(t, ctlPeer2)}}),
		ctlPeer2+" |  | Sees 0 other peers\n  > Addresses:\n  > IPFS: \n")
}

func TestCtlTextGlobalPinInfo(t *testing.T) {
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	gpi := api.GlobalPinInfo{
		Cid:  ctlCID(t, ctlCid1),
		Name: "docs",
		PeerMap: map[string]api.PinInfoShort{
			ctlPeer3: {PeerName: "gamma", Status: api.TrackerStatusPinError, TS: ts, Error: "context canceled", AttemptCount: 3},
			ctlPeer1: {PeerName: "alpha", Status: api.TrackerStatusPinned, TS: ts.Add(1500 * time.Millisecond), PriorityPin: true},
			ctlPeer2: {Status: api.TrackerStatusRemote, TS: ts},
		},
	}
	ctlCheckText(t, "status", textGlobalPinInfo(gpi), ctlCid1+" | docs:\n"+
		"    > alpha                : PINNED | 2024-05-01T10:00:01.5Z | Attempts: 0 | Priority: true\n"+
		"    > "+ctlPeer2+" : REMOTE | 2024-05-01T10:00:00Z | Attempts: 0 | Priority: false\n"+
		"    > gamma                : PIN_ERROR: context canceled | 2024-05-01T10:00:00Z | Attempts: 3 | Priority: false\n")

	ctlCheckText(t, "no name, no peers", textGlobalPinInfo(api.GlobalPinInfo{Cid: ctlCID(t, ctlCid2)}), ctlCid2+":\n")
}

func TestCtlTextPin(t *testing.T) {
	added := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	pin := api.Pin{
		PinOptions: api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 3, Name: "docs"},
		Cid:        ctlCID(t, ctlCid1),
		Type:       api.DataType,
		// Unsorted on purpose: the line sorts them.
		Allocations: []peer.ID{ctlPID(t, ctlPeer2), ctlPID(t, ctlPeer1)},
		MaxDepth:    -1,
		Timestamp:   added,
	}
	ctlCheckText(t, "recursive", textPin(pin), ctlCid1+" | docs | PIN | Repl. Factor: 2--3 | Allocations: ["+
		ctlPeer1+" "+ctlPeer2+"] | Recursive | Metadata: no | Exp: ∞ | Added: 2024-05-01 10:00:00\n")

	pin.Mode, pin.MaxDepth = api.PinModeDirect, 0
	pin.ReplicationFactorMin, pin.ReplicationFactorMax, pin.Allocations = -1, -1, nil
	pin.Metadata = map[string]string{"kind": "text"}
	pin.ExpireAt = time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC)
	pin.Timestamp = time.Time{}
	ctlCheckText(t, "direct everywhere", textPin(pin), ctlCid1+" | docs | PIN-DIRECT | Repl. Factor: -1 | Allocations: [everywhere]"+
		" | Direct | Metadata: yes | Exp: 2030-12-31 23:59:59 | Added: unknown\n")

	shard := api.Pin{Cid: ctlCID(t, ctlCid2), Type: api.ShardType, MaxDepth: 1, PinOptions: api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1}}
	ctlCheckText(t, "shard", textPin(shard), ctlCid2+" |  | SHARD-PIN | Repl. Factor: 1--1 | Allocations: [] | Recursive-1"+
		" | Metadata: no | Exp: ∞ | Added: unknown\n")
}

func TestCtlTextMetricsAndAlerts(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	metrics := []api.Metric{
		{Name: "freespace", Peer: ctlPID(t, ctlPeer1), Value: "12000000000", Weight: 12_000_000_000, Expire: now.Add(25 * time.Second).UnixNano()},
		{Name: "ping", Peer: ctlPID(t, ctlPeer2), Value: "", Expire: now.Add(-3 * time.Minute).UnixNano()},
	}
	o := &ctlOutput{now: func() time.Time { return now }}
	got, err := o.text(metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctlCheckText(t, "metrics", got,
		ctlPeer1+" | freespace: 12 GB | Expires in: 25 seconds from now\n"+
			ctlPeer2+" | ping:  | Expires in: 3 minutes ago\n")

	alerts := []api.Alert{{
		Metric:      api.Metric{Name: "ping", Peer: ctlPID(t, ctlPeer3), Expire: now.Add(-90 * time.Second).UnixNano()},
		TriggeredAt: now.Add(-1 * time.Second),
	}}
	got, err = o.text(alerts)
	if err != nil {
		t.Fatal(err)
	}
	ctlCheckText(t, "alerts", got, ctlPeer3+": ping. Expired at: 1 minute ago. Triggered at: 1 second ago\n")
}

func TestCtlHumanize(t *testing.T) {
	bytesCases := map[uint64]string{
		0: "0 B", 9: "9 B", 10: "10 B", 999: "999 B", 1000: "1.0 kB", 1499: "1.5 kB", 82854982: "83 MB",
		12_000_000_000: "12 GB", 9_940_000: "9.9 MB", 9_960_000: "10 MB", 1 << 62: "4.6 EB",
	}
	for n, want := range bytesCases {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	timeCases := []struct {
		d    time.Duration
		want string
	}{
		{0, "now"},
		{500 * time.Millisecond, "now"},
		{1500 * time.Millisecond, "1 second from now"},
		{25 * time.Second, "25 seconds from now"},
		{-25 * time.Second, "25 seconds ago"},
		{90 * time.Second, "1 minute from now"},
		{-59 * time.Minute, "59 minutes ago"},
		{3 * time.Hour, "3 hours from now"},
		{-36 * time.Hour, "1 day ago"},
		{10 * day, "1 week from now"},
		{-20 * day, "2 weeks ago"},
		{45 * day, "1 month from now"},
		{-100 * day, "3 months ago"},
		{400 * day, "1 year from now"},
		{-600 * day, "2 years ago"},
		{3 * year, "3 years from now"},
		{-40 * year, "a long while ago"},
	}
	for _, tc := range timeCases {
		if got := humanTime(now.Add(tc.d), now); got != tc.want {
			t.Errorf("humanTime(now%+v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestCtlTextRepoGCAndBandwidth(t *testing.T) {
	gc := api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{
		ctlPeer2: {Peer: ctlPID(t, ctlPeer2), Error: "repo locked"},
		ctlPeer1: {Peer: ctlPID(t, ctlPeer1), Peername: "alpha", Keys: []api.IPFSRepoGC{
			{Key: ctlCID(t, ctlCid1)}, {Error: "block busy"},
		}},
	}}
	ctlCheckText(t, "gc", textRepoGC(gc), "alpha          \n"+
		"  > CIDs:\n"+
		"    - "+ctlCid1+"\n"+
		"    - ERROR: block busy\n"+
		ctlPeer2+" | ERROR: repo locked\n"+
		"  > CIDs:\n")

	bw := client.BandwidthByProtocol{
		"/meshsub/1.1.0":       {TotalIn: 2_500_000, TotalOut: 120, RateIn: 12.345, RateOut: 0},
		"/ipfscluster/1.0/rpc": {TotalIn: 5, TotalOut: 7_000_000_000, RateIn: 1, RateOut: 1024.5},
	}
	ctlCheckText(t, "bandwidth", textBandwidth(bw),
		"     /ipfscluster/1.0/rpc: In:     5 B. Out:  7.0 GB. RateIn: 1.00B/s. RateOut: 1024.50B/s\n"+
			"           /meshsub/1.1.0: In:  2.5 MB. Out:   120 B. RateIn: 12.35B/s. RateOut: 0.00B/s\n")
}

// jsonKeys returns the top-level keys of the JSON the ctl prints for v.
func ctlJSONKeys(t *testing.T, v any) []string {
	t.Helper()
	var out bytes.Buffer
	if err := (&ctlOutput{json: true, stdout: &out}).print(v); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, out.String())
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestCtlJSONShapes(t *testing.T) {
	pin := api.Pin{Cid: ctlCID(t, ctlCid1), Type: api.DataType, MaxDepth: -1}
	// pin_update is always there (null when unset), as the reference prints it.
	pinKeys := []string{"allocations", "cid", "expire_at", "max_depth", "metadata", "mode", "name", "origins", "pin_update",
		"reference", "replication_factor_max", "replication_factor_min", "shard_size", "timestamp", "type", "user_allocations"}
	if got := ctlJSONKeys(t, pin); !slices.Equal(got, pinKeys) {
		t.Errorf("pin keys:\n got %v\nwant %v", got, pinKeys)
	}

	gpiKeys := []string{"allocations", "cid", "created", "metadata", "name", "origins", "peer_map"}
	if got := ctlJSONKeys(t, api.GlobalPinInfo{Cid: ctlCID(t, ctlCid1)}); !slices.Equal(got, gpiKeys) {
		t.Errorf("status keys:\n got %v\nwant %v", got, gpiKeys)
	}

	idKeys := []string{"addresses", "cluster_peers", "cluster_peers_addresses", "commit", "error", "id", "ipfs",
		"peername", "rpc_protocol_version", "version"}
	// A peer in error has the "ipfs" key too, as in the reference.
	if got := ctlJSONKeys(t, api.ID{ID: ctlPID(t, ctlPeer1), Error: "peer down"}); !slices.Equal(got, idKeys) {
		t.Errorf("id keys:\n got %v\nwant %v", got, idKeys)
	}

	var out bytes.Buffer
	o := &ctlOutput{json: true, stdout: &out}
	if err := o.print(api.VersionInfo{Version: "1.1.6"}); err != nil {
		t.Fatal(err)
	}
	if err := o.print([]string{"freespace", "ping"}); err != nil {
		t.Fatal(err)
	}
	want := "{\n    \"version\": \"1.1.6\"\n}\n[\n    \"freespace\",\n    \"ping\"\n]\n"
	ctlCheckText(t, "indented json", out.String(), want)

	out.Reset()
	gpi := api.GlobalPinInfo{Cid: ctlCID(t, ctlCid1), PeerMap: map[string]api.PinInfoShort{
		ctlPeer1: {PeerName: "alpha", Status: api.TrackerStatusPinned},
	}}
	if err := o.print(gpi); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\n    \"peer_map\": {\n        \""+ctlPeer1+"\": {\n            \"peername\": \"alpha\",") ||
		!strings.Contains(out.String(), `"status": "pinned"`) {
		t.Errorf("status JSON:\n%s", out.String())
	}
}
