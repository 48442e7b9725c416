package restapi_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/internal/kubo/kubotest"
)

type reply struct {
	code    int
	body    []byte
	header  http.Header
	trailer http.Header
}

func do(t *testing.T, p *daemontest.Peer, method, path string) reply {
	t.Helper()
	return doAuthed(t, p, method, path, "")
}

// doAuthed is do with an Authorization header ("" for none).
func doAuthed(t *testing.T, p *daemontest.Peer, method, path, auth string) reply {
	t.Helper()
	return send(t, p, method, path, auth, nil)
}

// send makes a request with an Authorization header ("" for none) and a
// body (nil for none).
func send(t *testing.T, p *daemontest.Peer, method, path, auth string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, p.APIURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, data, resp.Header, resp.Trailer}
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

func lines[T any](t *testing.T, r reply) []T {
	t.Helper()
	var out []T
	sc := bufio.NewScanner(strings.NewReader(string(r.body)))
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("decode line %q: %v", sc.Text(), err)
		}
		out = append(out, v)
	}
	return out
}

func wantError(t *testing.T, r reply, code int, contains string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %s", r.code, code, r.body)
	}
	e := decode[api.Error](t, r)
	if e.Code != code || !strings.Contains(e.Message, contains) {
		t.Fatalf("error body %+v, want code %d and %q", e, code, contains)
	}
}

func waitStatus(t *testing.T, p *daemontest.Peer, cid string, want api.TrackerStatus) api.GlobalPinInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var gpi api.GlobalPinInfo
	for time.Now().Before(deadline) {
		r := do(t, p, "GET", "/pins/"+cid)
		if r.code != http.StatusOK {
			t.Fatalf("status %s: %d %s", cid, r.code, r.body)
		}
		gpi = decode[api.GlobalPinInfo](t, r)
		if pi, ok := gpi.PeerMap[p.Identity.ID.String()]; ok && pi.Status == want {
			return gpi
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never reached %s: %+v", cid, want, gpi.PeerMap)
	return gpi
}

func TestIdentityAndVersion(t *testing.T) {
	p := daemontest.Start(t, nil)
	id := decode[api.ID](t, do(t, p, "GET", "/id"))
	if id.ID != p.Identity.ID || id.Version != api.Version || id.Peername != p.Config.Cluster.Peername {
		t.Fatalf("id: %+v", id)
	}
	if v := decode[api.VersionInfo](t, do(t, p, "GET", "/version")); v.Version != "1.1.6" {
		t.Fatalf("version %+v", v)
	}
	peers := lines[api.ID](t, do(t, p, "GET", "/peers"))
	if len(peers) != 1 || peers[0].ID != p.Identity.ID {
		t.Fatalf("peers: %+v", peers)
	}
	if r := do(t, p, "GET", "/health"); r.code != http.StatusNoContent {
		t.Fatalf("health: %d", r.code)
	}
	added := decode[api.ID](t, send(t, p, "POST", "/peers", "", strings.NewReader(`{"peer_id":"`+p.Identity.ID.String()+`"}`)))
	if added.ID != p.Identity.ID || len(added.ClusterPeers) != 1 {
		t.Fatalf("peer add of itself: %+v", added)
	}
}

func TestBadInput(t *testing.T) {
	p := daemontest.Start(t, nil)
	wantError(t, do(t, p, "POST", "/pins/notacid"), 400, "error decoding Cid")
	wantError(t, do(t, p, "GET", "/nothing/here"), 404, "not found")
	wantError(t, do(t, p, "GET", "/pins?filter=pinnedd"), 400, "pinnedd")
	wantError(t, do(t, p, "GET", "/allocations?filter=pins"), 400, "pins")
	// As in the reference, a list naming one known filter ignores the rest.
	for _, path := range []string{"/pins?filter=pinnedd,pin_error", "/allocations?filter=pins,pin"} {
		if r := do(t, p, "GET", path); r.code != http.StatusOK && r.code != http.StatusNoContent {
			t.Errorf("GET %s: %d %s, want the listing", path, r.code, r.body)
		}
	}
	c := kubotest.AddFiles(t, p.Kubo, 1)[0]
	wantError(t, do(t, p, "POST", "/pins/"+c+"?replication-min=x"), 400, "replication-min")
	wantError(t, do(t, p, "POST", "/pins/"+c+"?mode=sideways"), 400, "mode")
	wantError(t, do(t, p, "POST", "/pins/"+c+"?expire-at=2001-01-01T00:00:00Z"), 400, "past")
	wantError(t, do(t, p, "GET", "/allocations/"+c), 404, "pin is not part of the pinset")
	wantError(t, do(t, p, "DELETE", "/pins/"+c), 404, "pin is not part of the pinset")
	wantError(t, send(t, p, "POST", "/peers", "", strings.NewReader(`{"peer_id":`)), 400, "error decoding request body")
	wantError(t, send(t, p, "POST", "/peers", "", strings.NewReader(`{"peer_id":"12D3KooNope"}`)), 400, `error decoding peer_id "12D3KooNope"`)
	wantError(t, send(t, p, "POST", "/peers", "", strings.NewReader(`{"peer_id":"`+strings.Repeat(" ", 1<<20)+`"}`)), 400, "request body too large")
	// A well-formed ID of no running peer: nothing to dial.
	stranger := "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
	wantError(t, send(t, p, "POST", "/peers", "", strings.NewReader(`{"peer_id":"`+stranger+`"}`)), 500, "add peer "+stranger)
	if r := do(t, p, "POST", "/pins/"+c+"/"); r.code != http.StatusTemporaryRedirect || r.header.Get("Location") != "/pins/"+c {
		t.Fatalf("trailing slash: %d %q", r.code, r.header.Get("Location"))
	}
}

func TestPinLifecycle(t *testing.T) {
	p := daemontest.Start(t, nil)
	c := kubotest.AddFiles(t, p.Kubo, 1)[0]
	q := url.Values{"name": {"first"}, "meta-owner": {"alice"}, "expire-in": {"1h"}}
	r := do(t, p, "POST", "/pins/"+c+"?"+q.Encode())
	if r.code != 200 {
		t.Fatalf("pin: %d %s", r.code, r.body)
	}
	pin := decode[api.Pin](t, r)
	if pin.Name != "first" || pin.Metadata["owner"] != "alice" || pin.ExpireAt.IsZero() || pin.ReplicationFactorMin != -1 {
		t.Fatalf("pin reply: %+v", pin)
	}
	waitStatus(t, p, c, api.TrackerStatusPinned)

	// Pinning again with other options updates, never duplicates.
	r = do(t, p, "POST", "/pins/"+c+"?name=second")
	if r.code != 200 {
		t.Fatalf("repin: %d %s", r.code, r.body)
	}
	all := do(t, p, "GET", "/allocations")
	pins := lines[api.Pin](t, all)
	if len(pins) != 1 || pins[0].Name != "second" {
		t.Fatalf("allocations after repin: %+v", pins)
	}
	if all.trailer.Get("X-Stream-Error") != "" {
		t.Fatalf("stream error trailer: %q", all.trailer.Get("X-Stream-Error"))
	}
	if got := decode[api.Pin](t, do(t, p, "GET", "/allocations/"+c)); got.Name != "second" {
		t.Fatalf("allocation: %+v", got)
	}

	r = do(t, p, "DELETE", "/pins/"+c)
	if r.code != 200 {
		t.Fatalf("unpin: %d %s", r.code, r.body)
	}
	waitStatus(t, p, c, api.TrackerStatusUnpinned)
	if kubotest.Pins(t, p.Kubo, "recursive")[c] {
		t.Fatal("kubo still holds the pin")
	}
	if r := do(t, p, "GET", "/allocations"); r.code != http.StatusNoContent {
		t.Fatalf("empty allocations: %d %s", r.code, r.body)
	}
}

func TestDirectModeOnCidRoute(t *testing.T) {
	p := daemontest.Start(t, nil)
	c := kubotest.AddFiles(t, p.Kubo, 1)[0]
	r := do(t, p, "POST", "/pins/"+c+"?mode=direct")
	if pin := decode[api.Pin](t, r); r.code != 200 || pin.Mode != api.PinModeDirect || pin.MaxDepth != 0 {
		t.Fatalf("direct pin: %d %s", r.code, r.body)
	}
	waitStatus(t, p, c, api.TrackerStatusPinned)
	if !kubotest.Pins(t, p.Kubo, "direct")[c] {
		t.Fatal("kubo holds no direct pin")
	}
}

func TestPathPinResolvesLeaf(t *testing.T) {
	p := daemontest.Start(t, nil)
	dir := t.TempDir()
	kubotest.WriteTree(t, dir, map[string]string{"sub/path/leaf.txt": "leaf content", "top.txt": "top"})
	root, err := p.Kubo.Run(t.Context(), "add", "-Q", "-r", "--pin=false", dir)
	if err != nil {
		t.Fatal(err)
	}
	root = strings.TrimSpace(root)
	leaf, err := p.Kubo.Run(t.Context(), "resolve", "/ipfs/"+root+"/sub/path/leaf.txt")
	if err != nil {
		t.Fatal(err)
	}
	leafCid := strings.TrimPrefix(strings.TrimSpace(leaf), "/ipfs/")
	r := do(t, p, "POST", "/pins/ipfs/"+root+"/sub/path/leaf.txt")
	if r.code != 200 {
		t.Fatalf("path pin: %d %s", r.code, r.body)
	}
	if pin := decode[api.Pin](t, r); pin.Cid.String() != leafCid {
		t.Fatalf("pinned %s, want the leaf %s", pin.Cid, leafCid)
	}
	waitStatus(t, p, leafCid, api.TrackerStatusPinned)
	r = do(t, p, "DELETE", "/pins/ipfs/"+root+"/sub/path/leaf.txt")
	if r.code != 200 {
		t.Fatalf("path unpin: %d %s", r.code, r.body)
	}
	waitStatus(t, p, leafCid, api.TrackerStatusUnpinned)
	// Paths that do not resolve are the client's error, said once.
	for _, path := range []string{"/pins/ipfs/garbage", "/pins/ipfs/" + root + "/no/such/link"} {
		r := do(t, p, "POST", path)
		wantError(t, r, 400, "invalid IPFS path")
		if n := strings.Count(string(r.body), "resolve /ipfs/"); n != 1 {
			t.Fatalf("%s: %s", path, r.body)
		}
	}
}

// TestExpiredPinIsUnpinned pins with expire-in: the pin leaves the pinset
// and kubo when it expires, not at the next state_sync_interval (an hour
// here); a pin that expired while the peer was down leaves at its start.
func TestExpiredPinIsUnpinned(t *testing.T) {
	p := daemontest.Start(t, func(c *config.Config) { c.Cluster.StateSyncInterval = config.Duration(time.Hour) })
	cids := kubotest.AddFiles(t, p.Kubo, 2)
	gone := func(c string) func() bool {
		return func() bool {
			return do(t, p, "GET", "/allocations/"+c).code == http.StatusNotFound && !kubotest.Pins(t, p.Kubo, "recursive")[c]
		}
	}
	waitGone := func(c string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !gone(c)() {
			if time.Now().After(deadline) {
				t.Fatalf("%s still in the pinset or in kubo %s after it expired", c, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i, c := range cids {
		if r := do(t, p, "POST", fmt.Sprintf("/pins/%s?expire-in=%ds", c, 2+2*i)); r.code != 200 {
			t.Fatalf("pin: %d %s", r.code, r.body)
		}
		waitStatus(t, p, c, api.TrackerStatusPinned)
	}
	waitGone(cids[0], 5*time.Second)
	if gone(cids[1])() {
		t.Fatalf("%s unpinned before it expired", cids[1])
	}
	p.Stop()
	time.Sleep(3 * time.Second) // the second expires meanwhile
	q, err := daemon.Start(p.Dir, p.Config, p.Identity, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Stop)
	second, _ := api.DecodeCid(cids[1])
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := q.Cluster.PinGet(t.Context(), second)
		if errors.Is(err, cluster.ErrNotFound) && !kubotest.Pins(t, p.Kubo, "recursive")[cids[1]] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, which expired while the peer was stopped, still pinned 5s after its start (%v)", cids[1], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStatusFiltersAndRecover(t *testing.T) {
	p := daemontest.Start(t, nil)
	cids := kubotest.AddFiles(t, p.Kubo, 4)
	for _, c := range cids[:2] {
		if r := do(t, p, "POST", "/pins/"+c); r.code != 200 {
			t.Fatalf("pin: %d %s", r.code, r.body)
		}
		waitStatus(t, p, c, api.TrackerStatusPinned)
	}
	if err := p.Kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cids[2:] {
		if r := do(t, p, "POST", "/pins/"+c); r.code != 200 {
			t.Fatalf("pin with kubo down: %d %s", r.code, r.body)
		}
		waitStatus(t, p, c, api.TrackerStatusPinError)
	}
	errs := lines[api.GlobalPinInfo](t, do(t, p, "GET", "/pins?local=true&filter=pin_error"))
	if len(errs) != 2 {
		t.Fatalf("pin_error filter: %d items", len(errs))
	}
	for _, g := range errs {
		pi := g.PeerMap[p.Identity.ID.String()]
		if pi.Error == "" || pi.AttemptCount < 1 {
			t.Fatalf("error item without error text or attempts: %+v", pi)
		}
	}
	// With kubo down, what it held cannot be said to be pinned.
	if n := len(lines[api.GlobalPinInfo](t, do(t, p, "GET", "/pins?filter=pinned"))); n != 0 {
		t.Fatalf("pinned filter with kubo down: %d items", n)
	}
	if n := len(lines[api.GlobalPinInfo](t, do(t, p, "GET", "/pins?filter=cluster_error"))); n != 2 {
		t.Fatalf("cluster_error filter with kubo down: %d items, want the 2 pinned before", n)
	}
	if n := len(lines[api.GlobalPinInfo](t, do(t, p, "GET", "/pins?cids="+cids[0]+","+cids[3]))); n != 2 {
		t.Fatalf("cids: %d items", n)
	}
	if err := p.Kubo.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := do(t, p, "POST", "/pins/recover")
	if r.code != 200 && r.code != http.StatusNoContent {
		t.Fatalf("recover all: %d %s", r.code, r.body)
	}
	for _, c := range cids[2:] {
		waitStatus(t, p, c, api.TrackerStatusPinned)
	}
	if r := do(t, p, "POST", "/pins/"+cids[0]+"/recover"); r.code != 200 {
		t.Fatalf("recover one: %d %s", r.code, r.body)
	}
}

func TestMetricsAlertsAndGC(t *testing.T) {
	p := daemontest.Start(t, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		names := decode[[]string](t, do(t, p, "GET", "/monitor/metrics"))
		if strings.Contains(strings.Join(names, ","), "freespace") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no freespace metric: %v", names)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ms := decode[[]api.Metric](t, do(t, p, "GET", "/monitor/metrics/freespace"))
	if len(ms) != 1 || ms[0].Peer != p.Identity.ID || !ms[0].Valid || ms[0].Value == "" {
		t.Fatalf("freespace: %+v", ms)
	}
	if alerts := decode[[]api.Alert](t, do(t, p, "GET", "/health/alerts")); len(alerts) != 0 {
		t.Fatalf("alerts on a healthy peer: %+v", alerts)
	}
	gc := decode[api.GlobalRepoGC](t, do(t, p, "POST", "/ipfs/gc"))
	if g, ok := gc.PeerMap[p.Identity.ID.String()]; !ok || g.Error != "" {
		t.Fatalf("gc: %+v", gc)
	}
}

// TestIDWithKuboDown starts a peer whose kubo does not answer: GET /id and
// GET /peers still describe the peer, with kubo's error in place of its
// identity, as the reference's ctl expects to print them.
func TestIDWithKuboDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	p := daemontest.Start(t, func(c *config.Config) { c.IPFSConnector.IPFSHTTP.NodeMultiaddress = dead })
	cl := p.Client(t)
	id, err := cl.ID(t.Context())
	if err != nil {
		t.Fatalf("GET /id with kubo down: %v", err)
	}
	if id.ID != p.Identity.ID || id.IPFS.Error == "" || id.IPFS.ID != "" {
		t.Fatalf("GET /id with kubo down: %+v, IPFS %+v", id, id.IPFS)
	}
	var peers []api.ID
	if err := cl.Peers(t.Context(), func(id api.ID) error { peers = append(peers, id); return nil }); err != nil {
		t.Fatalf("GET /peers with kubo down: %v", err)
	}
	if len(peers) != 1 || peers[0].Error != "" || peers[0].IPFS.Error == "" {
		t.Fatalf("GET /peers with kubo down: %+v", peers)
	}
}

// TestStatusOfManyCids asks for the status of 300 CIDs at once, as ctl
// status with many arguments does: the client splits them so that no
// request line passes the server's max_header_bytes.
func TestStatusOfManyCids(t *testing.T) {
	p := daemontest.Start(t, nil)
	cids := make([]api.Cid, 300)
	for i := range cids {
		c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: -1}.Sum([]byte(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		cids[i] = api.NewCid(c)
	}
	seen := map[api.Cid]bool{}
	err := p.Client(t).StatusCids(t.Context(), cids, false, func(g api.GlobalPinInfo) error {
		seen[g.Cid] = true
		return nil
	})
	if err != nil || len(seen) != len(cids) {
		t.Fatalf("status of %d CIDs: %d answered (%v)", len(cids), len(seen), err)
	}
}
