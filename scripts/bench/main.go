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
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/localcluster"
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

func run(pins, clients, big int) error {
	work, err := os.MkdirTemp("", "ipfs-cluster-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx := context.Background()
	// Logging is at warn: info logs a line per pin, which would cost the
	// peer more than the bench wants to measure.
	peers, err := localcluster.Start(ctx, localcluster.Options{Work: work, Peers: 1, LogLevel: "warn"})
	defer localcluster.Stop(peers)
	if err != nil {
		return err
	}
	p := peers[0]
	time.Sleep(2 * time.Second)
	localcluster.Report("rss_idle", p.RSSMB(), "MB")

	if err := ingest(p, pins, clients); err != nil {
		return err
	}
	localcluster.Report("rss_after_ingest", p.RSSMB(), "MB", "pins", pins)
	p.Stop()

	if err := seed(p.Dir, big); err != nil {
		return err
	}
	took, err := p.Start(ctx)
	if err != nil {
		return err
	}
	localcluster.Report("restart_to_id", took.Seconds(), "s", "pins", big+pins)
	time.Sleep(3 * time.Second)
	localcluster.Report("rss_with_pins", p.RSSMB(), "MB", "pins", big+pins)

	before := p.RSSMB()
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		for {
			if mb := uint64(p.RSSMB() * 1024); mb > peak.Load() {
				peak.Store(mb)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	n, took, err := stream(p.APIURL + "/allocations")
	close(done)
	if err != nil {
		return err
	}
	localcluster.Report("get_allocations", took.Seconds(), "s", "items", n)
	localcluster.Report("get_allocations_rss_growth", float64(peak.Load())/1024-before, "MB")

	n, took, err = stream(p.APIURL + "/pins?local=true&filter=pin_error")
	if err != nil {
		return err
	}
	localcluster.Report("status_local_filter_pin_error", float64(took.Microseconds())/1000, "ms", "items", n, "pins", big+pins)
	return nil
}

// ingest POSTs pins from concurrent clients and reports rate and latency.
func ingest(p *localcluster.Peer, pins, clients int) error {
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
				resp, err := client.Post(p.APIURL+"/pins/"+localcluster.IdentityCid("ingest-", i), "", nil)
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
	localcluster.Report("ingest", float64(pins)/elapsed.Seconds(), "pins/s", "clients", clients, "pins", pins)
	localcluster.Report("ingest_latency_p50", ms(all[len(all)/2]), "ms")
	localcluster.Report("ingest_latency_p99", ms(all[len(all)*99/100]), "ms")
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
		c, err := api.DecodeCid(localcluster.IdentityCid("seed-", i))
		if err != nil {
			return err
		}
		p := api.PinWithOpts(c, api.PinOptions{ReplicationFactorMin: 1, ReplicationFactorMax: 1, Name: "seed-" + strconv.Itoa(i)})
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
