// Command benchadd measures content ingest on a three-peer cluster on
// 127.0.0.1 (started as scripts/localcluster starts it) and prints one
// JSON line per figure on stdout:
//
//   - kubo_add: kubo's own `ipfs add` of a -mb file (into a kubo that is
//     not among the destinations), the reference throughput;
//   - cluster_add: `ipfs-cluster add` of another such file to two peers
//     (replication 2), the blocks streamed to both kubo daemons at once,
//     with the client's and the receiving daemon's peak RSS;
//   - cluster_add_one_peer: the same with replication 1, to the receiving
//     peer's kubo;
//   - car_import: `ipfs-cluster import` of a CAR of a third such file (from
//     kubo's dag export) to one peer;
//   - big_add_rss: the peak RSS of the client and of the daemon while
//     adding a -big-mb file.
//
// Progress goes to stderr. Usage:
//
//	go run ./scripts/benchadd [-mb 1024] [-big-mb 2048] [-stats]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"ipfs-cluster/internal/localcluster"
)

func main() {
	mb := flag.Int("mb", 1024, "size of the files added, imported and added by kubo, in MiB")
	bigMB := flag.Int("big-mb", 2048, "size of the file whose add is watched for peak RSS, in MiB")
	stats := flag.Bool("stats", false, "serve each peer's /metrics and /debug/pprof/ (URLs on stderr) to profile a run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *mb, *bigMB, *stats)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchadd: %v\n", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchadd: "+format+"\n", args...)
}

func run(ctx context.Context, mb, bigMB int, stats bool) error {
	work, err := os.MkdirTemp("", "ipfs-cluster-benchadd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := localcluster.Bin()
	if err != nil {
		return err
	}
	progress("starting 3 kubo daemons and 3 cluster peers")
	peers, err := localcluster.Start(ctx, localcluster.Options{Work: work, Peers: 3, LogLevel: "warn", Stats: stats})
	defer localcluster.Stop(peers)
	if err != nil {
		return err
	}
	for _, p := range peers {
		if p.StatsURL != "" {
			progress("%s: %s/metrics, %s/debug/pprof/", p.Name, p.StatsURL, p.StatsURL)
		}
	}
	file := func(name string, size int) (string, error) {
		path := filepath.Join(work, name)
		progress("writing %d MiB of random data to %s", size, name)
		return path, writeRandom(path, int64(size)<<20)
	}
	seconds := func(f func() error) (float64, error) {
		t0 := time.Now()
		err := f()
		return time.Since(t0).Seconds(), err
	}

	// kubo's own add, on the kubo of peer 2, which the cluster add below
	// does not write to.
	a, err := file("kubo.bin", mb)
	if err != nil {
		return err
	}
	progress("kubo add")
	took, err := seconds(func() error { _, err := peers[2].Kubo.Run(ctx, "add", "-Q", "--pin=false", a); return err })
	if err != nil {
		return err
	}
	kuboRate := float64(mb) / took
	localcluster.Report("kubo_add", kuboRate, "MiB/s", "mib", mb)

	// A cluster add of other content to peers 0 and 1.
	b, err := file("cluster.bin", mb)
	if err != nil {
		return err
	}
	allocs := peers[0].ID + "," + peers[1].ID
	progress("ipfs-cluster add to two peers")
	var clientMB float64
	took, err = seconds(func() error {
		clientMB, err = runClient(ctx, bin, "add", "--host", peers[0].APIAddr, "-Q", "--rmin", "2", "--rmax", "2", "--allocations", allocs, b)
		return err
	})
	if err != nil {
		return err
	}
	localcluster.Report("cluster_add", float64(mb)/took, "MiB/s", "mib", mb, "destinations", 2,
		"of_kubo_add", float64(mb)/took/kuboRate, "client_peak_rss_mb", clientMB, "daemon_peak_rss_mb", peers[0].PeakRSSMB())

	// The same path with one destination, the receiving peer's own kubo:
	// on a machine with few cores this separates the cost of the cluster
	// add from that of a second kubo writing every block.
	one, err := file("one.bin", mb)
	if err != nil {
		return err
	}
	progress("ipfs-cluster add to one peer")
	took, err = seconds(func() error {
		_, err := runClient(ctx, bin, "add", "--host", peers[0].APIAddr, "-Q", "--rmin", "1", "--rmax", "1", "--allocations", peers[0].ID, one)
		return err
	})
	if err != nil {
		return err
	}
	localcluster.Report("cluster_add_one_peer", float64(mb)/took, "MiB/s", "mib", mb, "destinations", 1, "of_kubo_add", float64(mb)/took/kuboRate)

	// A CAR of content no cluster kubo has, imported to peer 2 alone.
	c, err := file("car.bin", mb)
	if err != nil {
		return err
	}
	progress("making a CAR with kubo 1")
	root, err := peers[1].Kubo.Run(ctx, "add", "-Q", "--pin=false", c)
	if err != nil {
		return err
	}
	carPath := filepath.Join(work, "import.car")
	if err := exportCAR(ctx, peers[1], strings.TrimSpace(root), carPath); err != nil {
		return err
	}
	st, err := os.Stat(carPath)
	if err != nil {
		return err
	}
	progress("ipfs-cluster import of %d MiB to one peer", st.Size()>>20)
	took, err = seconds(func() error {
		_, err := runClient(ctx, bin, "import", "--host", peers[2].APIAddr, "-q", "--rmin", "1", "--rmax", "1", "--allocations", peers[2].ID, carPath)
		return err
	})
	if err != nil {
		return err
	}
	localcluster.Report("car_import", float64(st.Size())/(1<<20)/took, "MiB/s", "mib", st.Size()>>20)

	// Peak RSS while adding a big file, from a daemon that has not added
	// anything yet.
	d, err := file("big.bin", bigMB)
	if err != nil {
		return err
	}
	progress("ipfs-cluster add of %d MiB through peer 1", bigMB)
	clientMB, err = runClient(ctx, bin, "add", "--host", peers[1].APIAddr, "-Q", "--rmin", "2", "--rmax", "2", "--allocations", peers[1].ID+","+peers[2].ID, d)
	if err != nil {
		return err
	}
	localcluster.Report("big_add_rss", max(clientMB, peers[1].PeakRSSMB()), "MB", "mib", bigMB, "client_peak_rss_mb", clientMB, "daemon_peak_rss_mb", peers[1].PeakRSSMB())
	return nil
}

// runClient runs bin with args and returns its peak RSS in MB.
func runClient(ctx context.Context, bin string, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ipfs-cluster %s: %w: %s", args[0], err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, nil
	}
	return float64(ru.Maxrss) / 1024, nil
}

// exportCAR writes kubo's dag export of root to path.
func exportCAR(ctx context.Context, p *localcluster.Peer, root, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := p.Kubo.Exec(ctx, nil, w, "dag", "export", root); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Sync()
}

// writeRandom writes size bytes of fast pseudo-random (incompressible,
// undeduplicable) data.
func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16), byte(len(path))})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		rng.Read(buf)
		if _, err := w.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			return err
		}
	}
	return w.Flush()
}
