package restapi_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/policies"
)

// BenchmarkPostPins measures acknowledged pins through POST /pins/{cid}
// with 16 concurrent clients against a whole peer on real kubo. The CIDs
// are identity CIDs, so kubo's stage completes without fetching.
func BenchmarkPostPins(b *testing.B) {
	postPins(b, daemontest.Start(b, nil).APIURL, "")
}

// BenchmarkPostPinsPolicy is BenchmarkPostPins with the admission and
// tier examples of policies/ loaded as one policy: every pin runs admit
// (name prefix, metadata, quota) and replication, so the difference to
// BenchmarkPostPins is the policy's cost on the ingest path.
func BenchmarkPostPinsPolicy(b *testing.B) {
	var src []byte
	for _, name := range []string{"admission.lua", "tiers.lua"} {
		part, err := policies.FS.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		src = append(append(src, part...), '\n')
	}
	path := filepath.Join(b.TempDir(), "policy.lua")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		b.Fatal(err)
	}
	p := daemontest.Start(b, func(c *config.Config) { c.Cluster.PolicyFile = path })
	postPins(b, p.APIURL, "?name=datasets/bench&meta-owner=alice&meta-team=data&meta-owner_pin_count=1&meta-tier=warm")
}

// BenchmarkPostPinsCluster is BenchmarkPostPins on the first of three peers
// (each with its kubo), every pin allocated to all three as in the
// cluster bench: the CRDT delta goes to two other peers, which apply it and
// pin into their kubo while the ingest runs.
func BenchmarkPostPinsCluster(b *testing.B) {
	peers := daemontest.StartCluster(b, 3, nil)
	postPins(b, peers[0].APIURL, "?replication-min=2&replication-max=3")
}

// postPins posts b.N identity CIDs to api from 16 concurrent clients.
func postPins(b *testing.B, api, query string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var n atomic.Int64
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, _ := mh.Sum([]byte("bench-"+strconv.FormatInt(n.Add(1), 10)), mh.IDENTITY, -1)
			resp, err := client.Post(api+"/pins/"+cid.NewCidV1(cid.Raw, h).String()+query, "", nil)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pins/s")
}

// BenchmarkGetPinsCluster measures the cluster-wide GET /pins with 10,000
// pins on three peers: every peer streams its status of each pin, and the
// first merges the streams into one GlobalPinInfo per pin.
func BenchmarkGetPinsCluster(b *testing.B) {
	const pins = 10000
	peers := daemontest.StartCluster(b, 3, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				h, _ := mh.Sum([]byte("status-"+strconv.Itoa(i)), mh.IDENTITY, -1)
				resp, err := client.Post(peers[0].APIURL+"/pins/"+cid.NewCidV1(cid.Raw, h).String()+"?replication-min=2&replication-max=3", "", nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	for i := range pins {
		next <- i
	}
	close(next)
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(peers[0].APIURL + "/pins")
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.Trailer.Get("X-Stream-Error") != "" {
			b.Fatalf("GET /pins: %v %s", err, resp.Trailer.Get("X-Stream-Error"))
		}
		if n := bytes.Count(body, []byte{'\n'}); n != pins {
			b.Fatalf("GET /pins listed %d of %d pins", n, pins)
		}
	}
}

// BenchmarkPostAdd measures POST /add of a 64 MiB file into a whole peer on
// real kubo, sent by the Go client as ctl add sends it. Besides the
// throughput it reports the CPU this process (the peer and the client, not
// kubo) spends per MiB, where the cost of reading the body shows.
func BenchmarkPostAdd(b *testing.B) {
	const size = 64 << 20
	p := daemontest.Start(b, nil)
	cl := p.Client(b)
	data := make([]byte, size)
	rand.Read(data)
	b.SetBytes(size)
	cpu0 := processCPU(b)
	for b.Loop() {
		var root api.Cid
		err := cl.AddFiles(b.Context(), client.ReaderDirectory("bench.bin", bytes.NewReader(data)), url.Values{"name": {"bench"}},
			func(o api.AddedOutput) error { root = o.Cid; return nil })
		if err != nil || !root.Defined() {
			b.Fatalf("add: %v (root %v)", err, root)
		}
	}
	b.ReportMetric(float64((processCPU(b)-cpu0).Milliseconds())/float64(b.N*size>>20), "cpu-ms/MiB")
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
