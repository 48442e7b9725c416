package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

const (
	testPeer1 = "QmUBuxVHoNNjfmNpTad36UeaFQv3gXAtCv9r6KhmeqhEhD"
	testPeer2 = "QmV35LjbEGPfN7KfMAJp43VV2enwXqqQf5esx4vUcgHDQJ"
	testCid1  = "QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco"
	testCid2  = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
)

func mustCid(t *testing.T, s string) api.Cid {
	t.Helper()
	c, err := api.DecodeCid(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hostOf gives the multiaddress of an httptest server.
func hostOf(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(u.Host)
	return fmt.Sprintf("/ip4/%s/tcp/%s", host, port)
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedPort returns the address of a loopback port nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", addr.Port)
}

// writeStream answers like the reference's streaming routes: 204 without
// items and without error, 500 with an error before the first item,
// otherwise 200, NDJSON, and the X-Stream-Error trailer.
func writeStream(w http.ResponseWriter, items []string, streamErr string) {
	if len(items) == 0 {
		if streamErr != "" {
			writeError(w, http.StatusInternalServerError, streamErr)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Trailer", "X-Stream-Error")
	w.WriteHeader(http.StatusOK)
	for _, it := range items {
		fmt.Fprintln(w, it)
		w.(http.Flusher).Flush()
	}
	w.Header().Set("X-Stream-Error", streamErr)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Code: code, Message: msg})
}

func pinJSON(c string) string {
	return `{"replication_factor_min":1,"replication_factor_max":2,"name":"n","mode":"recursive","shard_size":0,` +
		`"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"origins":[],"cid":"` + c +
		`","type":"pin","allocations":["` + testPeer1 + `"],"max_depth":-1,"reference":null,"timestamp":"2024-05-01T10:00:00Z"}`
}

func TestStreams(t *testing.T) {
	var gotQuery url.Values
	mux := http.NewServeMux()
	mux.HandleFunc("GET /allocations", func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.Query()
		writeStream(w, []string{pinJSON(testCid1), pinJSON(testCid2)}, "")
	})
	mux.HandleFunc("GET /pins", func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.Query()
		writeStream(w, []string{`{"cid":"` + testCid1 + `","peer_map":{}}`}, "peer 2 is gone")
	})
	mux.HandleFunc("POST /pins/recover", func(w http.ResponseWriter, r *http.Request) {
		writeStream(w, nil, "")
	})
	mux.HandleFunc("GET /peers", func(w http.ResponseWriter, r *http.Request) {
		writeStream(w, nil, "cannot list peers")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newClient(t, Config{Hosts: []string{hostOf(t, srv)}})
	ctx := context.Background()

	var pins []string
	err := c.Allocations(ctx, api.DataType|api.MetaType, func(p api.Pin) error {
		pins = append(pins, p.Cid.String())
		return nil
	})
	if err != nil {
		t.Fatalf("Allocations: %v", err)
	}
	if !slices.Equal(pins, []string{testCid1, testCid2}) {
		t.Errorf("pins %v", pins)
	}
	if got := gotQuery.Get("filter"); got != "pin,meta-pin" {
		t.Errorf("filter %q", got)
	}

	n := 0
	err = c.StatusAll(ctx, api.TrackerStatusError, true, func(api.GlobalPinInfo) error { n++; return nil })
	var apiErr api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != 500 || apiErr.Message != "peer 2 is gone" || n != 1 {
		t.Errorf("trailer error: got %v (%#v) after %d items", err, err, n)
	}
	if gotQuery.Get("filter") != "error" || gotQuery.Get("local") != "true" || !gotQuery.Has("cids") {
		t.Errorf("status query %v", gotQuery)
	}

	err = c.StatusCids(ctx, []api.Cid{mustCid(t, testCid1), mustCid(t, testCid2)}, false, func(api.GlobalPinInfo) error { return nil })
	if !errors.As(err, &apiErr) {
		t.Fatalf("StatusCids: %v", err)
	}
	if got := gotQuery.Get("cids"); got != testCid1+","+testCid2 {
		t.Errorf("cids %q", got)
	}

	if err := c.RecoverAll(ctx, false, func(api.GlobalPinInfo) error { t.Error("item in a 204 stream"); return nil }); err != nil {
		t.Errorf("empty stream: %v", err)
	}

	err = c.Peers(ctx, func(api.ID) error { return nil })
	if !errors.As(err, &apiErr) || apiErr.Code != 500 || apiErr.Message != "cannot list peers" {
		t.Errorf("error before the first item: %v", err)
	}

	stop := errors.New("enough")
	seen := 0
	err = c.Allocations(ctx, api.AllType, func(api.Pin) error { seen++; return stop })
	if !errors.Is(err, stop) || seen != 1 {
		t.Errorf("aborting the stream: %v after %d items", err, seen)
	}
	if gotQuery.Get("filter") != "all" {
		t.Errorf("filter %q", gotQuery.Get("filter"))
	}
}

func TestErrorReplies(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /allocations/{cid}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "pin is not part of the pinset")
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintln(w, "upstream down")
	})
	mux.HandleFunc("GET /id", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	mux.HandleFunc("GET /health/alerts", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "not json")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newClient(t, Config{Hosts: []string{hostOf(t, srv)}})
	ctx := context.Background()

	_, err := c.Allocation(ctx, mustCid(t, testCid1))
	if want := (api.Error{Code: 404, Message: "pin is not part of the pinset"}); err != want {
		t.Errorf("JSON error: got %#v, want %#v", err, want)
	}
	_, err = c.Version(ctx)
	if want := (api.Error{Code: 502, Message: "upstream down"}); err != want {
		t.Errorf("text error: got %#v, want %#v", err, want)
	}
	_, err = c.ID(ctx)
	if want := (api.Error{Code: 401, Message: "Unauthorized"}); err != want {
		t.Errorf("empty error: got %#v, want %#v", err, want)
	}
	_, err = c.Alerts(ctx)
	var apiErr api.Error
	if err == nil || errors.As(err, &apiErr) {
		t.Errorf("undecodable reply must be a local error, got %#v", err)
	}
}

func TestPinRequests(t *testing.T) {
	type call struct{ method, path, rawQuery, auth string }
	var calls []call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		calls = append(calls, call{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, user + ":" + pass})
		fmt.Fprint(w, pinJSON(testCid1))
	}))
	defer srv.Close()
	c := newClient(t, Config{Hosts: []string{srv.URL}, Username: "user", Password: "pw"})
	ctx := context.Background()
	opts := api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 2, Name: "a b", Mode: api.PinModeDirect}

	pin, err := c.PinPath(ctx, testCid1, opts)
	if err != nil {
		t.Fatal(err)
	}
	if pin.Cid.String() != testCid1 || pin.ReplicationFactorMax != 2 || len(pin.Allocations) != 1 {
		t.Errorf("decoded pin %+v", pin)
	}
	if _, err := c.PinPath(ctx, "/ipns/example.com/a dir/x?y", api.PinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pin(ctx, mustCid(t, testCid2), api.PinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UnpinPath(ctx, "/ipfs/"+testCid1+"/sub/"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unpin(ctx, mustCid(t, testCid2)); err != nil {
		t.Fatal(err)
	}
	want := []call{
		{"POST", "/pins/ipfs/" + testCid1, api.PinOptionsToQuery(opts).Encode(), "user:pw"},
		{"POST", "/pins/ipns/example.com/a%20dir/x%3Fy", api.PinOptionsToQuery(api.PinOptions{}).Encode(), "user:pw"},
		{"POST", "/pins/" + testCid2, api.PinOptionsToQuery(api.PinOptions{}).Encode(), "user:pw"},
		{"DELETE", "/pins/ipfs/" + testCid1 + "/sub", "", "user:pw"},
		{"DELETE", "/pins/" + testCid2, "", "user:pw"},
	}
	if !slices.Equal(calls, want) {
		t.Errorf("requests:\n got %v\nwant %v", calls, want)
	}

	if _, err := c.PinPath(ctx, "XXXinvalid-CIDXXX", opts); err == nil || !strings.Contains(err.Error(), "XXXinvalid-CIDXXX") {
		t.Errorf("bad CID: %v", err)
	}
	if len(calls) != len(want) {
		t.Error("a bad path reached the server")
	}
}

func TestIPFSPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{testCid1, "/ipfs/" + testCid1},
		{testCid1 + "/a/b", "/ipfs/" + testCid1 + "/a/b"},
		{"/ipfs/" + testCid2 + "/", "/ipfs/" + testCid2},
		{"/ipld/" + testCid2 + "//x", "/ipld/" + testCid2 + "/x"},
		{"/ipns/example.com", "/ipns/example.com"},
	}
	for _, tc := range cases {
		got, err := IPFSPath(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("IPFSPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "/", "/ipfs/", "/ipfs/nope", "notacid", "/foo/" + testCid1, "/ipns/"} {
		if got, err := IPFSPath(bad); err == nil {
			t.Errorf("IPFSPath(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFailover(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"version":"1.1.6"}`)
	}))
	defer srv.Close()
	c := newClient(t, Config{Hosts: []string{closedPort(t), hostOf(t, srv)}})
	v, err := c.Version(context.Background())
	if err != nil || v.Version != "1.1.6" {
		t.Fatalf("failover: %v, %v", v, err)
	}

	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, 500, "boom")
	}))
	defer failing.Close()
	c = newClient(t, Config{Hosts: []string{hostOf(t, failing), hostOf(t, srv)}})
	hits.Store(0)
	if _, err := c.Version(context.Background()); err == nil || hits.Load() != 0 {
		t.Errorf("a server that answered must not be retried elsewhere: err %v, hits %d", err, hits.Load())
	}

	c = newClient(t, Config{Hosts: []string{closedPort(t)}})
	_, err = c.Version(context.Background())
	var apiErr api.Error
	if err == nil || errors.As(err, &apiErr) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("transport error should stay a plain error: %#v", err)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newClient(t, Config{Hosts: []string{hostOf(t, srv)}, Timeout: 50 * time.Millisecond})
	_, err := c.ID(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}
}

func TestUnixSocketAndHealth(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			writeError(w, 404, "not found")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(l)
	defer srv.Close()
	c := newClient(t, Config{Hosts: []string{"/unix" + sock}})
	if err := c.Health(context.Background()); err != nil {
		t.Errorf("health over a unix socket: %v", err)
	}
}

func TestNewRejectsBadHosts(t *testing.T) {
	for _, h := range []string{
		"not an address",
		"/ip4/127.0.0.1/udp/9094",
		"/ip4/127.0.0.1/tcp/9096/p2p/" + testPeer1,
		"/dnsaddr/example.com",
		"http://",
	} {
		if _, err := New(Config{Hosts: []string{h}}); err == nil {
			t.Errorf("New accepted host %q", h)
		}
	}
	c := newClient(t, Config{})
	if got := c.endpoints[0].String(); got != "http://127.0.0.1:9094" {
		t.Errorf("default endpoint %s", got)
	}
	c = newClient(t, Config{Hosts: []string{"/dns4/localhost/tcp/1", "https://example.com:8443/api/"}, SSL: true})
	if got := c.endpoints[0].String() + " " + c.endpoints[1].String(); got != "https://localhost:1 https://example.com:8443/api" {
		t.Errorf("endpoints %s", got)
	}
}

func TestWaitFor(t *testing.T) {
	p1, _ := peer.Decode(testPeer1)
	p2, _ := peer.Decode(testPeer2)
	gpi := func(s1, s2 api.TrackerStatus) string {
		b, _ := json.Marshal(api.GlobalPinInfo{
			Cid: mustCid(t, testCid1),
			PeerMap: map[string]api.PinInfoShort{
				p1.String(): {PeerName: "one", Status: s1},
				p2.String(): {PeerName: "two", Status: s2},
			},
		})
		return string(b)
	}
	var polls atomic.Int32
	replies := map[string][]string{
		"pinned": {gpi(api.TrackerStatusPinQueued, api.TrackerStatusPinning), gpi(api.TrackerStatusPinned, api.TrackerStatusPinning), gpi(api.TrackerStatusPinned, api.TrackerStatusRemote)},
		"failed": {gpi(api.TrackerStatusPinning, api.TrackerStatusPinning), gpi(api.TrackerStatusPinError, api.TrackerStatusPinned)},
		"gone":   {gpi(api.TrackerStatusUnpinning, api.TrackerStatusUnpinned)},
	}
	var scenario atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list := replies[scenario.Load().(string)]
		n := int(polls.Add(1)) - 1
		if n >= len(list) {
			writeError(w, 404, "pin is not part of the pinset")
			return
		}
		fmt.Fprint(w, list[n])
	}))
	defer srv.Close()
	c := newClient(t, Config{Hosts: []string{hostOf(t, srv)}})
	ctx := context.Background()
	wait := func(name string, target api.TrackerStatus, limit int) (api.GlobalPinInfo, int, error) {
		scenario.Store(name)
		polls.Store(0)
		st, err := c.WaitFor(ctx, WaitParams{Cid: mustCid(t, testCid1), Target: target, Limit: limit, CheckFreq: time.Millisecond})
		return st, int(polls.Load()), err
	}

	st, n, err := wait("pinned", api.TrackerStatusPinned, 0)
	if err != nil || n != 3 || st.PeerMap[testPeer2].Status != api.TrackerStatusRemote {
		t.Errorf("all peers (remote counts): %v after %d polls, %+v", err, n, st)
	}
	_, n, err = wait("pinned", api.TrackerStatusPinned, 1)
	if err != nil || n != 2 {
		t.Errorf("limit 1: %v after %d polls", err, n)
	}
	_, n, err = wait("failed", api.TrackerStatusPinned, 0)
	if err == nil || n != 2 || !strings.Contains(err.Error(), "one reports pin_error") {
		t.Errorf("pin_error must stop the wait: %v after %d polls", err, n)
	}
	st, _, err = wait("gone", api.TrackerStatusUnpinned, 0)
	if err != nil || !st.Cid.Defined() {
		t.Errorf("unpinned and gone: %v, %+v", err, st)
	}
	_, _, err = wait("gone", api.TrackerStatusPinned, 0)
	if !errors.As(err, new(api.Error)) {
		t.Errorf("404 while waiting for pinned must fail: %v", err)
	}

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	scenario.Store("pinned")
	polls.Store(0)
	_, err = c.WaitFor(short, WaitParams{Cid: mustCid(t, testCid1), Target: api.TrackerStatusPinned, CheckFreq: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}
}

func TestStatusReached(t *testing.T) {
	peers := func(sts ...api.TrackerStatus) api.GlobalPinInfo {
		g := api.GlobalPinInfo{PeerMap: map[string]api.PinInfoShort{}}
		for i, s := range sts {
			g.PeerMap[fmt.Sprintf("peer%d", i)] = api.PinInfoShort{Status: s}
		}
		return g
	}
	P, R, U, Q := api.TrackerStatusPinned, api.TrackerStatusRemote, api.TrackerStatusUnpinned, api.TrackerStatusPinQueued
	cases := []struct {
		gpi    api.GlobalPinInfo
		target api.TrackerStatus
		limit  int
		done   bool
		err    bool
	}{
		{peers(P, P), P, 0, true, false},
		{peers(P, R), P, 0, true, false},
		{peers(U, R), U, 0, false, false},
		{peers(P, Q), P, 0, false, false},
		{peers(P, Q), P, 1, true, false},
		{peers(P, Q, Q), P, 2, false, false},
		{peers(P), P, 5, true, false},
		{peers(R, R), P, 1, false, false},
		{peers(P, P), P, -1, true, false},
		{peers(), P, 0, true, false},
		{peers(P, api.TrackerStatusClusterError), P, 1, false, true},
		{peers(U, api.TrackerStatusUnpinError), U, 0, false, true},
		{peers(P, api.TrackerStatusUndefined), P, 0, false, true},
	}
	for i, tc := range cases {
		done, err := statusReached(tc.gpi, tc.target, tc.limit)
		if done != tc.done || (err != nil) != tc.err {
			t.Errorf("case %d: done %t err %v; want done %t err %t", i, done, err, tc.done, tc.err)
		}
	}
}

func TestMetricsEscapesTheName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.EscapedPath() != "/monitor/metrics/free%20space" {
			writeError(w, 404, "not found: "+r.URL.EscapedPath())
			return
		}
		fmt.Fprint(w, `[{"name":"free space","peer":"`+testPeer1+`","value":"1","expire":1,"valid":true,"weight":1,"partitionable":false,"received_at":1}]`)
	}))
	defer srv.Close()
	c := newClient(t, Config{Hosts: []string{hostOf(t, srv)}})
	ms, err := c.Metrics(context.Background(), "free space")
	if err != nil || len(ms) != 1 || ms[0].Peer.String() != testPeer1 {
		t.Errorf("metrics: %v %+v", err, ms)
	}
	if _, err := c.Metrics(context.Background(), ""); err == nil {
		t.Error("empty metric name accepted")
	}
}

// TestTransportErrorLeavesTheQueryOut: a failed request names the call by
// its path, without the query, which buries the reason at the end of a
// long line.
func TestTransportErrorLeavesTheQueryOut(t *testing.T) {
	c := newClient(t, Config{Hosts: []string{closedPort(t)}})
	err := c.StatusAll(context.Background(), api.TrackerStatusPinError, false, func(api.GlobalPinInfo) error { return nil })
	if err == nil || strings.Contains(err.Error(), "filter=") || !strings.Contains(err.Error(), "/pins\"") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("StatusAll against a closed port: %v", err)
	}
}
