// Command bench measures a single peer running as its own process beside a
// real kubo, and prints one JSON line per figure:
//
//   - ingest: POST /pins from 16 concurrent clients (pins/s, p50/p99)
//   - idle RSS, and RSS after the ingest
//   - with 1,000,000 pins in the state: restart until /id answers, RSS,
//     GET /allocations wall time and RSS growth while it streams, and
//     status --local --filter pin_error with 10 errors among them.
//
// The pins use identity CIDs (the content is inside the CID), so kubo pins
// them at once without fetching anything. The 1,000,000-pin state is
// written directly into the stopped peer's store: those pins are allocated
// to another peer, so kubo is not asked to hold a million items.
//
// Usage: go run ./scripts/bench [-pins 50000] [-clients 16] [-big 1000000]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/proc"
	"ipfs-cluster/internal/state"
)

func main() {
	pins := flag.Int("pins", 50000, "pins to ingest through POST /pins")
	clients := flag.Int("clients", 16, "concurrent REST clients")
	big := flag.Int("big", 1000000, "pins in the large state")
	flag.Parse()
	if err := run(*pins, *clients, *big); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func report(figure string, value float64, unit string, extra ...any) {
	m := map[string]any{"figure": figure, "value": value, "unit": unit}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	fmt.Println(string(b))
}

type peerProc struct {
	bin, dir, kuboAddr string
	port               int
	cmd                *exec.Cmd
}

func (p *peerProc) start() (time.Duration, error) {
	logf, err := os.OpenFile(filepath.Join(p.dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	p.cmd = exec.Command(p.bin, "--config", p.dir, "--loglevel", "warn", "daemon")
	p.cmd.Env = append(os.Environ(), "CLUSTER_IPFSHTTP_NODEMULTIADDRESS="+p.kuboAddr)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	proc.DieWithParent(p.cmd)
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		return 0, err
	}
	for deadline := start.Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		resp, err := http.Get(p.url("/id"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start), nil
			}
		}
	}
	return 0, errors.New("peer did not answer /id within 60s")
}

func (p *peerProc) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	p.cmd = nil
}

func (p *peerProc) url(path string) string { return "http://127.0.0.1:" + strconv.Itoa(p.port) + path }

// rssMB reads the resident set of the peer process.
func (p *peerProc) rssMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

func identityCid(prefix string, i int) api.Cid {
	h, _ := mh.Sum([]byte(prefix+strconv.Itoa(i)), mh.IDENTITY, -1)
	return api.NewCid(cid.NewCidV1(cid.Raw, h))
}

func run(pins, clients, big int) error {
	kuboBin, err := kubo.Binary()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "ipfs-cluster-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx := context.Background()
	k, err := kubo.Start(ctx, kubo.Options{RepoDir: filepath.Join(work, "kubo")})
	if err != nil {
		return err
	}
	defer k.Stop()

	p := &peerProc{bin: filepath.Join(filepath.Dir(kuboBin), "ipfs-cluster"), dir: filepath.Join(work, "peer"), kuboAddr: k.APIAddr}
	if p.port, err = freePort(); err != nil {
		return err
	}
	if out, err := exec.Command(p.bin, "--config", p.dir, "init").CombinedOutput(); err != nil {
		return fmt.Errorf("init: %v: %s", err, out)
	}
	cfg, err := config.Load(p.dir, func(string) string { return "" })
	if err != nil {
		return err
	}
	cfg.API.RestAPI.HTTPListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(p.port)}
	if err := cfg.Save(p.dir); err != nil {
		return err
	}
	if _, err := p.start(); err != nil {
		return err
	}
	defer p.stop()
	time.Sleep(2 * time.Second)
	report("rss_idle", p.rssMB(), "MB")

	if err := ingest(p, pins, clients); err != nil {
		return err
	}
	report("rss_after_ingest", p.rssMB(), "MB", "pins", pins)
	p.stop()

	if err := seed(p.dir, big); err != nil {
		return err
	}
	took, err := p.start()
	if err != nil {
		return err
	}
	report("restart_to_id", took.Seconds(), "s", "pins", big+pins)
	time.Sleep(3 * time.Second)
	report("rss_with_pins", p.rssMB(), "MB", "pins", big+pins)

	before := p.rssMB()
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		for {
			if mb := uint64(p.rssMB() * 1024); mb > peak.Load() {
				peak.Store(mb)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	n, took, err := stream(p.url("/allocations"))
	close(done)
	if err != nil {
		return err
	}
	report("get_allocations", took.Seconds(), "s", "items", n)
	report("get_allocations_rss_growth", float64(peak.Load())/1024-before, "MB")

	n, took, err = stream(p.url("/pins?local=true&filter=pin_error"))
	if err != nil {
		return err
	}
	report("status_local_filter_pin_error", float64(took.Microseconds())/1000, "ms", "items", n, "pins", big+pins)
	return nil
}

// ingest POSTs pins from concurrent clients and reports rate and latency.
func ingest(p *peerProc, pins, clients int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= pins {
					return
				}
				t0 := time.Now()
				resp, err := client.Post(p.url("/pins/"+identityCid("ingest-", i).String()), "", nil)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("POST /pins: status %d", resp.StatusCode)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return err
	default:
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	report("ingest", float64(pins)/elapsed.Seconds(), "pins/s", "clients", clients, "pins", pins)
	report("ingest_latency_p50", ms(all[len(all)/2]), "ms")
	report("ingest_latency_p99", ms(all[len(all)*99/100]), "ms")
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// seed writes n pins allocated to another peer, with their remote records,
// plus 10 pins allocated here whose records say pin_error.
func seed(dir string, n int) error {
	db, err := state.Open(filepath.Join(dir, "pebble"), zerolog.Nop())
	if err != nil {
		return err
	}
	defer db.Close()
	other, _ := config.NewIdentity()
	self, err := config.LoadIdentity(dir, func(string) string { return "" })
	if err != nil {
		return err
	}
	now := time.Now()
	batch := make([]api.Pin, 0, 10000)
	flush := func() error {
		if err := db.PutMany(batch); err != nil {
			return err
		}
		for _, p := range batch {
			st := state.LocalStatus{Status: api.TrackerStatusRemote, TS: now}
			if !p.IsRemote(self.ID) {
				// Many attempts: the backoff keeps them failed while measuring.
				st = state.LocalStatus{Status: api.TrackerStatusPinError, Attempts: 20, Error: "seeded error", TS: time.Now()}
			}
			if err := db.SetStatus(p.Cid, st); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	for i := 0; i < n; i++ {
		alloc := other.ID
		if i%(n/10) == 0 {
			alloc = self.ID
		}
		p := api.PinWithOpts(identityCid("seed-", i), api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1, Name: "seed-" + strconv.Itoa(i)})
		p.Allocations = []peer.ID{alloc}
		p.Timestamp = now
		batch = append(batch, p)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// stream GETs an NDJSON stream and counts its lines.
func stream(url string) (int, time.Duration, error) {
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		return n, 0, err
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return n, 0, fmt.Errorf("%s: %s", url, e)
	}
	return n, time.Since(start), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
