// Package script runs Lua batch scripts against a cluster's REST API: the
// `ipfs-cluster script FILE.lua [args...]` command. A script runs in the
// sandbox of policies (internal/policy.RunScript: same libraries, static
// check, string metering) without a time budget, plus the cluster module
// (cluster.go) that pins, unpins, reads statuses, streams the pinset and
// reads local lists of CIDs. docs/policies.md documents the Lua API.
package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/memory"
	"ipfs-cluster/internal/policy"
	"ipfs-cluster/scripts"
)

// ProgressMode says whether Run shows a progress line.
type ProgressMode int

// Progress modes.
const (
	// ProgressAuto shows a progress line on Stderr once a run has lasted a
	// moment: redrawn in place on a terminal, else a line every few
	// seconds.
	ProgressAuto ProgressMode = iota
	// ProgressOff shows none.
	ProgressOff
)

// Options configure Run.
type Options struct {
	// Client talks to the cluster's REST API.
	Client *client.Client
	// Args are the script's arguments (arg[1]... and ...).
	Args []string
	// Source, when not nil, is the script's code (a built-in script, see
	// Resolve); the path then only names it.
	Source []byte
	// Stdin is what cluster.lines("-") reads.
	Stdin io.Reader
	// Stdout receives print(); Stderr cluster.warn() and the progress line.
	// Nil discards.
	Stdout, Stderr io.Writer
	Progress       ProgressMode
	// MemoryLimit bounds the bytes of strings the script may create between
	// two operations of the cluster module (default
	// policy.DefaultMemoryLimit).
	MemoryLimit int64
	// HeapLimit stops the script once the process's heap holds more than
	// this many bytes (default DefaultHeapLimit): a loop that fills a
	// table would otherwise take the machine's memory.
	HeapLimit int64

	// Progress timing and terminal detection, for tests.
	progressDelay, progressEvery time.Duration
	tty                          int // 0: detect, 1: terminal, -1: not
}

// DefaultHeapLimit is the heap a script may fill: far more than a script
// that streams a pinset needs, far less than a machine has.
const DefaultHeapLimit = 1 << 30

// heapPoll is how often the heap is looked at against HeapLimit.
const heapPoll = 50 * time.Millisecond

// ErrHeapLimit is the cause of a script stopped for filling the heap.
var ErrHeapLimit = errors.New("the script's memory exceeded its heap limit")

// ExitError is returned by Run when the script called cluster.exit with a
// non-zero code.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("script exited with status %d", e.Code) }

// exitCause is the context cause cluster.exit cancels the script with.
type exitCause struct{ code int }

func (e *exitCause) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Run runs the script at path until it ends or ctx does. The error is nil
// when the script ran to its end or called cluster.exit(0), an *ExitError
// for cluster.exit(n), and otherwise a *policy.ScriptError whose message
// starts with the script's file:line (wrapping ctx's error when ctx
// ended the run). Every request, goroutine and file the script opened is
// closed when Run returns.
func Run(ctx context.Context, path string, opts Options) error {
	if opts.Client == nil {
		return errors.New("script: no API client")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r := newRunner(ctx, cancel, path, opts)
	limit := opts.HeapLimit
	if limit <= 0 {
		limit = DefaultHeapLimit
	}
	go memory.WatchLimit(ctx, heapPoll, uint64(limit), func(uint64) {
		cancel(fmt.Errorf("%w of %d MiB", ErrHeapLimit, limit>>20))
	})
	r.prog.begin()
	err := policy.RunScript(ctx, path, policy.ScriptOptions{
		Args:        opts.Args,
		Source:      opts.Source,
		Modules:     map[string]func(*policy.Script) lua.LValue{"cluster": r.module},
		Stdout:      r.stdout,
		MemoryLimit: opts.MemoryLimit,
	})
	r.closeAll()
	r.prog.end()
	var ex *exitCause
	if errors.As(err, &ex) {
		if ex.code == 0 {
			return nil
		}
		return &ExitError{Code: ex.code}
	}
	return err
}

// Resolve finds the script that the command line names: the file arg when
// it exists, else the built-in script of that name (a bare name such as
// batch_pin, without .lua). src is nil for a file.
func Resolve(arg string) (path string, src []byte, err error) {
	_, statErr := os.Stat(arg)
	if statErr == nil {
		return arg, nil, nil
	}
	if !errors.Is(statErr, fs.ErrNotExist) {
		return "", nil, statErr
	}
	if b, ok := scripts.Source(arg); ok {
		return arg, b, nil
	}
	return "", nil, fmt.Errorf("no script file %s, and no built-in script of that name (built-in: %s)",
		arg, strings.Join(scripts.Names(), ", "))
}

// Builtins lists the built-in scripts with the first line of their header.
func Builtins() [][2]string {
	var out [][2]string
	for _, n := range scripts.Names() {
		src, _ := scripts.Source(n)
		out = append(out, [2]string{n, scripts.Summary(src)})
	}
	return out
}

// BuiltinSource returns the code of a built-in script.
func BuiltinSource(name string) ([]byte, bool) { return scripts.Source(name) }
