package script

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/daemon/daemontest"
	"ipfs-cluster/internal/kubo/kubotest"
	"ipfs-cluster/internal/policy"
)

// Random CIDs that no kubo holds: pinning them never completes.
const (
	missingCid  = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	missingCid2 = "bafkreih5tv2m2rmaao4qdcgwmsl3ugbmmsp2tqbsrlcvmgvxvqbslokmnm"
)

type result struct {
	stdout, stderr string
	err            error
}

// runLua writes src as t.lua (plus extra name/content pairs) in a fresh
// folder and runs it.
func runLua(t *testing.T, ctx context.Context, opts Options, src string, extra ...string) result {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i+1 < len(extra); i += 2 {
		if err := os.WriteFile(filepath.Join(dir, extra[i]), []byte(extra[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "t.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return runPath(t, ctx, opts, path)
}

func runPath(t *testing.T, ctx context.Context, opts Options, path string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	opts.Stdout, opts.Stderr = &out, &errOut
	if opts.Client == nil {
		opts.Client = unreachable(t)
	}
	err := Run(ctx, path, opts)
	return result{stdout: out.String(), stderr: errOut.String(), err: err}
}

// apiClient talks to p without keep-alive connections, so that no
// connection goroutine outlives a request (goleak checks).
func apiClient(t *testing.T, p *daemontest.Peer) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Hosts: []string{p.APIAddr}, DisableKeepAlives: true})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func unreachable(t *testing.T) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Hosts: []string{"/ip4/127.0.0.1/tcp/1"}, DisableKeepAlives: true})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func wantIn(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Fatalf("%s %q does not contain %q", what, s, p)
		}
	}
}

func wantErr(t *testing.T, r result, parts ...string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("no error, want one containing %q (stdout %q)", parts, r.stdout)
	}
	wantIn(t, "error", r.err.Error(), parts...)
}

func wantOK(t *testing.T, r result) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("script failed: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
}

// Tests that need no daemon.

func TestArgsPrintAndLines(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte("# a comment\n\n   bafkqaaa name=x   \n\t# indented comment\nsecond"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runLua(t, t.Context(), Options{Args: []string{"-x", "--help", list}}, `
local cluster = require("cluster")
print(#arg, arg[0] ~= nil, arg[1], arg[2])
print(select("#", ...), ...)
local n = 0
for line, no in cluster.lines(arg[3]) do
  n = n + 1
  print(no, "[" .. line .. "]")
end
print("lines", n)
`)
	wantOK(t, r)
	want := fmt.Sprintf("3\ttrue\t-x\t--help\n3\t-x\t--help\t%s\n3\t[bafkqaaa name=x]\n5\t[second]\nlines\t2\n", list)
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}

	// Standard input.
	r = runLua(t, t.Context(), Options{Stdin: strings.NewReader("a\n#b\nc\n")}, `
for line, n in require("cluster").lines("-") do print(n, line) end`)
	wantOK(t, r)
	if r.stdout != "1\ta\n3\tc\n" {
		t.Fatalf("stdin lines: %q", r.stdout)
	}
}

func TestLinesErrors(t *testing.T) {
	r := runLua(t, t.Context(), Options{}, `
local cluster = require("cluster")
for l in cluster.lines("does-not-exist.txt") do end`)
	wantErr(t, r, "t.lua:3: lines: open does-not-exist.txt: no such file")

	dir := t.TempDir()
	long := filepath.Join(dir, "long.txt")
	if err := os.WriteFile(long, []byte("ok\n"+strings.Repeat("x", maxLine+10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runLua(t, t.Context(), Options{Args: []string{long}}, `
local cluster = require("cluster")
for l in cluster.lines(arg[1]) do
  print(l)
end`)
	wantErr(t, r, "t.lua:3: lines: ", "long.txt:2: line longer than")
	if r.stdout != "ok\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
}

// An abandoned lines() loop does not keep its file open after the run.
func TestLinesBreakClosesFile(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := openFiles(t)
	r := runLua(t, t.Context(), Options{Args: []string{list}}, `
local cluster = require("cluster")
for i = 1, 50 do
  for l in cluster.lines(arg[1]) do break end
end`)
	wantOK(t, r)
	if after := openFiles(t); after > before {
		t.Fatalf("%d files open after the run, %d before", after, before)
	}
}

func openFiles(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(entries)
}

func TestSandboxRefusedBeforeRunning(t *testing.T) {
	r := runLua(t, t.Context(), Options{}, `
print("ran")
local f = io.open("secrets.txt")
os.execute("true")
local m = require("os")
`)
	wantErr(t, r, "script refused by the sandbox", "t.lua:3: io.open is not available",
		"t.lua:4: os.execute is not available", `t.lua:5: require("os") is refused`)
	if r.stdout != "" {
		t.Fatalf("the script ran: %q", r.stdout)
	}
	var se *policy.SandboxError
	if !errors.As(r.err, &se) || len(se.Violations) != 3 {
		t.Fatalf("want a SandboxError with 3 violations, got %#v", r.err)
	}

	// A name built at run time is refused where it is touched, and a
	// pcall that catches it does not save the script.
	r = runLua(t, t.Context(), Options{}, `
local ok = pcall(function() return _G["i" .. "o"].open end)
print("caught", ok)`)
	wantErr(t, r, "t.lua:2: io is not available in the policy sandbox")

	r = runLua(t, t.Context(), Options{}, "local x = \n")
	wantErr(t, r, "t.lua")
}

func TestRequireModules(t *testing.T) {
	r := runLua(t, t.Context(), Options{}, `
local helper = require("helper")
local size = require("size")
print(helper.twice(21), size.parse("1KiB"))
print(require("cluster") == require("cluster"))`,
		"helper.lua", "local M = {}\nfunction M.twice(x) return 2 * x end\nreturn M\n")
	wantOK(t, r)
	if r.stdout != "42\t1024\ntrue\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runLua(t, t.Context(), Options{}, `local m = require("nothere")`)
	wantErr(t, r, `t.lua:1: require("nothere") is refused: no module "nothere" in the script's folder`)
}

func TestBuiltinHasNoFolder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("helper.lua", []byte("return 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Run(t.Context(), "mine", Options{Client: unreachable(t), Stdout: &out,
		Source: []byte(`local h = require("helper")`)})
	if err == nil || !strings.Contains(err.Error(), `mine.lua:1: require("helper") is refused: no module "helper" among the embedded modules`) {
		t.Fatalf("err %v", err)
	}
}

func TestExit(t *testing.T) {
	r := runLua(t, t.Context(), Options{}, `
local cluster = require("cluster")
print("a")
local ok = pcall(cluster.exit, 3)
print("not reached", ok)`)
	var ex *ExitError
	if !errors.As(r.err, &ex) || ex.Code != 3 {
		t.Fatalf("err %v, want exit 3", r.err)
	}
	if r.stdout != "a\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runLua(t, t.Context(), Options{}, `require("cluster").exit(0) print("no")`)
	wantOK(t, r)
	if r.stdout != "" {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runLua(t, t.Context(), Options{}, `require("cluster").exit(256)`)
	wantErr(t, r, "t.lua:1: exit: want a code from 0 to 255")
}

func TestCancelStopsLoops(t *testing.T) {
	for name, src := range map[string]string{
		"busy":   "while true do end",
		"pcall":  "while true do pcall(function() while true do end end) end",
		"sleep":  "require('cluster').sleep(3600)",
		"sleeps": "local c = require('cluster') while true do pcall(c.sleep, 3600) end",
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			r := runLua(t, ctx, Options{}, src)
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Fatalf("stopped after %v", elapsed)
			}
			if !errors.Is(r.err, context.DeadlineExceeded) {
				t.Fatalf("err %v, want the deadline", r.err)
			}
			wantErr(t, r, "timed out at t.lua:1")
		})
	}
}

// A loop that fills a table is stopped at the heap limit, naming it,
// instead of taking the machine's memory.
func TestHeapLimit(t *testing.T) {
	start := time.Now()
	r := runLua(t, t.Context(), Options{HeapLimit: 64 << 20}, `
local t = {}
local i = 0
while true do i = i + 1; t[i] = {i, i, i} end`)
	if !errors.Is(r.err, ErrHeapLimit) {
		t.Fatalf("err %v, want the heap limit", r.err)
	}
	wantErr(t, r, "heap limit of 64 MiB", "t.lua:")
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Fatalf("stopped after %v", elapsed)
	}
}

func TestMemoryLimitPerStep(t *testing.T) {
	// 40 strings of 100 KiB: over a 1 MiB limit in one step, fine when
	// every string is made in its own step.
	r := runLua(t, t.Context(), Options{MemoryLimit: 1 << 20}, `
local s = ""
for i = 1, 40 do s = string.rep("x", 100 * 1024) end`)
	wantErr(t, r, "t.lua:3:", "string memory limit")
	r = runLua(t, t.Context(), Options{MemoryLimit: 1 << 20}, `
local cluster = require("cluster")
local s = ""
for i = 1, 40 do cluster.sleep(0) s = string.rep("x", 100 * 1024) end`)
	wantOK(t, r)
}

func TestProgressLine(t *testing.T) {
	src := `
local cluster = require("cluster")
for i = 1, 6 do
  cluster.progress(i, 6)
  print("line", i)
  cluster.sleep(0.05)
end`
	r := runLua(t, t.Context(), Options{tty: 1, progressDelay: 20 * time.Millisecond, progressEvery: 20 * time.Millisecond}, src)
	wantOK(t, r)
	wantIn(t, "stderr", r.stderr, clearLine+"t.lua: ", "/6 (", "0 calls, 0 errors", "t.lua: finished: 6/6 (100%)")
	if !strings.HasSuffix(r.stderr, "\n") {
		t.Fatalf("the final line does not end the terminal line: %q", r.stderr)
	}
	r = runLua(t, t.Context(), Options{tty: -1, progressDelay: 20 * time.Millisecond, progressEvery: 20 * time.Millisecond}, src)
	wantOK(t, r)
	if strings.Contains(r.stderr, "\r") {
		t.Fatalf("carriage return outside a terminal: %q", r.stderr)
	}
	wantIn(t, "stderr", r.stderr, "t.lua: finished: 6/6 (100%)")
	if strings.Count(r.stderr, "\n") < 2 {
		t.Fatalf("want periodic lines: %q", r.stderr)
	}
	// Short runs show nothing with the default timing, and Off never.
	r = runLua(t, t.Context(), Options{tty: -1}, src)
	wantOK(t, r)
	if r.stderr != "" {
		t.Fatalf("stderr %q", r.stderr)
	}
	r = runLua(t, t.Context(), Options{Progress: ProgressOff, tty: 1, progressDelay: time.Millisecond}, src)
	wantOK(t, r)
	if r.stderr != "" {
		t.Fatalf("stderr %q", r.stderr)
	}
}

func TestPinOptionErrors(t *testing.T) {
	for src, want := range map[string]string{
		`cluster.pin("bafkqaaa", {replicaton = 2})`:                       `t.lua:2: pin: unknown option "replicaton"`,
		`cluster.pin("bafkqaaa", {replication_min = "x"})`:                `t.lua:2: pin: option replication_min: want an integer, got string`,
		`cluster.pin("bafkqaaa", {replication = 2, replication_min = 1})`: "t.lua:2: pin: give replication, or replication_min and replication_max, not both",
		`cluster.pin("bafkqaaa", {mode = "deep"})`:                        `t.lua:2: pin: option mode: invalid pin mode "deep"`,
		`cluster.pin("bafkqaaa", {expire_in = "soon"})`:                   `t.lua:2: pin: option expire_in: invalid duration "soon"`,
		`cluster.pin("bafkqaaa", {user_allocations = {"nope"}})`:          `t.lua:2: pin: option user_allocations: "nope" is not a peer id`,
		`cluster.pin("bafkqaaa", {metadata = {k = {}}})`:                  `t.lua:2: pin: option metadata: value of "k": want a string, got table`,
		`cluster.pin("nope")`:                                             `t.lua:2: pin "nope": invalid CID`,
		`cluster.status("bafkqaaa", {locl = true})`:                       `t.lua:2: status: unknown option "locl" (options: local_only)`,
		`cluster.pins("pins")`:                                            `t.lua:2: pins: invalid filter value "pins"`,
	} {
		r := runLua(t, t.Context(), Options{}, "local cluster = require('cluster')\n"+src)
		wantErr(t, r, want)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90": 90 * time.Second, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour,
		"1.5h": 90 * time.Minute, "500ms": 500 * time.Millisecond,
	} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "h", "1x", "1h 2m", "-1h"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q): no error", in)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	path, src, err := Resolve("batch_pin")
	if err != nil || path != "batch_pin" || !bytes.Contains(src, []byte("batch_pin")) {
		t.Fatalf("builtin: %q %v", path, err)
	}
	if err := os.WriteFile("batch_pin", []byte("print(1)"), 0o644); err != nil {
		t.Fatal(err)
	}
	if path, src, err = Resolve("batch_pin"); err != nil || src != nil || path != "batch_pin" {
		t.Fatalf("a file wins over a builtin: %q %q %v", path, src, err)
	}
	if _, _, err := Resolve("batch_pin.lua"); err == nil || !strings.Contains(err.Error(), "built-in: batch_pin, repin_replication, under_replicated") {
		t.Fatalf("err %v", err)
	}
	if len(Builtins()) != 3 {
		t.Fatalf("builtins %v", Builtins())
	}
	for _, b := range Builtins() {
		if b[1] == "" {
			t.Errorf("builtin %s has no summary", b[0])
		}
	}
}

// Tests against a real peer.

func TestAgainstPeer(t *testing.T) {
	p := daemontest.Start(t, nil)
	cl := apiClient(t, p)
	cids := kubotest.AddFiles(t, p.Kubo, 5)
	opts := Options{Client: cl}

	t.Run("PinStatusUnpin", func(t *testing.T) {
		r := runLua(t, t.Context(), Options{Client: cl, Args: []string{cids[0]}}, `
local cluster = require("cluster")
local pin = cluster.pin(arg[1], {name = "first", replication_min = 1, replication_max = 1,
  metadata = {owner = "alice", n = 3}, expire_in = "1h", mode = "recursive"})
print(pin.cid == arg[1], pin.name, pin.replication_min, pin.replication_max, pin.metadata.owner,
  pin.metadata.n, #pin.allocations, pin.type, pin.mode, pin.expire_at ~= nil)
local st
for i = 1, 200 do
  st = cluster.status(arg[1])
  if st.pinned == 1 then break end
  cluster.sleep(0.05)
end
local id, info = next(st.peer_map)
print(st.cid == arg[1], st.name, st.pinned, st.counts.pinned, info.status, info.error, type(info.peername))
local again = cluster.allocation(arg[1])
print(again.name, again.metadata.owner, cluster.status(arg[1], {local_only = true}).pinned)
local old = cluster.unpin(arg[1])
print(old.name)
print(cluster.allocation(arg[1]))
`)
		wantOK(t, r)
		want := "true\tfirst\t1\t1\talice\t3\t1\tpin\trecursive\ttrue\n" +
			"true\tfirst\t1\t1\tpinned\tnil\tstring\n" +
			"first\talice\t1\nfirst\nnil\n"
		if r.stdout != want {
			t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
	})

	t.Run("PeersAndID", func(t *testing.T) {
		r := runLua(t, t.Context(), opts, `
local cluster = require("cluster")
local peers = cluster.peers()
local id = cluster.id()
print(#peers, peers[1].id == id.id, id.peername, type(id.ipfs.id), #id.addresses > 0, id.policy_sha256, id.error)`)
		wantOK(t, r)
		want := fmt.Sprintf("1\ttrue\t%s\tstring\ttrue\t\tnil\n", p.Config.Cluster.Peername)
		if r.stdout != want {
			t.Fatalf("stdout %q, want %q", r.stdout, want)
		}
	})

	t.Run("APIErrorsWithFileLine", func(t *testing.T) {
		r := runLua(t, t.Context(), Options{Client: cl, Args: []string{cids[1]}}, `
local cluster = require("cluster")
local ok, err = pcall(cluster.pin, arg[1], {replication = 3})
print(ok, err)
local st = cluster.unpin(arg[1])`)
		wantErr(t, r, "t.lua:5: unpin "+cids[1]+": 404 ")
		wantIn(t, "stdout", r.stdout, "false\tt.lua:3: pin "+cids[1]+": 500 ")
		// The API's own "pin <cid>: " prefix is not repeated.
		if strings.Count(r.stdout, cids[1]) != 1 {
			t.Fatalf("the CID is repeated: %q", r.stdout)
		}
	})

	t.Run("PinsIterator", func(t *testing.T) {
		r := runLua(t, t.Context(), Options{Client: cl, Args: cids[:4]}, `
local cluster = require("cluster")
for i = 1, 4 do cluster.pin(arg[i], {name = "it-" .. i, replication = 1}) end
local seen = {}
for pin in cluster.pins() do
  if string.sub(pin.name, 1, 3) == "it-" then seen[#seen + 1] = pin.name end
end
table.sort(seen)
print(table.concat(seen, ","))
local n = 0
for pin in cluster.pins("all") do n = n + 1 end
print(n >= 4)`)
		wantOK(t, r)
		if r.stdout != "it-1,it-2,it-3,it-4\ntrue\n" {
			t.Fatalf("stdout %q", r.stdout)
		}
	})

	t.Run("PinsBreakLeaksNothing", func(t *testing.T) {
		ignore := goleak.IgnoreCurrent()
		// More abandoned loops than maxStreams: the collector must reclaim
		// them, and the run must close what is left.
		r := runLua(t, t.Context(), opts, `
local cluster = require("cluster")
local n = 0
for i = 1, 40 do
  for pin in cluster.pins() do n = n + 1 break end
end
local first = cluster.pins()
local p = first()
print(n, p ~= nil)`)
		wantOK(t, r)
		if r.stdout != "40\ttrue\n" {
			t.Fatalf("stdout %q", r.stdout)
		}
		goleak.VerifyNone(t, ignore)
	})

	t.Run("PinsCanceled", func(t *testing.T) {
		ignore := goleak.IgnoreCurrent()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		r := runLua(t, ctx, opts, `
local cluster = require("cluster")
for pin in cluster.pins() do
  while true do end
end`)
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("err %v", r.err)
		}
		goleak.VerifyNone(t, ignore)
	})

	t.Run("Builtins", func(t *testing.T) {
		dir := t.TempDir()
		list := filepath.Join(dir, "list.txt")
		content := fmt.Sprintf(`# the batch
%s name=b-one rmin=1 rmax=1 meta.owner=alice
%s name="b two" replication=1 expire=7d

not-a-cid name=bad
%s name=b-three bogus=1
%s name=b-missing
`, cids[0], cids[1], cids[2], missingCid)
		if err := os.WriteFile(list, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		src, _ := BuiltinSource("batch_pin")
		var out, errOut bytes.Buffer
		err := Run(t.Context(), "batch_pin", Options{Client: cl, Source: src, Args: []string{list, "meta.batch=7"},
			Stdout: &out, Stderr: &errOut})
		var ex *ExitError
		if !errors.As(err, &ex) || ex.Code != 1 {
			t.Fatalf("batch_pin: err %v, want exit 1\n%s\n%s", err, out.String(), errOut.String())
		}
		wantIn(t, "stdout", out.String(), "pinned "+cids[0]+" b-one (1 allocations)", "pinned "+cids[1]+" b two",
			"pinned 3 of 5, 2 failed")
		wantIn(t, "stderr", errOut.String(), list+`:5: pin "not-a-cid": invalid CID`,
			list+":6: unknown option bogus")
		pin := getPin(t, cl, cids[0])
		if pin.Metadata["owner"] != "alice" || pin.Metadata["batch"] != "7" || pin.ReplicationFactorMax != 1 {
			t.Fatalf("pin %+v", pin.PinOptions)
		}
		if pin := getPin(t, cl, cids[1]); pin.Name != "b two" || pin.ExpireAt.IsZero() {
			t.Fatalf("pin %+v", pin.PinOptions)
		}

		// The missing CID never gets pinned: under-replicated.
		src, _ = BuiltinSource("under_replicated")
		out.Reset()
		errOut.Reset()
		err = Run(t.Context(), "under_replicated", Options{Client: cl, Source: src, Args: []string{"--fail"},
			Stdout: &out, Stderr: &errOut})
		if !errors.As(err, &ex) || ex.Code != 1 {
			t.Fatalf("under_replicated: err %v, want exit 1\n%s\n%s", err, out.String(), errOut.String())
		}
		wantIn(t, "stdout", out.String(), missingCid+"\t0/1\tb-missing\t", "under-replicated (1 peers)")
		if strings.Contains(out.String(), cids[0]) {
			t.Fatalf("a pinned CID is reported: %s", out.String())
		}

		src, _ = BuiltinSource("repin_replication")
		out.Reset()
		errOut.Reset()
		err = Run(t.Context(), "repin_replication", Options{Client: cl, Source: src, Args: []string{"-1", "-1", "^b%-"},
			Stdout: &out, Stderr: &errOut})
		if err != nil {
			t.Fatalf("repin_replication: %v\n%s\n%s", err, out.String(), errOut.String())
		}
		wantIn(t, "stdout", out.String(), "repinned "+cids[0]+" b-one: 1..1 -> -1..-1 on every peer",
			"repinned 1 of 2 selected pins (5 in the pinset), 1 already at -1..-1, 0 failed")
		pin = getPin(t, cl, cids[0])
		if pin.ReplicationFactorMin != -1 || pin.Name != "b-one" || pin.Metadata["owner"] != "alice" {
			t.Fatalf("repinned pin %+v", pin.PinOptions)
		}
		if pin := getPin(t, cl, cids[1]); pin.ExpireAt.IsZero() || pin.ReplicationFactorMax != 1 {
			t.Fatalf("b two was not selected by ^b%%- but changed: %+v", pin.PinOptions)
		}
	})
}

func getPin(t *testing.T, cl *client.Client, c string) api.Pin {
	t.Helper()
	ci, err := api.DecodeCid(c)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := cl.Allocation(t.Context(), ci)
	if err != nil {
		t.Fatalf("allocation %s: %v", c, err)
	}
	return pin
}
