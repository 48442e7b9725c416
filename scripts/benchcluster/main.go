// Command benchcluster measures a three-peer cluster on 127.0.0.1, started
// the way scripts/localcluster starts it (three kubo daemons connected to
// each other, three peers from bin/ joined with --bootstrap, default
// service.json otherwise), and prints one JSON line per figure on stdout:
//
//   - ingest: POST /pins?replication-min=2&replication-max=3 to peer 0 from
//     16 concurrent clients (pins/s, latency p50/p99)
//   - the time until every allocation is PINNED on its peer, beside kubo's
//     own pin/add rate on the same kind of CIDs
//   - propagation: how long after a POST on peer 0 returns peer 2 knows the
//     pin (GET /allocations/{cid}), p50/p99
//   - GET /allocations and cluster-wide GET /pins on peer 0 at -pins and at
//     -big pins
//   - the RSS of every peer idle, at -pins and at -big pins
//   - restart of peer 1 with -big pins: until /id answers, and until its
//     state lists every pin.
//
// The pins use identity CIDs (the content is inside the CID), so kubo pins
// them at once without fetching anything and the figures measure the
// cluster, not block transfer. Progress goes to stderr.
//
// Usage: go run ./scripts/benchcluster [-pins 10000] [-big 100000] [-clients 16] [-propagation 200]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/proc"
)

const (
	nPeers = 3
	// pinQuery asks for at least two and at most three copies: with three
	// peers every pin is allocated to all of them.
	pinQuery = "?replication-min=2&replication-max=3"
	// requestTimeout bounds one plain request; streamTimeout one listing.
	requestTimeout = 30 * time.Second
	streamTimeout  = 10 * time.Minute
	// startTimeout bounds a peer's start until /id answers, and the wait
	// for the peers to see each other.
	startTimeout = 60 * time.Second
	// stopGrace is how long a peer may take to exit after SIGTERM.
	stopGrace = 30 * time.Second
	// propagationTimeout bounds the wait for one pin to reach peer 2.
	propagationTimeout = 10 * time.Second
)

type options struct {
	pins, big, clients, propagation int
}

func main() {
	var o options
	flag.IntVar(&o.pins, "pins", 10000, "pins to ingest through POST /pins on peer 0")
	flag.IntVar(&o.big, "big", 100000, "pins in the cluster for the large-state figures")
	flag.IntVar(&o.clients, "clients", 16, "concurrent REST clients during ingest")
	flag.IntVar(&o.propagation, "propagation", 200, "sequential pins timed until peer 2 knows them")
	flag.Parse()
	if o.pins < 1 || o.clients < 1 || o.propagation < 1 {
		fmt.Fprintln(os.Stderr, "benchcluster: -pins, -clients and -propagation must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchcluster: %v\n", err)
		os.Exit(1)
	}
}

func report(figure string, value float64, unit string, extra ...any) {
	m := map[string]any{"figure": figure, "value": round3(value), "unit": unit}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	fmt.Println(string(b))
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchcluster: "+format+"\n", args...)
}

// client is shared by all requests. The default transport keeps only two
// idle connections per host, so 16 concurrent clients would open and close
// a connection per request and measure TCP set-up instead of the peer.
var client = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // everything is on 127.0.0.1
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}()

func run(ctx context.Context, o options) (err error) {
	kuboBin, err := kubo.Binary()
	if err != nil {
		return err
	}
	// The cluster binary sits beside kubo in bin/.
	bin := filepath.Join(filepath.Dir(kuboBin), "ipfs-cluster")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s is missing: run 'make build' first", bin)
	}
	work, err := os.MkdirTemp("", "ipfs-cluster-benchcluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	b := &bench{clients: o.clients, allocs: map[string]int{}}
	defer b.stopAll()
	defer func() {
		// The peers' logs go away with the work folder: show their ends,
		// unless we were interrupted.
		if err != nil && ctx.Err() == nil {
			b.printLogTails()
		}
	}()
	progress("starting %d kubo daemons and %d cluster peers", nPeers, nPeers)
	if err := b.startCluster(ctx, bin, work); err != nil {
		return err
	}
	b.reportRSS("rss_idle")

	// Ingest, then wait for kubo to hold every allocation.
	progress("ingesting %d pins through peer 0", o.pins)
	ingestStart := time.Now()
	lat, took, err := b.postMany(ctx, b.peers[0], "ingest-", o.pins)
	if err != nil {
		return err
	}
	report("ingest", float64(o.pins)/took.Seconds(), "pins/s", "pins", o.pins, "clients", o.clients)
	report("ingest_latency_p50", ms(percentile(lat, 50)), "ms")
	report("ingest_latency_p99", ms(percentile(lat, 99)), "ms")
	progress("waiting until every allocation is pinned")
	if err := b.waitPinned(ctx); err != nil {
		return err
	}
	report("all_pinned", time.Since(ingestStart).Seconds(), "s", "pins", b.pins, "allocations", b.totalAllocs(),
		"after_ingest_s", round3(time.Since(ingestStart.Add(took)).Seconds()))
	progress("pinning %d CIDs directly on kubo 0", o.pins)
	rate, err := b.kuboPinRate(ctx, b.peers[0].kubo, o.pins)
	if err != nil {
		return err
	}
	report("kubo_pin_add", rate, "pins/s", "pins", o.pins, "clients", o.clients)

	// At -pins pins, before the propagation pins change the count.
	b.reportRSS("rss_with_pins", "pins", b.pins)
	if err := b.listings(ctx); err != nil {
		return err
	}

	progress("timing %d pins from peer 0 to peer 2", o.propagation)
	fromReturn, fromSend, err := b.propagation(ctx, o.propagation)
	if err != nil {
		return err
	}
	report("propagation_p50", ms(percentile(fromReturn, 50)), "ms", "samples", len(fromReturn),
		"from_post_start_ms", round3(ms(percentile(fromSend, 50))))
	report("propagation_p99", ms(percentile(fromReturn, 99)), "ms", "samples", len(fromReturn),
		"from_post_start_ms", round3(ms(percentile(fromSend, 99))))

	if more := o.big - b.pins; more > 0 {
		progress("adding %d pins to reach %d", more, o.big)
		fillStart := time.Now()
		_, took, err := b.postMany(ctx, b.peers[0], "fill-", more)
		if err != nil {
			return err
		}
		report("fill", float64(more)/took.Seconds(), "pins/s", "pins", more, "clients", o.clients)
		progress("waiting until every allocation is pinned")
		if err := b.waitPinned(ctx); err != nil {
			return err
		}
		report("all_pinned_fill", time.Since(fillStart).Seconds(), "s", "pins", b.pins, "allocations", b.totalAllocs(),
			"after_fill_s", round3(time.Since(fillStart.Add(took)).Seconds()))
	}
	b.reportRSS("rss_with_pins", "pins", b.pins)
	if err := b.listings(ctx); err != nil {
		return err
	}

	progress("restarting peer 1")
	return b.restart(ctx, b.peers[1])
}

// bench is the running cluster and what the benchmark put into it.
type bench struct {
	peers   []*peer
	clients int

	mu     sync.Mutex
	allocs map[string]int // allocations per cluster peer ID, from the POST replies
	pins   int            // pins in the cluster state
}

// startCluster starts the kubo daemons and the peers as scripts/localcluster
// does, and waits until every peer sees the others and their free space.
func (b *bench) startCluster(ctx context.Context, bin, work string) error {
	var secret string
	var bootstrap []string
	for i := 0; i < nPeers; i++ {
		k, err := kubo.Start(ctx, kubo.Options{RepoDir: filepath.Join(work, fmt.Sprintf("kubo%d", i))})
		if err != nil {
			return err
		}
		p := &peer{name: fmt.Sprintf("peer%d", i), bin: bin, dir: filepath.Join(work, fmt.Sprintf("peer%d", i)), kubo: k, args: bootstrap}
		b.peers = append(b.peers, p)
		for _, prev := range b.peers[:i] {
			if err := k.ConnectTo(ctx, prev.kubo); err != nil {
				return err
			}
		}
		// Later peers share the first one's secret, as in localcluster.
		initCmd := exec.CommandContext(ctx, bin, "--config", p.dir, "init", "--randomports")
		if secret != "" {
			initCmd.Env = append(os.Environ(), "CLUSTER_SECRET="+secret)
		}
		if out, err := initCmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s init: %v: %s", p.name, err, out)
		}
		addr, s, err := p.loopbackOnly()
		if err != nil {
			return err
		}
		if i == 0 {
			secret, bootstrap = s, []string{"--bootstrap", addr}
		}
		if _, err := p.start(ctx); err != nil {
			return err
		}
	}
	return b.waitJoined(ctx)
}

// waitJoined waits until every peer counts all peers and has the free-space
// metric of each, so that a pin can be allocated to any of them.
func (b *bench) waitJoined(ctx context.Context) error {
	deadline := time.Now().Add(startTimeout)
	for _, p := range b.peers {
		for {
			var id struct {
				ClusterPeers []string `json:"cluster_peers"`
			}
			var metrics []json.RawMessage
			if getJSON(ctx, p.api+"/id", &id) == nil && getJSON(ctx, p.api+"/monitor/metrics/freespace", &metrics) == nil &&
				len(id.ClusterPeers) >= nPeers && len(metrics) >= nPeers {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not see %d peers and their freespace metrics within %s", p.name, nPeers, startTimeout)
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// stopAll stops the peers, then their kubo daemons.
func (b *bench) stopAll() {
	for _, p := range b.peers {
		p.stop()
	}
	for _, p := range b.peers {
		p.kubo.Stop()
	}
}

func (b *bench) printLogTails() {
	for _, p := range b.peers {
		log, _ := os.ReadFile(filepath.Join(p.dir, "daemon.log"))
		if len(bytes.TrimSpace(log)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		fmt.Fprintf(os.Stderr, "--- end of %s's log ---\n%s\n", p.name, strings.Join(lines, "\n"))
	}
}

// postMany POSTs n pins to p from b.clients concurrent clients, records
// their allocations and returns the sorted latencies and the wall time.
func (b *bench) postMany(ctx context.Context, p *peer, prefix string, n int) ([]time.Duration, time.Duration, error) {
	lat := make([][]time.Duration, b.clients)
	start := time.Now()
	err := parallel(ctx, n, b.clients, func(ctx context.Context, w, i int) error {
		t0 := time.Now()
		if err := b.pin(ctx, p, identityCid(prefix, i)); err != nil {
			return err
		}
		lat[w] = append(lat[w], time.Since(t0))
		return nil
	})
	took := time.Since(start)
	if err != nil {
		return nil, 0, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return all, took, nil
}

// pin POSTs one pin and counts where the reply says it was allocated.
func (b *bench) pin(ctx context.Context, p *peer, c string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.api+"/pins/"+c+pinQuery, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /pins/%s on %s: %s: %s", c, p.name, resp.Status, bytes.TrimSpace(body))
	}
	var pin struct {
		Allocations []string `json:"allocations"`
	}
	if err := json.Unmarshal(body, &pin); err != nil {
		return fmt.Errorf("POST /pins/%s: %w", c, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pins++
	for _, a := range pin.Allocations {
		b.allocs[a]++
	}
	return nil
}

func (b *bench) totalAllocs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, a := range b.allocs {
		n += a
	}
	return n
}

// waitPinned waits until each peer lists as many local PINNED items as
// pins were allocated to it, so that the pinned items across peers add up
// to the allocations. A peer's count only grows, so a peer that got there
// is not asked again: the polls left cost the peers still pinning less.
func (b *bench) waitPinned(ctx context.Context) error {
	b.mu.Lock()
	want := make([]int, len(b.peers))
	total := 0
	for i, p := range b.peers {
		want[i] = b.allocs[p.id]
		total += want[i]
	}
	b.mu.Unlock()
	// Generous: kubo pins an identity CID in well under a millisecond, the
	// cluster should keep up within a few.
	timeout := 2*time.Minute + time.Duration(total)*2*time.Millisecond
	deadline := time.Now().Add(timeout)
	got := make([]int, len(b.peers))
	for {
		pollStart := time.Now()
		done := true
		for i, p := range b.peers {
			if got[i] >= want[i] {
				continue
			}
			n, _, err := stream(ctx, p.api+"/pins?local=true&filter=pinned")
			if err != nil {
				return err
			}
			got[i] = n
			done = done && n >= want[i]
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not every allocation was pinned within %s: pinned %v of %v (peers 0..%d)", timeout, got, want, len(b.peers)-1)
		}
		// Listing a large pinset is work for the peer: poll no more than
		// half of the time.
		if err := sleep(ctx, max(200*time.Millisecond, time.Since(pollStart))); err != nil {
			return err
		}
	}
}

// kuboPinRate pins n identity CIDs of its own directly on k from b.clients
// concurrent RPC clients and returns the rate. It unpins them afterwards so
// that kubo holds only what the cluster asked for.
func (b *bench) kuboPinRate(ctx context.Context, k *kubo.Daemon, n int) (float64, error) {
	call := func(endpoint string) func(context.Context, int, int) error {
		return func(ctx context.Context, _, i int) error {
			return kuboRPC(ctx, k.APIURL, endpoint, identityCid("kubo-", i))
		}
	}
	start := time.Now()
	if err := parallel(ctx, n, b.clients, call("pin/add")); err != nil {
		return 0, err
	}
	rate := float64(n) / time.Since(start).Seconds()
	return rate, parallel(ctx, n, b.clients, call("pin/rm"))
}

// propagation POSTs n pins one after the other on peer 0 and polls peer 2
// every millisecond until it knows each. It returns the latencies from the
// moment the POST returned (the pin is then committed on peer 0) and from
// the moment it was sent, each sorted.
func (b *bench) propagation(ctx context.Context, n int) (fromReturn, fromSend []time.Duration, err error) {
	from, to := b.peers[0], b.peers[2]
	for i := 0; i < n; i++ {
		c := identityCid("propagation-", i)
		sent := time.Now()
		if err := b.pin(ctx, from, c); err != nil {
			return nil, nil, err
		}
		returned := time.Now()
		for {
			code, err := statusOf(ctx, to.api+"/allocations/"+c)
			if err != nil {
				return nil, nil, err
			}
			if code == http.StatusOK {
				break
			}
			if time.Since(returned) > propagationTimeout {
				return nil, nil, fmt.Errorf("%s did not know %s within %s (last status %d)", to.name, c, propagationTimeout, code)
			}
			if err := sleep(ctx, time.Millisecond); err != nil {
				return nil, nil, err
			}
		}
		now := time.Now()
		fromReturn = append(fromReturn, now.Sub(returned))
		fromSend = append(fromSend, now.Sub(sent))
	}
	slices.Sort(fromReturn)
	slices.Sort(fromSend)
	return fromReturn, fromSend, nil
}

// listings times GET /allocations and the cluster-wide GET /pins on peer 0.
func (b *bench) listings(ctx context.Context) error {
	for _, l := range []struct{ figure, path string }{
		{"get_allocations", "/allocations"},
		{"get_pins_status", "/pins"},
	} {
		n, took, err := stream(ctx, b.peers[0].api+l.path)
		if err != nil {
			return err
		}
		report(l.figure, took.Seconds(), "s", "items", n, "pins", b.pins)
	}
	return nil
}

// reportRSS reports the largest resident set among the peers, with each
// peer's in "per_peer_mb".
func (b *bench) reportRSS(figure string, extra ...any) {
	var per []float64
	for _, p := range b.peers {
		per = append(per, round3(p.rssMB()))
	}
	report(figure, slices.Max(per), "MB", append([]any{"per_peer_mb", per}, extra...)...)
}

// restart stops p with SIGTERM and starts it again with the same config and
// bootstrap address, timing until /id answers and until its state lists
// every pin.
func (b *bench) restart(ctx context.Context, p *peer) error {
	t0 := time.Now()
	p.stop()
	stopped := time.Since(t0)
	toID, err := p.start(ctx)
	if err != nil {
		return err
	}
	report("restart_to_id", toID.Seconds(), "s", "pins", b.pins, "stop_s", round3(stopped.Seconds()))
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n, took, err := stream(ctx, p.api+"/allocations")
		if err != nil {
			return err
		}
		if n >= b.pins {
			report("restart_to_state", time.Since(p.started).Seconds(), "s", "pins", b.pins, "listing_s", round3(took.Seconds()))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s listed %d of %d pins 5 minutes after restart", p.name, n, b.pins)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// peer is one ipfs-cluster daemon beside its kubo.
type peer struct {
	name, bin, dir string
	args           []string // daemon arguments after "daemon" (--bootstrap)
	kubo           *kubo.Daemon
	api            string // REST API base URL
	id             string // cluster peer ID

	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has exited
	started time.Time
}

// loopbackOnly makes the peer listen on 127.0.0.1 only (init chose the
// port), learns its REST API address and peer ID, and returns its cluster
// address and secret.
func (p *peer) loopbackOnly() (addr, secret string, err error) {
	noEnv := func(string) string { return "" }
	cfg, err := config.Load(p.dir, noEnv)
	if err != nil {
		return "", "", err
	}
	port, err := tcpPort(cfg.Cluster.ListenMultiaddress[0])
	if err != nil {
		return "", "", err
	}
	cfg.Cluster.ListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/" + port}
	if err := cfg.Save(p.dir); err != nil {
		return "", "", err
	}
	restPort, err := tcpPort(cfg.API.RestAPI.HTTPListenMultiaddress[0])
	if err != nil {
		return "", "", err
	}
	p.api = "http://127.0.0.1:" + restPort
	ident, err := config.LoadIdentity(p.dir, noEnv)
	if err != nil {
		return "", "", err
	}
	p.id = ident.ID.String()
	return cfg.Cluster.ListenMultiaddress[0] + "/p2p/" + p.id, cfg.Cluster.Secret, nil
}

func tcpPort(addr string) (string, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", err
	}
	port, err := m.ValueForProtocol(ma.P_TCP)
	if err != nil {
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	return port, nil
}

// start runs the daemon and returns how long it took until /id answered.
// Logging is at warn: info logs a line per pin, which would cost the peer
// more than the benchmark wants to measure.
func (p *peer) start(ctx context.Context) (time.Duration, error) {
	logf, err := os.OpenFile(filepath.Join(p.dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(p.bin, append([]string{"--config", p.dir, "--loglevel", "warn", "daemon"}, p.args...)...)
	cmd.Env = append(os.Environ(), "CLUSTER_IPFSHTTP_NODEMULTIADDRESS="+p.kubo.APIAddr, "CLUSTER_PEERNAME="+p.name)
	cmd.Stdout, cmd.Stderr = logf, logf
	proc.DieWithParent(cmd)
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return 0, fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	for {
		if code, _ := statusOf(ctx, p.api+"/id"); code == http.StatusOK {
			return time.Since(p.started), nil
		}
		select {
		case <-exited:
			return 0, fmt.Errorf("%s exited while starting: %v", p.name, cmd.ProcessState)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(p.started) > startTimeout {
			return 0, fmt.Errorf("%s did not answer /id within %s", p.name, startTimeout)
		}
	}
}

// stop sends SIGTERM and waits for the exit, killing the daemon after
// stopGrace.
func (p *peer) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// rssMB reads the resident set of the daemon process.
func (p *peer) rssMB() float64 {
	if p.cmd == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// identityCid is a CIDv1 (raw) whose multihash is IDENTITY of a small
// unique payload: the block is the CID itself.
func identityCid(prefix string, i int) string {
	h, _ := mh.Sum([]byte(prefix+strconv.Itoa(i)), mh.IDENTITY, -1)
	return cid.NewCidV1(cid.Raw, h).String()
}

// parallel calls do(ctx, worker, i) for every i in [0, n) from the given
// number of workers and stops at the first error.
func parallel(ctx context.Context, n, workers int, do func(ctx context.Context, w, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := do(ctx, w, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// kuboRPC calls a kubo RPC endpoint with one argument.
func kuboRPC(ctx context.Context, apiURL, endpoint, arg string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/api/v0/"+endpoint+"?arg="+url.QueryEscape(arg), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kubo %s %s: %s: %s", endpoint, arg, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// statusOf GETs url and returns the status code.
func statusOf(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// stream GETs an NDJSON listing, counts its lines and returns the wall time
// until the last byte. 204 is an empty listing; an error after the first
// item arrives in the X-Stream-Error trailer.
func stream(ctx context.Context, url string) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNoContent:
		return 0, time.Since(start), nil
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, 0, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	n, err := countLines(resp.Body)
	if err != nil {
		return n, 0, fmt.Errorf("GET %s: %w", url, err)
	}
	took := time.Since(start)
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return n, 0, fmt.Errorf("GET %s: %s", url, e)
	}
	return n, took, nil
}

// countLines counts newline-terminated lines without holding them.
func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 256<<10)
	n := 0
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
