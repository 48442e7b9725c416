// Command benchcluster measures a three-peer cluster on 127.0.0.1, started
// the way scripts/localcluster starts it (three kubo daemons connected to
// each other, three peers from bin/ joined with --bootstrap, default
// service.json otherwise), and prints one JSON line per figure on stdout:
//
//   - ingest: POST /pins?replication-min=2&replication-max=3 to peer 0 from
//     16 concurrent clients (pins/s, latency p50/p99)
//   - the time until every allocation is PINNED on its peer, beside kubo's
//     own pin/add rate on the same kind of CIDs, and the CPU each peer, each
//     kubo and the benchmark itself spent per pin until then
//   - propagation: how long after a POST on peer 0 returns peer 2 knows the
//     pin (GET /allocations/{cid}), p50/p99
//   - GET /allocations and cluster-wide GET /pins on peer 0 at -pins and at
//     -big pins: the median of five runs, with each run in "runs_ms"
//   - the RSS of every peer idle, at -pins and at -big pins
//   - restart of peer 1 with -big pins: until /id answers, and until its
//     state lists every pin;
//   - a fourth peer joining with -big pins: from its start until its state
//     lists every pin, which it learns by walking the CRDT DAG.
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
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/localcluster"
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
	// propagationTimeout bounds the wait for one pin to reach peer 2.
	propagationTimeout = 10 * time.Second
)

type options struct {
	pins, big, clients, propagation int
	stats                           bool
}

func main() {
	var o options
	flag.IntVar(&o.pins, "pins", 10000, "pins to ingest through POST /pins on peer 0")
	flag.IntVar(&o.big, "big", 100000, "pins in the cluster for the large-state figures")
	flag.IntVar(&o.clients, "clients", 16, "concurrent REST clients during ingest")
	flag.IntVar(&o.propagation, "propagation", 200, "sequential pins timed until peer 2 knows them")
	flag.BoolVar(&o.stats, "stats", false, "serve each peer's /metrics and /debug/pprof/ (URLs on stderr) to profile a run")
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
	work, err := os.MkdirTemp("", "ipfs-cluster-benchcluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	b := &bench{clients: o.clients, allocs: map[string]int{}}
	defer func() { localcluster.Stop(b.peers) }()
	defer func() {
		// The peers' logs go away with the work folder: show their ends,
		// unless we were interrupted.
		if err != nil && ctx.Err() == nil {
			b.printLogTails()
		}
	}()
	progress("starting %d kubo daemons and %d cluster peers", nPeers, nPeers)
	// Logging is at warn: info logs a line per pin, which would cost the
	// peers more than the benchmark wants to measure.
	lo := localcluster.Options{Work: work, Peers: nPeers, LogLevel: "warn", Stats: o.stats}
	if b.peers, err = localcluster.Start(ctx, lo); err != nil {
		return err
	}
	for _, p := range b.peers {
		if p.StatsURL != "" {
			progress("%s: %s/metrics, %s/debug/pprof/", p.Name, p.StatsURL, p.StatsURL)
		}
	}
	b.reportRSS("rss_idle")

	// Ingest, then wait for kubo to hold every allocation.
	progress("ingesting %d pins through peer 0", o.pins)
	cpu0 := b.cpuTimes()
	ingestStart := time.Now()
	lat, took, err := b.postMany(ctx, b.peers[0], "ingest-", o.pins)
	if err != nil {
		return err
	}
	localcluster.Report("ingest", float64(o.pins)/took.Seconds(), "pins/s", "pins", o.pins, "clients", o.clients)
	localcluster.Report("ingest_latency_p50", ms(percentile(lat, 50)), "ms")
	localcluster.Report("ingest_latency_p99", ms(percentile(lat, 99)), "ms")
	progress("waiting until every allocation is pinned")
	if err := b.waitPinned(ctx); err != nil {
		return err
	}
	localcluster.Report("all_pinned", time.Since(ingestStart).Seconds(), "s", "pins", b.pins, "allocations", b.totalAllocs(),
		"after_ingest_s", round3(time.Since(ingestStart.Add(took)).Seconds()))
	b.reportCPU(cpu0, b.cpuTimes(), o.pins)
	progress("pinning %d CIDs directly on kubo 0", o.pins)
	rate, err := b.kuboPinRate(ctx, b.peers[0].Kubo, o.pins)
	if err != nil {
		return err
	}
	localcluster.Report("kubo_pin_add", rate, "pins/s", "pins", o.pins, "clients", o.clients)

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
	localcluster.Report("propagation_p50", ms(percentile(fromReturn, 50)), "ms", "samples", len(fromReturn),
		"from_post_start_ms", round3(ms(percentile(fromSend, 50))))
	localcluster.Report("propagation_p99", ms(percentile(fromReturn, 99)), "ms", "samples", len(fromReturn),
		"from_post_start_ms", round3(ms(percentile(fromSend, 99))))

	if more := o.big - b.pins; more > 0 {
		progress("adding %d pins to reach %d", more, o.big)
		fillStart := time.Now()
		_, took, err := b.postMany(ctx, b.peers[0], "fill-", more)
		if err != nil {
			return err
		}
		localcluster.Report("fill", float64(more)/took.Seconds(), "pins/s", "pins", more, "clients", o.clients)
		progress("waiting until every allocation is pinned")
		if err := b.waitPinned(ctx); err != nil {
			return err
		}
		localcluster.Report("all_pinned_fill", time.Since(fillStart).Seconds(), "s", "pins", b.pins, "allocations", b.totalAllocs(),
			"after_fill_s", round3(time.Since(fillStart.Add(took)).Seconds()))
	}
	b.reportRSS("rss_with_pins", "pins", b.pins)
	if err := b.listings(ctx); err != nil {
		return err
	}

	progress("restarting peer 1")
	if err := b.restart(ctx, b.peers[1]); err != nil {
		return err
	}
	progress("starting a fourth peer")
	p, err := localcluster.Join(ctx, lo, b.peers)
	if err != nil {
		return err
	}
	b.peers = append(b.peers, p)
	return b.waitListed(ctx, p, "join_to_state")
}

// bench is the running cluster and what the benchmark put into it.
type bench struct {
	peers   []*localcluster.Peer
	clients int

	mu     sync.Mutex
	allocs map[string]int // allocations per cluster peer ID, from the POST replies
	pins   int            // pins in the cluster state
}

func (b *bench) printLogTails() {
	for _, p := range b.peers {
		log, _ := os.ReadFile(filepath.Join(p.Dir, "daemon.log"))
		if len(bytes.TrimSpace(log)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		fmt.Fprintf(os.Stderr, "--- end of %s's log ---\n%s\n", p.Name, strings.Join(lines, "\n"))
	}
}

// postMany POSTs n pins to p from b.clients concurrent clients, records
// their allocations and returns the sorted latencies and the wall time.
func (b *bench) postMany(ctx context.Context, p *localcluster.Peer, prefix string, n int) ([]time.Duration, time.Duration, error) {
	lat := make([][]time.Duration, b.clients)
	start := time.Now()
	err := parallel(ctx, n, b.clients, func(ctx context.Context, w, i int) error {
		t0 := time.Now()
		if err := b.pin(ctx, p, localcluster.IdentityCid(prefix, i)); err != nil {
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
func (b *bench) pin(ctx context.Context, p *localcluster.Peer, c string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.APIURL+"/pins/"+c+pinQuery, nil)
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
		return fmt.Errorf("POST /pins/%s on %s: %s: %s", c, p.Name, resp.Status, bytes.TrimSpace(body))
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
		want[i] = b.allocs[p.ID]
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
			// Listing what is still on its way costs the peer what it
			// returns; listing every pinned item costs it the whole
			// pinset, so that waits until nothing is on its way.
			busy, _, err := stream(ctx, p.APIURL+"/pins?local=true&filter=queued,pinning,pin_error")
			if err != nil {
				return err
			}
			if busy == 0 {
				if got[i], _, err = stream(ctx, p.APIURL+"/pins?local=true&filter=pinned"); err != nil {
					return err
				}
			}
			done = done && got[i] >= want[i]
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
			return kuboRPC(ctx, k.APIURL, endpoint, localcluster.IdentityCid("kubo-", i))
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
		c := localcluster.IdentityCid("propagation-", i)
		sent := time.Now()
		if err := b.pin(ctx, from, c); err != nil {
			return nil, nil, err
		}
		returned := time.Now()
		for {
			code, err := statusOf(ctx, to.APIURL+"/allocations/"+c)
			if err != nil {
				return nil, nil, err
			}
			if code == http.StatusOK {
				break
			}
			if time.Since(returned) > propagationTimeout {
				return nil, nil, fmt.Errorf("%s did not know %s within %s (last status %d)", to.Name, c, propagationTimeout, code)
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

// listingRuns is how many times each listing is timed: one run alone swings
// by a third with what the machine's other processes do.
const listingRuns = 5

// listings times GET /allocations and the cluster-wide GET /pins on peer 0,
// reporting the median run with every run beside it.
func (b *bench) listings(ctx context.Context) error {
	for _, l := range []struct{ figure, path string }{
		{"get_allocations", "/allocations"},
		{"get_pins_status", "/pins"},
		{"get_pins_status_local", "/pins?local=true"},
	} {
		var runs []time.Duration
		var n int
		for range listingRuns {
			items, took, err := stream(ctx, b.peers[0].APIURL+l.path)
			if err != nil {
				return err
			}
			n = items
			runs = append(runs, took)
		}
		runsMS := make([]float64, len(runs))
		for i, r := range runs {
			runsMS[i] = round3(ms(r))
		}
		slices.Sort(runs)
		localcluster.Report(l.figure, percentile(runs, 50).Seconds(), "s", "items", n, "pins", b.pins, "runs_ms", runsMS)
	}
	return nil
}

// reportRSS reports the largest resident set among the peers, with each
// peer's in "per_peer_mb".
func (b *bench) reportRSS(figure string, extra ...any) {
	var per []float64
	for _, p := range b.peers {
		per = append(per, round3(p.RSSMB()))
	}
	localcluster.Report(figure, slices.Max(per), "MB", append([]any{"per_peer_mb", per}, extra...)...)
}

// cpuTimes is the CPU time used so far by each peer, each kubo daemon and
// this process.
type cpuTimes struct {
	peers, kubos []time.Duration
	self         time.Duration
}

func (b *bench) cpuTimes() cpuTimes {
	var t cpuTimes
	for _, p := range b.peers {
		k, _ := p.Kubo.CPUTime()
		t.peers = append(t.peers, p.CPUTime())
		t.kubos = append(t.kubos, k)
	}
	t.self, _ = proc.CPUTime(os.Getpid())
	return t
}

// reportCPU reports the CPU per pin each process spent between two
// readings, and their sum: what it costs the machine to take the pins in
// and pin them everywhere.
func (b *bench) reportCPU(from, to cpuTimes, pins int) {
	perPin := func(d time.Duration) float64 { return round3(float64(d.Microseconds()) / float64(pins)) }
	var peers, kubos []float64
	total := to.self - from.self
	for i := range to.peers {
		peers = append(peers, perPin(to.peers[i]-from.peers[i]))
		kubos = append(kubos, perPin(to.kubos[i]-from.kubos[i]))
		total += to.peers[i] - from.peers[i] + to.kubos[i] - from.kubos[i]
	}
	localcluster.Report("cpu_per_pin", perPin(total), "µs", "pins", pins, "per_peer_us", peers, "per_kubo_us", kubos,
		"bench_us", perPin(to.self-from.self))
}

// restart stops p with SIGTERM and starts it again with the same config and
// bootstrap address, timing until /id answers and until its state lists
// every pin.
func (b *bench) restart(ctx context.Context, p *localcluster.Peer) error {
	t0 := time.Now()
	p.Stop()
	stopped := time.Since(t0)
	toID, err := p.Start(ctx)
	if err != nil {
		return err
	}
	localcluster.Report("restart_to_id", toID.Seconds(), "s", "pins", b.pins, "stop_s", round3(stopped.Seconds()))
	return b.waitListed(ctx, p, "restart_to_state")
}

// waitListed reports as figure the time from p's start until its state
// lists every pin, giving up after 5 minutes.
func (b *bench) waitListed(ctx context.Context, p *localcluster.Peer, figure string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n, took, err := stream(ctx, p.APIURL+"/allocations")
		if err != nil {
			return err
		}
		if n >= b.pins {
			localcluster.Report(figure, time.Since(p.Started()).Seconds(), "s", "pins", b.pins, "listing_s", round3(took.Seconds()))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s listed %d of %d pins 5 minutes after its start", p.Name, n, b.pins)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
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
