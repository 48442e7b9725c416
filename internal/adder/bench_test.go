package adder_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/ipfsconn"
)

// benchSize is the content added per iteration: 64MiB, or
// $ADDER_BENCH_MB MiB.
func benchSize(b *testing.B) int64 {
	if v := os.Getenv("ADDER_BENCH_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("ADDER_BENCH_MB=%q", v)
		}
		return int64(n) << 20
	}
	return 64 << 20
}

// freshStream is size bytes of content never seen before (kubo skips
// blocks it has), generated as it is read, so that the content itself
// takes no memory.
func freshStream(size int64) io.Reader {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	return io.LimitReader(endless{rand.NewChaCha8(seed)}, size)
}

// BenchmarkAdd measures the adder alone: chunking, hashing and encoding
// 64MiB of random data held in memory, blocks discarded.
func BenchmarkAdd(b *testing.B) {
	size := benchSize(b)
	data := randomBytes(11, int(size))
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		a, err := adder.New(adder.Options{}, adder.DiscardSink{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.AddReader(b.Context(), "data", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// addIntoKubo adds size bytes of fresh content into kubo through the
// connector's default stream, until kubo has stored every block.
func addIntoKubo(b *testing.B, conn *ipfsconn.Connector, size int64) {
	ctx := ctxTimeout(b, 10*time.Minute)
	stream := conn.BlockStream(ctx)
	a, err := adder.New(adder.Options{}, stream, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.AddReader(ctx, "data", freshStream(size)); err != nil {
		stream.CloseWithError(err)
		b.Fatal(err)
	}
	if err := stream.Close(); err != nil {
		b.Fatal(err)
	}
}

// kuboAddFresh has kubo add size bytes of fresh content itself, sent to
// its RPC API the way `ipfs add --pin=false` sends it to a running daemon.
func kuboAddFresh(b *testing.B, apiURL string, size int64) {
	mfr := files.NewMultiFileReader(files.NewSliceDirectory([]files.DirEntry{
		files.FileEntry("data", files.NewReaderFile(freshStream(size))),
	}), true, false)
	req, err := http.NewRequestWithContext(ctxTimeout(b, 10*time.Minute), http.MethodPost,
		apiURL+"/api/v0/add?pin=false&quieter=true", mfr)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+mfr.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Trailer.Get("X-Stream-Error") != "" {
		b.Fatalf("kubo add: %s %v %s %s", resp.Status, err, out, resp.Trailer.Get("X-Stream-Error"))
	}
}

func benchConn(b *testing.B) (*ipfsconn.Connector, string) {
	d := sharedKubo(b)
	conn, err := ipfsconn.New(ipfsconn.Config{NodeMultiaddress: d.APIAddr}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn, d.APIURL
}

// BenchmarkAddIntoKubo adds fresh content into a real kubo through the
// connector's default stream. It reports the test process's peak RSS,
// which should not depend on ADDER_BENCH_MB.
func BenchmarkAddIntoKubo(b *testing.B) {
	conn, _ := benchConn(b)
	size := benchSize(b)
	b.SetBytes(size)
	for b.Loop() {
		addIntoKubo(b, conn, size)
	}
	b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
}

// BenchmarkKuboAdd is the baseline: kubo's own add of as much fresh
// content.
func BenchmarkKuboAdd(b *testing.B) {
	_, apiURL := benchConn(b)
	size := benchSize(b)
	b.SetBytes(size)
	for b.Loop() {
		kuboAddFresh(b, apiURL, size)
	}
}

// BenchmarkAddVsKubo alternates the two adds above in every iteration, so
// that both see the same machine load and repo size, and reports each
// one's throughput and ours as a percentage of kubo's.
func BenchmarkAddVsKubo(b *testing.B) {
	conn, apiURL := benchConn(b)
	size := benchSize(b)
	var ours, theirs time.Duration
	for b.Loop() {
		start := time.Now()
		addIntoKubo(b, conn, size)
		ours += time.Since(start)
		start = time.Now()
		kuboAddFresh(b, apiURL, size)
		theirs += time.Since(start)
	}
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/ours.Seconds(), "ours-MB/s")
	b.ReportMetric(mb/theirs.Seconds(), "kubo-MB/s")
	b.ReportMetric(100*theirs.Seconds()/ours.Seconds(), "ours-%-of-kubo")
}

// peakRSSMiB is the peak resident set size of this process (VmHWM).
func peakRSSMiB() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err == nil {
				return float64(kb) / 1024
			}
		}
	}
	return 0
}
