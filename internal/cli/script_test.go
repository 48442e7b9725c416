package cli

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runScriptCmd runs `ipfs-cluster script args...` and returns its outputs
// and exit code.
func runScriptCmd(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(Root(), append([]string{"script"}, args...), strings.NewReader(stdin), &stdout, &stderr,
		func(string) string { return "" })
	return stdout.String(), stderr.String(), code
}

func writeScriptFile(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestScriptExitCodes(t *testing.T) {
	for _, tc := range []struct {
		src    string
		code   int
		stdout string
		stderr string
	}{
		{src: `print("ok")`, code: 0, stdout: "ok\n"},
		{src: "print('a')\nlocal x = nil\nx.y = 1", code: 1, stdout: "a\n", stderr: "Error: t.lua:3: attempt to index a non-table object(nil) with key 'y'\n"},
		{src: "error('bad input', 0)", code: 1, stderr: "Error: bad input\n"},
		{src: "require('cluster').exit(3)", code: 3},
		{src: "require('cluster').exit(0) print('no')", code: 0},
		{src: "local f = io.open('x')", code: 1, stderr: "Error: script refused by the sandbox: t.lua:1: io.open is not available in the policy sandbox\n"},
	} {
		stdout, stderr, code := runScriptCmd(t, "", writeScriptFile(t, tc.src))
		if code != tc.code || stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want %d, %q, %q", tc.src, code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
}

// Flags go before FILE; everything after it is the script's.
func TestScriptArgsAndFlags(t *testing.T) {
	path := writeScriptFile(t, `
local cluster = require("cluster")
print(table.concat(arg, " "))
print(cluster.id().peername)
for line in cluster.lines("-") do print("line " .. line) end`)
	f := newCtlFakeAPI(t)
	stdout, stderr, code := runScriptCmd(t, "one\n# two\nthree\n", "--host", f.host(), "--basic-auth", "u:p", "--force-http",
		path, "-x", "--host", "elsewhere", "--help", "-3")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if want := "-x --host elsewhere --help -3\nalpha\nline one\nline three\n"; stdout != want {
		t.Fatalf("stdout %q, want %q", stdout, want)
	}
	if got := f.got(); len(got) != 1 || got[0] != "GET /id" || f.auth[0] != "u:p" {
		t.Fatalf("requests %v, auth %v", got, f.auth)
	}

	_, stderr, code = runScriptCmd(t, "", "--no-such-flag", path)
	if code != 1 || !strings.Contains(stderr, "flag provided but not defined: -no-such-flag") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	stdout, _, code = runScriptCmd(t, "", "--help")
	if code != 0 || !strings.Contains(stdout, "ipfs-cluster script [options] FILE|NAME [args...]") || !strings.Contains(stdout, "--basic-auth") {
		t.Fatalf("help: %d %q", code, stdout)
	}
}

func TestScriptBuiltins(t *testing.T) {
	t.Chdir(t.TempDir())
	stdout, _, code := runScriptCmd(t, "", "list")
	if code != 0 || !strings.Contains(stdout, "batch_pin ") || !strings.Contains(stdout, "under_replicated ") {
		t.Fatalf("list: %d %q", code, stdout)
	}
	stdout, _, code = runScriptCmd(t, "", "show", "repin_replication")
	if code != 0 || !strings.HasPrefix(stdout, "-- repin_replication: ") {
		t.Fatalf("show: %d %q", code, stdout)
	}
	_, stderr, code := runScriptCmd(t, "", "show", "nope")
	if code != 1 || !strings.Contains(stderr, `no built-in script "nope"`) {
		t.Fatalf("show nope: %d %q", code, stderr)
	}
	_, stderr, code = runScriptCmd(t, "")
	if code != 1 || !strings.Contains(stderr, "script needs a FILE, or the name of a built-in script (batch_pin, repin_replication, under_replicated)") {
		t.Fatalf("no FILE: %d %q", code, stderr)
	}
	// A built-in by name; its usage error comes from the script.
	_, stderr, code = runScriptCmd(t, "", "repin_replication", "2")
	if code != 1 || !strings.Contains(stderr, "Error: usage: ipfs-cluster script repin_replication") {
		t.Fatalf("builtin: %d %q", code, stderr)
	}
	_, stderr, code = runScriptCmd(t, "", "missing.lua")
	if code != 1 || !strings.Contains(stderr, "Error: no script file missing.lua") {
		t.Fatalf("missing: %d %q", code, stderr)
	}
}

// SIGINT stops a running script with exit code 130 and says where.
func TestScriptInterrupt(t *testing.T) {
	path := writeScriptFile(t, "print('ready')\nwhile true do end\n")
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(Root(), []string{"script", path}, strings.NewReader(""), pw, &stderr, func(string) string { return "" })
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	// The command handles the signal from before the script starts.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	select {
	case code := <-done:
		if code != scriptExitInterrupted || !strings.Contains(stderr.String(), "Error: interrupted (interrupt signal received) at t.lua:2") {
			t.Fatalf("code %d, stderr %q", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the script did not stop")
	}
}
