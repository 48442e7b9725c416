package adder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/kubo"
)

// shared is one offline kubo daemon for the whole package: starting one
// takes about a second, and `ipfs add --only-hash` through it can run in
// parallel (an offline `ipfs add` would take the repo lock).
var shared struct {
	once sync.Once
	d    *kubo.Daemon
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.d != nil {
		if err := shared.d.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping kubo:", err)
		}
	}
	os.Exit(code)
}

// sharedKubo starts the package's kubo daemon on first use.
func sharedKubo(t testing.TB) *kubo.Daemon {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.d, shared.err = kubo.Start(ctx, kubo.Options{Offline: true})
	})
	if shared.err != nil {
		t.Fatalf("starting kubo: %v", shared.err)
	}
	return shared.d
}

// ctxTimeout is a test context bounded so that a hang fails the test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// added is one "added <cid> <name>" line, or one event of ours.
type added struct{ Name, Cid string }

func (a added) String() string { return a.Cid + " " + a.Name }

// ipfs runs the kubo command line against the shared daemon, with stdin
// when not nil, and returns its standard output.
func ipfs(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	out, err := ipfsRun(t, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kuboAddRPC adds one file with `add?only-hash=true&quieter=true&<query>`
// through kubo's RPC API, the way the command line sends it to a daemon
// but without starting a process, and returns the root CID or kubo's
// error.
func kuboAddRPC(t testing.TB, query, name string, data []byte) (string, error) {
	t.Helper()
	d := sharedKubo(t)
	mfr := files.NewMultiFileReader(files.NewSliceDirectory([]files.DirEntry{
		files.FileEntry(name, files.NewBytesFile(data)),
	}), true, false)
	req, err := http.NewRequestWithContext(ctxTimeout(t, time.Minute), http.MethodPost,
		d.APIURL+"/api/v0/add?only-hash=true&quieter=true&"+query, mfr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+mfr.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Hash, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("kubo add reply: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(out.Message)
	}
	if msg := resp.Trailer.Get("X-Stream-Error"); msg != "" {
		return "", errors.New(msg)
	}
	return out.Hash, nil
}

func ipfsRun(t testing.TB, stdin []byte, args ...string) (string, error) {
	t.Helper()
	var in io.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	var out strings.Builder
	err := sharedKubo(t).Exec(ctxTimeout(t, 2*time.Minute), in, &out, args...)
	return out.String(), err
}

// kuboAdd runs `ipfs add --only-hash` and returns its lines in order.
func kuboAdd(t testing.TB, stdin []byte, args ...string) []added {
	t.Helper()
	return kuboAddLines(t, stdin, append([]string{"--only-hash"}, args...))
}

// kuboAddStored is kuboAdd with the blocks written (and not pinned): kubo
// v0.38.1's --only-hash ignores --max-directory-links for the folder
// added, which a real add honours.
func kuboAddStored(t testing.TB, args ...string) []added {
	t.Helper()
	return kuboAddLines(t, nil, append([]string{"--pin=false"}, args...))
}

func kuboAddLines(t testing.TB, stdin []byte, args []string) []added {
	t.Helper()
	out := ipfs(t, stdin, append([]string{"add", "--progress=false"}, args...)...)
	var lines []added
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rest, ok := strings.CutPrefix(l, "added ")
		if !ok {
			t.Fatalf("unexpected ipfs add output line %q", l)
		}
		c, name, _ := strings.Cut(rest, " ")
		lines = append(lines, added{Name: name, Cid: c})
	}
	return lines
}

// result is what one of our adds produced.
type result struct {
	root   string
	events []added // completion events, without progress
	sink   *adder.MemorySink
}

// run adds with the given options through add, keeping every block.
func run(t testing.TB, opts adder.Options, add func(context.Context, *adder.Adder) (api.Cid, error)) result {
	t.Helper()
	var res result
	res.sink = &adder.MemorySink{}
	a, err := adder.New(opts, res.sink, func(o api.AddedOutput) {
		if o.Cid.Defined() {
			res.events = append(res.events, added{Name: o.Name, Cid: o.Cid.String()})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	root, err := add(ctxTimeout(t, 2*time.Minute), a)
	if err != nil {
		t.Fatal(err)
	}
	res.root = root.String()
	return res
}

// addPaths adds paths from disk.
func addPaths(paths ...string) func(context.Context, *adder.Adder) (api.Cid, error) {
	return func(ctx context.Context, a *adder.Adder) (api.Cid, error) { return a.AddPaths(ctx, paths...) }
}

// addMultipart sends paths through the multipart format exactly as
// ipfs-cluster-ctl builds it (boxo's serial files and MultiFileReader),
// streamed through a pipe, and adds the received body.
func addMultipart(t testing.TB, hidden bool, paths ...string) func(context.Context, *adder.Adder) (api.Cid, error) {
	return func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
		var entries []files.DirEntry
		for _, p := range paths {
			st, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := files.NewSerialFile(p, hidden, st)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, files.FileEntry(filepath.Base(p), f))
		}
		mfr := files.NewMultiFileReader(files.NewSliceDirectory(entries), true, false)
		return a.AddMultipart(ctx, multipart.NewReader(mfr, mfr.Boundary()))
	}
}

// randomBytes returns n pseudo-random bytes from seed: the same seed gives
// the same content, which keeps failures reproducible.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeFile(t testing.TB, p string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sameAdds fails unless our events match kubo's lines, in order.
func sameAdds(t testing.TB, what string, got result, want []added) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: kubo printed nothing", what)
	}
	if got.root != want[len(want)-1].Cid {
		t.Errorf("%s: root %s, kubo's %s", what, got.root, want[len(want)-1].Cid)
	}
	if !slices.Equal(got.events, want) {
		t.Errorf("%s: events differ from kubo's lines\n got: %v\nwant: %v", what, trim(got.events), trim(want))
	}
}

// trim shortens long listings in failure messages.
func trim(l []added) []added {
	if len(l) > 12 {
		return append(append(l[:6:6], added{Name: "...", Cid: "..."}), l[len(l)-6:]...)
	}
	return l
}
