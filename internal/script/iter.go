package script

import (
	"bufio"
	"context"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"ipfs-cluster/internal/api"
)

// Stream limits. A pins() loop streams the pinset from one request: a
// goroutine decodes pins into a small buffer that the Lua iterator drains,
// so memory stays flat whatever the pinset's size.
const (
	streamBuffer = 16
	// maxStreams bounds the pins() requests open at once. Lua 5.1 has no
	// way to tell an iterator that its loop was left with break, so an
	// abandoned iterator holds its request until the garbage collector
	// finds it unreachable (or the script ends); past this many, pins()
	// collects garbage first and then refuses.
	maxStreams = 16
	// maxLine is the longest line cluster.lines accepts.
	maxLine = 1 << 20
)

// pinStream is one pins() request.
type pinStream struct {
	ch     chan api.Pin
	cancel context.CancelFunc
	done   chan struct{} // closed when the request has ended
	err    error         // the request's error, set before done closes
	ended  bool          // the Lua side saw the end
}

// streamHandle is what the Lua iterator holds: when it becomes garbage
// (the loop was left early and nothing refers to the iterator), a cleanup
// cancels the request.
type streamHandle struct{ ps *pinStream }

// pins returns an iterator over the pinset: `for pin in cluster.pins() do`.
// The optional argument is a comma-separated list of pin types (pin,
// meta-pin, clusterdag-pin, shard-pin, all); the default is "pin".
func (r *runner) pins(L *lua.LState) int {
	filter := api.DataType
	if v := L.Get(1); v != lua.LNil {
		f, unknown, err := api.ParsePinTypeFilter(L.CheckString(1))
		if err != nil {
			L.RaiseError("pins: %v", err)
		}
		if len(unknown) > 0 {
			L.RaiseError("pins: unknown pin type %q", unknown[0])
		}
		filter = f
	}
	r.s.Step()
	r.reserveStream(L)
	ctx, cancel := context.WithCancel(r.ctx)
	ps := &pinStream{ch: make(chan api.Pin, streamBuffer), cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	r.streams[ps] = struct{}{}
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ps.err = r.cl.Allocations(ctx, filter, func(p api.Pin) error {
			select {
			case ps.ch <- p:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(ps.done)
	}()
	h := &streamHandle{ps: ps}
	runtime.AddCleanup(h, func(ps *pinStream) { ps.cancel() }, ps)
	L.Push(L.NewFunction(func(L *lua.LState) int { return r.nextPin(L, h) }))
	return 1
}

func (r *runner) nextPin(L *lua.LState, h *streamHandle) int {
	ps := h.ps
	if ps.ended {
		L.Push(lua.LNil)
		return 1
	}
	var p api.Pin
	select {
	case p = <-ps.ch:
	case <-ps.done:
		// The request ended; pins may still be buffered.
		select {
		case p = <-ps.ch:
		default:
			r.endStream(L, ps)
			L.Push(lua.LNil)
			return 1
		}
	case <-r.ctx.Done():
		L.RaiseError("pins: interrupted")
	}
	r.s.Step()
	L.Push(pinTable(L, &p))
	return 1
}

// endStream records the end of a request the loop read to its end, and
// raises its error.
func (r *runner) endStream(L *lua.LState, ps *pinStream) {
	ps.ended = true
	ps.cancel()
	r.mu.Lock()
	delete(r.streams, ps)
	r.mu.Unlock()
	if ps.err != nil {
		r.prog.errs.Add(1)
		L.RaiseError("%s", r.describe("pins", "", ps.err))
	}
	r.prog.calls.Add(1)
}

// openStreams counts the requests still running, and forgets the ones
// that ended (abandoned loops whose cleanup canceled them).
func (r *runner) openStreams() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for ps := range r.streams {
		select {
		case <-ps.done:
			delete(r.streams, ps)
		default:
			n++
		}
	}
	return n
}

func (r *runner) reserveStream(L *lua.LState) {
	if r.openStreams() < maxStreams {
		return
	}
	// Abandoned iterators are canceled by cleanups that run after a
	// collection finds them unreachable.
	runtime.GC()
	deadline := time.Now().Add(time.Second)
	for r.openStreams() >= maxStreams && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.openStreams() >= maxStreams {
		L.RaiseError("pins: %d cluster.pins() loops are unfinished at once: read a loop to its end, "+
			"or keep fewer iterators alive after leaving their loop", maxStreams)
	}
}

// lineReader is one cluster.lines() file.
type lineReader struct {
	path string
	f    *os.File // nil for stdin
	sc   *bufio.Scanner
	n    int // lines read
	done bool
}

func (lr *lineReader) close() {
	lr.done = true
	if lr.f != nil {
		lr.f.Close()
	}
}

type lineHandle struct{ lr *lineReader }

// lines returns an iterator over the meaningful lines of a local file:
// `for line, n in cluster.lines(path) do`. Lines are trimmed; blank lines
// and lines starting with # are skipped; n is the line number in the
// file, for messages. "-" reads standard input. It is the only file
// access a script has.
func (r *runner) lines(L *lua.LState) int {
	path := L.CheckString(1)
	r.s.Step()
	lr := &lineReader{path: path}
	var in io.Reader = r.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			L.RaiseError("lines: %v", err)
		}
		lr.f, in = f, f
	}
	lr.sc = bufio.NewScanner(in)
	lr.sc.Buffer(make([]byte, 64<<10), maxLine)
	r.mu.Lock()
	r.readers[lr] = struct{}{}
	r.mu.Unlock()
	h := &lineHandle{lr: lr}
	if lr.f != nil {
		runtime.AddCleanup(h, func(f *os.File) { f.Close() }, lr.f)
	}
	L.Push(L.NewFunction(func(L *lua.LState) int { return r.nextLine(L, h) }))
	return 1
}

func (r *runner) nextLine(L *lua.LState, h *lineHandle) int {
	lr := h.lr
	if lr.done {
		L.Push(lua.LNil)
		return 1
	}
	r.s.Step()
	for lr.sc.Scan() {
		lr.n++
		line := strings.TrimSpace(lr.sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		L.Push(lua.LString(line))
		L.Push(lua.LNumber(lr.n))
		return 2
	}
	err := lr.sc.Err()
	lr.close()
	r.mu.Lock()
	delete(r.readers, lr)
	r.mu.Unlock()
	if err != nil {
		if err == bufio.ErrTooLong {
			L.RaiseError("lines: %s:%d: line longer than %d bytes", lr.path, lr.n+1, maxLine)
		}
		L.RaiseError("lines: %s: %v", lr.path, err)
	}
	L.Push(lua.LNil)
	return 1
}
