package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	carfile "ipfs-cluster/internal/car"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
)

func runKubo(t *testing.T, d *kubo.Daemon, args ...string) string {
	t.Helper()
	out, err := d.Run(t.Context(), args...)
	if err != nil {
		t.Fatalf("ipfs %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// TestAddAcrossPeersAndImportCAR adds a folder with replication 2 on three
// peers: exactly the two allocated kubo daemons hold every block and pin
// the root, the third holds nothing. Then a CAR exported by kubo imports
// with the same root, and broken CARs fail with nothing pinned.
func TestAddAcrossPeersAndImportCAR(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, nil)
	cl := peers[0].Client(t)
	dir := t.TempDir()
	big := make([]byte, 3<<20)
	rand.Read(big)
	for name, data := range map[string][]byte{"big.bin": big, "small.txt": []byte("hello cluster\n"), "sub/inner.txt": []byte("inner\n")} {
		path := filepath.Join(dir, "folder", name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	folder := filepath.Join(dir, "folder")
	want := strings.TrimSpace(runKubo(t, peers[2].Kubo, "add", "-Q", "-r", "--only-hash", folder))

	q := url.Values{"recursive": {"true"}, "replication-min": {"2"}, "replication-max": {"2"}, "name": {"folder"}}
	var out []api.AddedOutput
	if err := cl.Add(t.Context(), []string{folder}, q, func(o api.AddedOutput) error {
		out = append(out, o)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	root := out[len(out)-1]
	if root.Cid.String() != want || root.Name != "folder" {
		t.Fatalf("add ended with %+v, want %s as kubo computes it", root, want)
	}
	pin, err := cl.Allocation(t.Context(), root.Cid)
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Allocations) != 2 || pin.Name != "folder" {
		t.Fatalf("pin %+v, want two allocations", pin)
	}
	// Every added file and folder names the allocations; progress does not.
	for _, o := range out {
		if o.Cid.Defined() != slices.Equal(o.Allocations, pin.Allocations) {
			t.Fatalf("output %+v, pin allocated to %v", o, pin.Allocations)
		}
	}
	for _, p := range peers {
		allocated := slices.Contains(pin.Allocations, p.Identity.ID)
		if !allocated {
			// Nothing reached the third kubo.
			if out, err := p.Kubo.Run(t.Context(), "block", "stat", "--offline", want); err == nil {
				t.Fatalf("%s is not allocated but holds the root: %s", p.Config.Cluster.Peername, out)
			}
			continue
		}
		waitUntil(t, 30*time.Second, "pinned on "+p.Config.Cluster.Peername, func() (bool, string) {
			pins := kubotest.Pins(t, p.Kubo, "recursive")
			return pins[want], ""
		})
		// Every block is local: an offline walk of the DAG succeeds (and
		// the same block stat that fails on the third peer works here).
		runKubo(t, p.Kubo, "refs", "-r", "--offline", want)
		runKubo(t, p.Kubo, "block", "stat", "--offline", want)
	}

	t.Run("car import", func(t *testing.T) {
		car := []byte(runKubo(t, peers[0].Kubo, "dag", "export", want))
		carPath := filepath.Join(dir, "folder.car")
		if err := os.WriteFile(carPath, car, 0o644); err != nil {
			t.Fatal(err)
		}
		// Unpin first so the import is what pins it again.
		if _, err := cl.Unpin(t.Context(), root.Cid); err != nil {
			t.Fatal(err)
		}
		importCAR := func(data []byte) (api.AddedOutput, error) {
			var last api.AddedOutput
			err := cl.AddFiles(t.Context(), client.ReaderDirectory("x.car", bytes.NewReader(data)), url.Values{"format": {"car"}},
				func(o api.AddedOutput) error { last = o; return nil })
			return last, err
		}
		got, err := importCAR(car)
		if err != nil || got.Cid.String() != want {
			t.Fatalf("import = %+v, %v; want root %s", got, err, want)
		}
		if _, err := cl.Allocation(t.Context(), got.Cid); err != nil {
			t.Fatalf("imported root not pinned: %v", err)
		}

		flipped := slices.Clone(car)
		flipped[len(flipped)-10] ^= 0xff
		for name, data := range map[string][]byte{
			"truncated":              car[:len(car)/2],
			"flipped":                flipped,
			"without its root block": withoutRoot(t, car),
		} {
			if _, err := cl.Unpin(t.Context(), root.Cid); err != nil && !errors.Is(err, context.Canceled) {
				var apiErr api.Error
				if !errors.As(err, &apiErr) || apiErr.Code != 404 {
					t.Fatal(err)
				}
			}
			_, err := importCAR(data)
			var apiErr api.Error
			if !errors.As(err, &apiErr) || apiErr.Code != 400 || !strings.Contains(apiErr.Message, "car:") {
				t.Fatalf("%s CAR: %v, want a 400 naming the CAR problem", name, err)
			}
			if _, err := cl.Allocation(t.Context(), root.Cid); err == nil {
				t.Fatalf("%s CAR: the root is pinned", name)
			}
		}
	})
}

// TestAddLocalAndWithADeadDestination checks --local (the blocks go only to
// the receiving peer's kubo, the pin is allocated there and to the user's
// choice or the allocator's, and the other allocated peers fetch the DAG) and an add whose one destination has its
// kubo down: it succeeds on the other, and the pin flow repairs the first
// once its kubo is back.
func TestAddLocalAndWithADeadDestination(t *testing.T) {
	peers := daemontest.StartCluster(t, 3, nil)
	p0, p1, p2 := peers[0], peers[1], peers[2]
	cl := p0.Client(t)
	var last api.AddedOutput
	add := func(content string, q url.Values) api.Cid {
		t.Helper()
		err := cl.AddFiles(t.Context(), client.ReaderDirectory("f.txt", strings.NewReader(content)), q,
			func(o api.AddedOutput) error { last = o; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return last.Cid
	}
	pinnedIn := func(p *daemontest.Peer, c api.Cid) func() (bool, string) {
		return func() (bool, string) { return kubotest.Pins(t, p.Kubo, "recursive")[c.String()], "" }
	}

	allocs := p1.Identity.ID.String() + "," + p2.Identity.ID.String()
	c := add("local add\n", url.Values{"local": {"true"}, "replication-min": {"2"}, "replication-max": {"2"}, "user-allocations": {allocs}})
	if _, err := p0.Kubo.Run(t.Context(), "block", "stat", "--offline", c.String()); err != nil {
		t.Fatalf("--local: the receiving peer's kubo lacks the root: %v", err)
	}
	for _, p := range []*daemontest.Peer{p1, p2} {
		waitUntil(t, 30*time.Second, "--local add pinned on "+p.Config.Cluster.Peername, pinnedIn(p, c))
	}
	// Without user allocations, the receiving peer, whose kubo has the
	// blocks, is one of the allocations.
	for i := range 3 {
		c = add(fmt.Sprintf("local add %d\n", i), url.Values{"local": {"true"}, "replication-min": {"1"}, "replication-max": {"1"}})
		if pin, err := cl.Allocation(t.Context(), c); err != nil || !slices.Equal(pin.Allocations, []peer.ID{p0.Identity.ID}) {
			t.Fatalf("--local add allocated to %v (%v), want the receiving peer %s", pin.Allocations, err, p0.Identity.ID)
		}
		waitUntil(t, 30*time.Second, "--local add pinned on the receiving peer", pinnedIn(p0, c))
	}

	if err := p1.Kubo.Terminate(); err != nil {
		t.Fatal(err)
	}
	c = add("one destination down\n", url.Values{"replication-min": {"2"}, "replication-max": {"2"}, "user-allocations": {allocs}})
	if f := last.FailedDestinations; len(f) != 1 || f[0].Peer != p1.Identity.ID || !strings.Contains(f[0].Error, "streaming blocks") {
		t.Fatalf("the add's last output reports failed destinations %+v, want %s's", f, p1.Identity.ID)
	}
	pin, err := cl.Allocation(t.Context(), c)
	if err != nil || !slices.Contains(pin.Allocations, p1.Identity.ID) {
		t.Fatalf("pin %+v (%v): want it allocated to the peer whose kubo is down", pin, err)
	}
	waitUntil(t, 30*time.Second, "pinned on the live destination", pinnedIn(p2, c))
	if err := p1.Kubo.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Routing is off in tests: the peer reconnects its restarted kubo to
	// the one that holds the blocks (connect_swarms_delay).
	waitUntil(t, 60*time.Second, "the failed destination repaired", pinnedIn(p1, c))
}

// withoutRoot is the CAR data with its root's section left out.
func withoutRoot(t *testing.T, data []byte) []byte {
	t.Helper()
	rd, err := carfile.NewReader(bytes.NewReader(data), carfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := carfile.NewWriter(&out, rd.Roots())
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !b.Cid().Equals(rd.Roots()[0]) {
			if err := w.Put(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestAddWithAFailingRemoteDestination adds more than a stream window of
// data to two peers while the second one's kubo is dead, then while it is
// hung: each time the add returns (it must not wait on a receiver that no
// longer reads), reports that destination with the receiver's reason, and
// pins; the tracker then repairs the destination.
func TestAddWithAFailingRemoteDestination(t *testing.T) {
	const stall = 4 * time.Second
	peers := daemontest.StartCluster(t, 3, func(i int, c *config.Config) {
		if i > 0 {
			c.IPFSConnector.IPFSHTTP.IPFSRequestTimeout = config.Duration(stall)
		}
	})
	p0, p1, p2 := peers[0], peers[1], peers[2]
	all := []peer.ID{p0.Identity.ID, p1.Identity.ID, p2.Identity.ID}
	// add adds 8 MiB to all three peers and checks that exactly the
	// destinations in failing failed.
	add := func(what string, failing ...*daemontest.Peer) (cluster.AddResult, time.Duration) {
		t.Helper()
		data := make([]byte, 8<<20)
		rand.Read(data)
		params := cluster.AddParams{Pin: api.PinOptions{ReplicationFactorMin: 3, ReplicationFactorMax: 3,
			UserAllocations: all, Name: what}}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		res, err := p0.Cluster.Add(ctx, params, func(ctx context.Context, sink adder.BlockSink) (api.Cid, error) {
			a, err := adder.New(adder.Options{}, sink, nil)
			if err != nil {
				return api.Cid{}, err
			}
			return a.AddReader(ctx, what, bytes.NewReader(data))
		})
		if err != nil {
			t.Fatalf("%s: add: %v", what, err)
		}
		for _, p := range failing {
			if res.Failed[p.Identity.ID] == nil {
				t.Fatalf("%s: failed destinations %v, want %s among them", what, res.Failed, p.Identity.ID)
			}
		}
		if len(res.Failed) != len(failing) {
			t.Fatalf("%s: failed destinations %v, want %d", what, res.Failed, len(failing))
		}
		return res, time.Since(start)
	}
	pinnedIn := func(p *daemontest.Peer, c api.Cid) func() (bool, string) {
		return func() (bool, string) { return kubotest.Pins(t, p.Kubo, "recursive")[c.String()], "" }
	}

	p1.Kubo.Kill()
	res, took := add("receiver's kubo dead", p1)
	if msg := res.Failed[p1.Identity.ID].Error(); !strings.Contains(msg, "streaming blocks") {
		t.Errorf("dead kubo: failure %q does not give the receiver's reason", msg)
	}
	t.Logf("dead kubo: the add returned in %v: %v", took, res.Failed[p1.Identity.ID])
	waitUntil(t, 30*time.Second, "pinned on the live destinations", pinnedIn(p0, res.Pin.Cid))
	waitUntil(t, 30*time.Second, "pinned on the live destinations", pinnedIn(p2, res.Pin.Cid))
	if err := p1.Kubo.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 90*time.Second, "the dead destination repaired", pinnedIn(p1, res.Pin.Cid))

	// Two hung destinations: both are reported, and the add goes on
	// with the third.
	var resumes []func()
	for _, p := range []*daemontest.Peer{p1, p2} {
		resume, err := p.Kubo.Freeze()
		if err != nil {
			t.Fatal(err)
		}
		resumes = append(resumes, resume)
	}
	res, took = add("receivers' kubo hung", p1, p2)
	for _, resume := range resumes {
		resume()
	}
	for _, p := range []*daemontest.Peer{p1, p2} {
		if !strings.Contains(res.Failed[p.Identity.ID].Error(), "ipfs_request_timeout") {
			t.Errorf("hung kubo: failure %v, want the receiver's stall", res.Failed[p.Identity.ID])
		}
	}
	t.Logf("2 hung kubo daemons: the add returned in %v", took)
	for _, p := range []*daemontest.Peer{p1, p2} {
		waitUntil(t, 90*time.Second, "the hung destination repaired", pinnedIn(p, res.Pin.Cid))
	}
}
