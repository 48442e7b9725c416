package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
)

// fastPinStatus removes the pauses of pin add/rm/update for the test.
func fastPinStatus(t *testing.T) {
	delay, freq := ctlStatusDelay, ctlWaitCheckFreq
	ctlStatusDelay, ctlWaitCheckFreq = 0, time.Millisecond
	t.Cleanup(func() { ctlStatusDelay, ctlWaitCheckFreq = delay, freq })
}

// runCtl runs the ctl with args and returns its outputs and exit code.
func runCtl(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(Ctl(), args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	return stdout.String(), stderr.String(), code
}

// ctlFakeAPI is a REST API that answers like the reference, from canned
// values, and records the requests it gets ("METHOD /path?query").
type ctlFakeAPI struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	requests []string
	auth     []string
	// statuses are the successive replies of GET /pins/{cid}; the last
	// one repeats.
	statuses []api.GlobalPinInfo
}

func (f *ctlFakeAPI) host() string {
	u, _ := url.Parse(f.srv.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	return fmt.Sprintf("/ip4/%s/tcp/%s", host, port)
}

func (f *ctlFakeAPI) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests, f.auth = nil, nil
}

func (f *ctlFakeAPI) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *ctlFakeAPI) nextStatus() api.GlobalPinInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.statuses[0]
	if len(f.statuses) > 1 {
		f.statuses = f.statuses[1:]
	}
	return st
}

func newCtlFakeAPI(t *testing.T) *ctlFakeAPI {
	f := &ctlFakeAPI{t: t}
	p1, p2 := ctlPID(t, ctlPeer1), ctlPID(t, ctlPeer2)
	pin := func(c string) api.Pin {
		return api.Pin{
			PinOptions:  api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 2, Name: "docs"},
			Cid:         ctlCID(t, c),
			Type:        api.DataType,
			Allocations: []peer.ID{p1},
			MaxDepth:    -1,
			Timestamp:   time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC),
		}
	}
	gpi := func(c string, st api.TrackerStatus) api.GlobalPinInfo {
		return api.GlobalPinInfo{Cid: ctlCID(t, c), Name: "docs", PeerMap: map[string]api.PinInfoShort{
			ctlPeer1: {PeerName: "alpha", Status: st, TS: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		}}
	}
	f.statuses = []api.GlobalPinInfo{gpi(ctlCid1, api.TrackerStatusPinned)}
	id := func(p peer.ID, name string) api.ID {
		return api.ID{ID: p, Peername: name, ClusterPeers: []peer.ID{p1, p2}, IPFS: api.IPFSID{ID: p2}}
	}

	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	stream := func(w http.ResponseWriter, streamErr string, items ...any) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Trailer", "X-Stream-Error")
		enc := json.NewEncoder(w)
		for _, it := range items {
			enc.Encode(it)
		}
		w.Header().Set("X-Stream-Error", streamErr)
	}
	apiError := func(w http.ResponseWriter, code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(api.Error{Code: code, Message: msg})
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /id", func(w http.ResponseWriter, r *http.Request) { reply(w, id(p1, "alpha")) })
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) { reply(w, api.VersionInfo{Version: api.Version}) })
	mux.HandleFunc("GET /peers", func(w http.ResponseWriter, r *http.Request) {
		stream(w, "", id(p1, "alpha"), api.ID{ID: p2, Error: "dial backoff"})
	})
	mux.HandleFunc("DELETE /peers/{peer}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	// One pattern for pinning by path and recovering one CID, which
	// ServeMux cannot tell apart by pattern.
	mux.HandleFunc("POST /pins/{rest...}", func(w http.ResponseWriter, r *http.Request) {
		if c, ok := strings.CutSuffix(r.PathValue("rest"), "/recover"); ok {
			reply(w, gpi(c, api.TrackerStatusPinQueued))
			return
		}
		reply(w, pin(ctlCid1))
	})
	mux.HandleFunc("DELETE /pins/ipfs/{path...}", func(w http.ResponseWriter, r *http.Request) { reply(w, pin(ctlCid1)) })
	mux.HandleFunc("GET /pins/{cid}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("cid") == ctlCid2 {
			apiError(w, http.StatusNotFound, "pin is not part of the pinset")
			return
		}
		reply(w, f.nextStatus())
	})
	mux.HandleFunc("GET /pins", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("filter") == "pin_error" {
			stream(w, "peer beta did not answer", gpi(ctlCid1, api.TrackerStatusPinError))
			return
		}
		stream(w, "", gpi(ctlCid1, api.TrackerStatusPinned), gpi(ctlCid2, api.TrackerStatusPinQueued))
	})
	mux.HandleFunc("POST /pins/recover", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /allocations", func(w http.ResponseWriter, r *http.Request) { stream(w, "", pin(ctlCid1), pin(ctlCid2)) })
	mux.HandleFunc("GET /allocations/{cid}", func(w http.ResponseWriter, r *http.Request) { reply(w, pin(r.PathValue("cid"))) })
	mux.HandleFunc("POST /ipfs/gc", func(w http.ResponseWriter, r *http.Request) {
		reply(w, api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{ctlPeer1: {Peer: p1, Peername: "alpha", Keys: []api.IPFSRepoGC{{Key: ctlCID(t, ctlCid2)}}}}})
	})
	mux.HandleFunc("GET /monitor/metrics", func(w http.ResponseWriter, r *http.Request) { reply(w, []string{"freespace", "ping"}) })
	mux.HandleFunc("GET /monitor/metrics/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, []api.Metric{{Name: r.PathValue("name"), Peer: p1, Value: "2000", Weight: 2000, Expire: time.Now().Add(time.Hour).UnixNano()}})
	})
	mux.HandleFunc("GET /health/alerts", func(w http.ResponseWriter, r *http.Request) { reply(w, []api.Alert{}) })
	mux.HandleFunc("GET /health/graph", func(w http.ResponseWriter, r *http.Request) {
		reply(w, client.ConnectGraph{
			ClusterID:     p1,
			ClusterLinks:  map[string][]peer.ID{ctlPeer1: {}},
			IPFSLinks:     map[string][]peer.ID{ctlPeer2: {}},
			ClustertoIPFS: map[string]peer.ID{ctlPeer1: p2},
		})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { apiError(w, http.StatusNotFound, "not found") })

	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.auth = append(f.auth, user+":"+pass)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func TestCtlVersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-v"}} {
		out, _, code := runCtl(t, nil, args...)
		if code != 0 || out != "ipfs-cluster-ctl version 1.1.6\n" {
			t.Errorf("%v: code %d, output %q", args, code, out)
		}
	}
	rootHelp, _, code := runCtl(t, nil)
	if code != 0 || !strings.Contains(rootHelp, "USAGE:") || !strings.Contains(rootHelp, "--basic-auth") {
		t.Errorf("no arguments: code %d, help %q", code, rootHelp)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"h"}} {
		if out, _, code := runCtl(t, nil, args...); code != 0 || out != rootHelp {
			t.Errorf("%v: code %d, output differs from the root help", args, code)
		}
	}
	out, _, code := runCtl(t, nil, "help", "pin", "add")
	if pinAddHelp, _, _ := runCtl(t, nil, "pin", "add", "--help"); code != 0 || out != pinAddHelp || !strings.Contains(out, "--wait-limit") {
		t.Errorf("help pin add: code %d\n%s", code, out)
	}
	if _, errOut, code := runCtl(t, nil, "help", "nope"); code != 3 || !strings.Contains(errOut, "No help topic for 'nope'") {
		t.Errorf("help nope: code %d, %q", code, errOut)
	}
	// Unknown commands exit 3, as the reference ctl's do.
	if _, errOut, code := runCtl(t, nil, "nope"); code != 3 || !strings.Contains(errOut, `unknown command "nope"`) {
		t.Errorf("unknown command: code %d, %q", code, errOut)
	}
	if _, _, code := runCtl(t, nil, "peers", "add", ctlPeer1); code != 3 {
		t.Errorf("peers add (no such command): code %d", code)
	}
	for _, root := range []*Command{Service(), Root()} {
		var stderr bytes.Buffer
		if code := Run(root, []string{"nope"}, strings.NewReader(""), io.Discard, &stderr, func(string) string { return "" }); code != 3 ||
			!strings.Contains(stderr.String(), `unknown command "nope"`) {
			t.Errorf("%s nope: code %d, %q", root.Name, code, stderr.String())
		}
	}
}

func TestCtlCommandsListAndHelpWidth(t *testing.T) {
	out, _, code := runCtl(t, nil, "commands")
	want := []string{
		"ipfs-cluster-ctl id",
		"ipfs-cluster-ctl peers", "ipfs-cluster-ctl peers ls", "ipfs-cluster-ctl peers rm", "ipfs-cluster-ctl add",
		"ipfs-cluster-ctl pin", "ipfs-cluster-ctl pin add", "ipfs-cluster-ctl pin rm",
		"ipfs-cluster-ctl pin update", "ipfs-cluster-ctl pin ls",
		"ipfs-cluster-ctl status", "ipfs-cluster-ctl recover", "ipfs-cluster-ctl version",
		"ipfs-cluster-ctl health", "ipfs-cluster-ctl health graph", "ipfs-cluster-ctl health metrics",
		"ipfs-cluster-ctl health alerts", "ipfs-cluster-ctl health bandwidth", "ipfs-cluster-ctl policy", "ipfs-cluster-ctl policy reload",
		"ipfs-cluster-ctl ipfs", "ipfs-cluster-ctl ipfs gc",
		"ipfs-cluster-ctl commands", "ipfs-cluster-ctl help",
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || !slices.Equal(got, want) {
		t.Fatalf("commands: code %d\n got %q\nwant %q", code, got, want)
	}
	for _, path := range append([]string{"ipfs-cluster-ctl"}, got...) {
		args := append(strings.Fields(path)[1:], "--help")
		help, _, code := runCtl(t, nil, args...)
		if code != 0 {
			t.Errorf("%s --help: exit %d", path, code)
		}
		for _, line := range strings.Split(help, "\n") {
			if n := len([]rune(line)); n > 120 {
				t.Errorf("%s --help has a %d-character line: %q", path, n, line)
			}
		}
	}
}

func TestCtlRequestsAndTextOutput(t *testing.T) {
	fastPinStatus(t)
	f := newCtlFakeAPI(t)
	pinLine := func(c string) string {
		return c + " | docs | PIN | Repl. Factor: 1--2 | Allocations: [" + ctlPeer1 + "] | Recursive | Metadata: no | Exp: ∞ | Added: 2024-05-01 10:00:00\n"
	}
	statusBlock := func(c, st string) string {
		return c + " | docs:\n    > alpha                : " + st + " | 2024-05-01T10:00:00Z | Attempts: 0 | Priority: false\n"
	}
	pinQuery := api.PinOptionsToQuery(api.PinOptions{ReplicationFactorMin: 3, ReplicationFactorMax: 3, Metadata: map[string]string{}}).Encode()
	cases := []struct {
		args     []string
		requests []string
		stdout   string
	}{
		{[]string{"id"}, []string{"GET /id"}, textID(api.ID{ID: ctlPID(t, ctlPeer1), Peername: "alpha",
			ClusterPeers: []peer.ID{ctlPID(t, ctlPeer1), ctlPID(t, ctlPeer2)}, IPFS: api.IPFSID{ID: ctlPID(t, ctlPeer2)}})},
		{[]string{"version"}, []string{"GET /version"}, "1.1.6\n"},
		{[]string{"peers", "ls"}, []string{"GET /peers"}, ctlPeer1 + " | alpha | Sees 1 other peers\n  > Addresses:\n  > IPFS: " + ctlPeer2 + "\n" +
			ctlPeer2 + " | ERROR: dial backoff\n"},
		{[]string{"peers", "rm", ctlPeer2}, []string{"DELETE /peers/" + ctlPeer2}, ""},
		{[]string{"pin", "add", ctlCid1, "-r", "3", "--ns"}, []string{"POST /pins/ipfs/" + ctlCid1 + "?" + pinQuery}, pinLine(ctlCid1)},
		{[]string{"pin", "add", "/ipfs/" + ctlCid1 + "/a b"}, []string{
			"POST /pins/ipfs/" + ctlCid1 + "/a%20b?" + api.PinOptionsToQuery(api.PinOptions{Metadata: map[string]string{}}).Encode(),
			"GET /pins/" + ctlCid1 + "?local=false",
		}, statusBlock(ctlCid1, "PINNED")},
		{[]string{"pin", "rm", "--no-status", ctlCid1}, []string{"DELETE /pins/ipfs/" + ctlCid1}, pinLine(ctlCid1)},
		{[]string{"pin", "rm", ctlCid1}, []string{"DELETE /pins/ipfs/" + ctlCid1, "GET /pins/" + ctlCid1 + "?local=false"}, statusBlock(ctlCid1, "PINNED")},
		{[]string{"pin", "update", "--ns", "-n", "new", ctlCid2, ctlCid1}, []string{
			"POST /pins/ipfs/" + ctlCid1 + "?" + api.PinOptionsToQuery(api.PinOptions{Name: "new", PinUpdate: ctlCID(t, ctlCid2)}).Encode(),
		}, pinLine(ctlCid1)},
		{[]string{"pin", "ls"}, []string{"GET /allocations?filter=all"}, pinLine(ctlCid1) + pinLine(ctlCid2)},
		{[]string{"pin", "ls", "--filter", "meta-pin,pin"}, []string{"GET /allocations?filter=pin%2Cmeta-pin"}, pinLine(ctlCid1) + pinLine(ctlCid2)},
		{[]string{"pin", "ls", ctlCid2}, []string{"GET /allocations/" + ctlCid2}, pinLine(ctlCid2)},
		{[]string{"status"}, []string{"GET /pins?cids=&filter=&local=false"}, statusBlock(ctlCid1, "PINNED") + statusBlock(ctlCid2, "PIN_QUEUED")},
		{[]string{"status", "--local", "--filter", "queued,pinned"}, []string{"GET /pins?cids=&filter=pinned%2Cpin_queued%2Cunpin_queued&local=true"},
			statusBlock(ctlCid1, "PINNED") + statusBlock(ctlCid2, "PIN_QUEUED")},
		{[]string{"status", ctlCid1}, []string{"GET /pins/" + ctlCid1 + "?local=false"}, statusBlock(ctlCid1, "PINNED")},
		{[]string{"status", ctlCid1, ctlCid2, "--local"}, []string{"GET /pins?cids=" + ctlCid1 + "%2C" + ctlCid2 + "&filter=&local=true"},
			statusBlock(ctlCid1, "PINNED") + statusBlock(ctlCid2, "PIN_QUEUED")},
		{[]string{"recover"}, []string{"POST /pins/recover?local=false"}, ""},
		{[]string{"recover", "--local", ctlCid2}, []string{"POST /pins/" + ctlCid2 + "/recover?local=true"}, statusBlock(ctlCid2, "PIN_QUEUED")},
		{[]string{"ipfs", "gc", "--local"}, []string{"POST /ipfs/gc?local=true"}, "alpha          \n  > CIDs:\n    - " + ctlCid2 + "\n"},
		{[]string{"health", "metrics"}, []string{"GET /monitor/metrics"}, "freespace\nping\n"},
		{[]string{"health", "metrics", "freespace"}, []string{"GET /monitor/metrics/freespace"},
			ctlPeer1 + " | freespace: 2.0 kB | Expires in: 59 minutes from now\n"},
		{[]string{"health", "alerts"}, []string{"GET /health/alerts"}, ""},
	}
	for _, tc := range cases {
		f.reset()
		args := append([]string{"--host", f.host()}, tc.args...)
		out, errOut, code := runCtl(t, nil, args...)
		if code != 0 {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut)
			continue
		}
		if got := f.got(); !slices.Equal(got, tc.requests) {
			t.Errorf("%v: requests\n got %q\nwant %q", tc.args, got, tc.requests)
		}
		if out != tc.stdout {
			t.Errorf("%v: stdout\n got %q\nwant %q", tc.args, out, tc.stdout)
		}
	}
}

func TestCtlPinAddOptions(t *testing.T) {
	fastPinStatus(t)
	f := newCtlFakeAPI(t)
	before := time.Now()
	_, errOut, code := runCtl(t, nil, "pin", "add", "--host", f.host(), "--rmin", "2", ctlCid1, "--replication-max=-1",
		"-n", "my docs", "--mode", "direct", "--allocs", ctlPeer1+", "+ctlPeer2, "--metadata", "kind=text",
		"--metadata", "expr=a=b", "--expire-in", "1h", "--no-status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	req := f.got()[0]
	u, err := url.Parse(strings.TrimPrefix(req, "POST "))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := api.PinOptionsFromQuery(u.Query())
	if err != nil {
		t.Fatal(err)
	}
	if opts.ReplicationFactorMin != 2 || opts.ReplicationFactorMax != -1 || opts.Name != "my docs" || opts.Mode != api.PinModeDirect {
		t.Errorf("options %+v", opts)
	}
	if !slices.Equal(opts.UserAllocations, []peer.ID{ctlPID(t, ctlPeer1), ctlPID(t, ctlPeer2)}) {
		t.Errorf("allocations %v", opts.UserAllocations)
	}
	if opts.Metadata["kind"] != "text" || opts.Metadata["expr"] != "a=b" || len(opts.Metadata) != 2 {
		t.Errorf("metadata %v", opts.Metadata)
	}
	if opts.ExpireAt.Before(before.Add(time.Hour)) || opts.ExpireAt.After(time.Now().Add(time.Hour)) {
		t.Errorf("expire_at %s", opts.ExpireAt)
	}

	// --expire-in 0 is no expiry.
	if _, errOut, code := runCtl(t, nil, "pin", "add", "--host", f.host(), "--expire-in", "0s", "--no-status", ctlCid1); code != 0 {
		t.Fatalf("--expire-in 0s: exit %d: %s", code, errOut)
	}
	got := f.got()
	u, err = url.Parse(strings.TrimPrefix(got[len(got)-1], "POST "))
	if err != nil {
		t.Fatal(err)
	}
	if u.Query().Has("expire-at") {
		t.Errorf("--expire-in 0s sent expire-at %s", u.Query().Get("expire-at"))
	}
}

func TestCtlUsageErrors(t *testing.T) {
	f := newCtlFakeAPI(t)
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"pin", "add"}, "missing argument: <CID|Path>"},
		{[]string{"pin", "add", "XXXinvalid-CIDXXX"}, `"XXXinvalid-CIDXXX"`},
		{[]string{"pin", "add", ctlCid1, ctlCid2}, "unexpected argument"},
		{[]string{"pin", "add", "--metadata", "novalue", ctlCid1}, `invalid --metadata "novalue"`},
		{[]string{"pin", "add", "--metadata", "=v", ctlCid1}, `invalid --metadata "=v"`},
		{[]string{"pin", "add", "--allocations", ctlPeer1 + ",bad", ctlCid1}, `"bad" is not a peer ID`},
		{[]string{"pin", "add", "--mode", "sideways", ctlCid1}, "invalid --mode"},
		{[]string{"pin", "add", "--rmin", "two", ctlCid1}, `invalid value "two" for flag -rmin`},
		{[]string{"pin", "add", "--expire-in", "soon", ctlCid1}, `invalid value "soon" for flag -expire-in`},
		{[]string{"pin", "add", "--wait-timeout", "2", ctlCid1}, "not a duration"},
		{[]string{"pin", "add", "--nope", ctlCid1}, "flag provided but not defined: -nope"},
		{[]string{"pin", "update", "notacid", ctlCid1}, `invalid CID "notacid"`},
		{[]string{"pin", "update", ctlCid1}, "missing argument"},
		{[]string{"pin", "rm", "/foo/bar"}, `unknown namespace "foo"`},
		{[]string{"pin", "ls", "XXXinvalid-CIDXXX"}, `invalid CID "XXXinvalid-CIDXXX"`},
		{[]string{"pin", "ls", "--filter", "nope"}, "invalid --filter"},
		{[]string{"status", ctlCid1, "XXXinvalid-CIDXXX"}, `invalid CID "XXXinvalid-CIDXXX"`},
		{[]string{"status", "--filter", "nope"}, "invalid --filter"},
		{[]string{"recover", "bad"}, `invalid CID "bad"`},
		{[]string{"peers", "rm"}, "missing argument: <peer ID>"},
		{[]string{"peers", "rm", "XXXinvalid-peerXXX"}, `invalid peer ID "XXXinvalid-peerXXX"`},
		{[]string{"--enc", "yaml", "id"}, `unsupported encoding "yaml"`},
		{[]string{"--host", "nonsense", "id"}, "invalid --host"},
		{[]string{"--host", "/ip4/127.0.0.1/tcp/9096/p2p/" + ctlPeer1, "id"}, "libp2p-http"},
		{[]string{"--secret", "zz", "id"}, "invalid --secret"},
		{[]string{"-t", "soon", "id"}, "not an integer"},
		{[]string{"-t", "-5", "id"}, "cannot be negative"},
		{[]string{"pin", "add", "--wait-timeout", "-1s", ctlCid1}, "cannot be negative"},
	}
	for _, tc := range cases {
		f.reset()
		args := append([]string{"--host", f.host()}, tc.args...)
		if tc.args[0] == "--host" {
			args = tc.args
		}
		out, errOut, code := runCtl(t, nil, args...)
		if code != 1 || !strings.Contains(errOut, tc.stderr) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errOut, tc.stderr)
		}
		if got := f.got(); len(got) != 0 {
			t.Errorf("%v: a usage error must not reach the API, got %v", tc.args, got)
		}
	}
}

func TestCtlErrorsAndExitCodes(t *testing.T) {
	fastPinStatus(t)
	f := newCtlFakeAPI(t)
	h := f.host()

	out, errOut, code := runCtl(t, nil, "--host", h, "status", ctlCid2)
	if code != 2 || errOut != "" || out != "An error occurred:\n  Code: 404\n  Message: pin is not part of the pinset\n" {
		t.Errorf("API error: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = runCtl(t, nil, "--enc=json", "--host", h, "status", ctlCid2)
	if code != 2 || errOut != "" || out != "{\n    \"code\": 404,\n    \"message\": \"pin is not part of the pinset\"\n}\n" {
		t.Errorf("API error in JSON: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = runCtl(t, nil, "--host", h, "health", "bandwidth")
	if code != 2 || errOut != "" || !strings.Contains(out, "  Code: 404\n  Message: not found\n") {
		t.Errorf("bandwidth: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	out, errOut, code = runCtl(t, nil, "--host", h, "status", "--filter", "pin_error")
	if code != 2 || errOut != "" || !strings.HasPrefix(out, ctlCid1+" | docs:\n") || !strings.Contains(out, "Code: 500\n  Message: peer beta did not answer") {
		t.Errorf("stream trailer error: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
	}()
	out, errOut, code = runCtl(t, nil, "--host", closed, "id")
	if code != 1 || errOut != "" || !strings.Contains(out, "An error occurred:\n  Code: 0\n  Message: ") || !strings.Contains(out, "connection refused") {
		t.Errorf("closed port: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = runCtl(t, nil, "--enc", "json", "--host", closed, "peers", "ls")
	var e api.Error
	if code != 1 || json.Unmarshal([]byte(out), &e) != nil || e.Code != 0 || !strings.Contains(e.Message, "connection refused") {
		t.Errorf("closed port in JSON: exit %d, stdout %q", code, out)
	}
	if _, _, code := runCtl(t, nil, "--host", closed+","+h, "version"); code != 0 {
		t.Errorf("failover to the second host: exit %d", code)
	}
}

func TestCtlWait(t *testing.T) {
	fastPinStatus(t)
	f := newCtlFakeAPI(t)
	gpi := func(sts ...api.TrackerStatus) api.GlobalPinInfo {
		g := api.GlobalPinInfo{Cid: ctlCID(t, ctlCid1), PeerMap: map[string]api.PinInfoShort{}}
		for i, st := range sts {
			g.PeerMap[[]string{ctlPeer1, ctlPeer2}[i]] = api.PinInfoShort{PeerName: []string{"alpha", "beta"}[i], Status: st}
		}
		return g
	}
	P, Q := api.TrackerStatusPinned, api.TrackerStatusPinning

	// The pin's replication_factor_min (1) is the default --wait-limit.
	f.statuses = []api.GlobalPinInfo{gpi(Q, Q), gpi(P, Q)}
	out, errOut, code := runCtl(t, nil, "--host", f.host(), "pin", "add", "--wait", ctlCid1)
	if code != 0 || !strings.Contains(out, "alpha                : PINNED") || !strings.Contains(out, "beta                 : PINNING") {
		t.Errorf("--wait: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if n := len(f.got()); n != 3 {
		t.Errorf("--wait made %d requests, want the pin and two status polls", n)
	}

	f.statuses = []api.GlobalPinInfo{gpi(P, Q), gpi(P, P)}
	f.reset()
	out, _, code = runCtl(t, nil, "--host", f.host(), "pin", "add", "-w", "--wl", "2", ctlCid1, "--ns")
	if code != 0 || !strings.HasPrefix(out, ctlCid1+" | docs | PIN |") || len(f.got()) != 3 {
		t.Errorf("--wait-limit 2 --no-status: exit %d, stdout %q, requests %v", code, out, f.got())
	}

	f.statuses = []api.GlobalPinInfo{gpi(api.TrackerStatusPinError, P)}
	// As the reference: a failed wait is one line on stderr, not an API
	// error block, and a timeout exits with 62.
	out, errOut, code = runCtl(t, nil, "--host", f.host(), "pin", "add", "--wait", ctlCid1)
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "error waiting for pin status: peer alpha reports pin_error") {
		t.Errorf("wait error: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	f.statuses = []api.GlobalPinInfo{gpi(Q, Q)}
	out, errOut, code = runCtl(t, nil, "--host", f.host(), "pin", "add", "--wait", "--wt", "30ms", ctlCid1)
	if code != 62 || out != "" || errOut != "error waiting for pin status: context deadline exceeded\n" {
		t.Errorf("wait timeout: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestCtlTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	u, _ := url.Parse(srv.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	_, errOut, code := runCtl(t, nil, "--host", "/ip4/127.0.0.1/tcp/"+port, "-t", "1", "id")
	if code != 62 {
		t.Errorf("request timeout: exit %d, stderr %q", code, errOut)
	}
}

func TestCtlBasicAuthAndHosts(t *testing.T) {
	f := newCtlFakeAPI(t)
	env := map[string]string{"CLUSTER_CREDENTIALS": "user:secret"}
	if _, errOut, code := runCtl(t, env, "--host", f.host(), "--force-http", "id"); code != 0 || f.auth[0] != "user:secret" {
		t.Errorf("basic auth from the environment: exit %d, auth %v, stderr %q", code, f.auth, errOut)
	}
	f.reset()
	if _, _, code := runCtl(t, env, "--basic-auth", "other", "-f", "--host", f.host(), "id"); code != 0 || f.auth[0] != "other:" {
		t.Errorf("--basic-auth without password: exit %d, auth %v", code, f.auth)
	}
	// Credentials turn https on; this server only speaks http.
	f.reset()
	if out, _, code := runCtl(t, env, "--host", f.host(), "id"); code != 1 || !strings.Contains(out, "HTTP response to HTTPS client") {
		t.Errorf("implied https: exit %d, stdout %q", code, out)
	}

	port := strings.TrimPrefix(f.host(), "/ip4/127.0.0.1/tcp/")
	if out, errOut, code := runCtl(t, nil, "--host", "/dns4/localhost/tcp/"+port, "version"); code != 0 || out != "1.1.6\n" {
		t.Errorf("/dns4 host: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestCtlExpandDNSHosts(t *testing.T) {
	ctx := context.Background()
	got, err := expandDNSHosts(ctx, []string{"/dns4/localhost/tcp/1", " /ip4/10.0.0.1/tcp/2", "http://x:3"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/ip4/127.0.0.1/tcp/1", "/ip4/10.0.0.1/tcp/2", "http://x:3"}; !slices.Equal(got, want) {
		t.Errorf("expanded %q, want %q", got, want)
	}
	if got, _ := expandDNSHosts(ctx, []string{"/dns4/localhost/tcp/1"}, true); got[0] != "/dns4/localhost/tcp/1" {
		t.Errorf("with TLS the name must stay: %q", got)
	}
}

func TestCtlHealthGraph(t *testing.T) {
	f := newCtlFakeAPI(t)
	out, errOut, code := runCtl(t, nil, "--host", f.host(), "health", "graph")
	if code != 0 || !strings.HasPrefix(out, "digraph cluster {\n") || !strings.Contains(out, "\nC0 -> I0\n") || !strings.HasSuffix(out, "}") {
		t.Errorf("graph: exit %d, stderr %q\n%s", code, errOut, out)
	}
	file := filepath.Join(t.TempDir(), "graph.dot")
	stdout, _, code := runCtl(t, nil, "--host", f.host(), "health", "graph", "-f", file)
	written, err := os.ReadFile(file)
	if code != 0 || stdout != "" || err != nil || string(written) != out {
		t.Errorf("graph to a file: exit %d, stdout %q, read error %v", code, stdout, err)
	}
}

func TestCtlJSONStreams(t *testing.T) {
	f := newCtlFakeAPI(t)
	out, _, code := runCtl(t, nil, "--host", f.host(), "--enc", "json", "peers", "ls")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var ids []api.ID
	for dec.More() {
		var id api.ID
		if err := dec.Decode(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(ids) != 2 || ids[1].Error != "dial backoff" || !strings.HasPrefix(out, "{\n    \"id\": \""+ctlPeer1+"\",\n") {
		t.Errorf("peers ls JSON:\n%s", out)
	}
}

func TestCtlExitCode(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{errors.New("local"), 1},
		{api.Error{Code: 0, Message: "no code"}, 1},
		{api.Error{Code: 500, Message: "server"}, 2},
		{fmt.Errorf("waiting: %w", api.Error{Code: 404}), 2},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), 62},
		{&net.DNSError{Err: "i/o timeout", IsTimeout: true}, 62},
		{fmt.Errorf("get: %w", context.Canceled), 125},
	}
	for _, tc := range cases {
		if got := ctlExitCode(tc.err); got != tc.want {
			t.Errorf("ctlExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
