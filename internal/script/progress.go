package script

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Progress timing. On a terminal the line appears after ttyDelay and is
// redrawn in place; elsewhere (a log file, a CI job) a line is written every
// logEvery, the first after logEvery, so short runs print nothing.
const (
	ttyDelay = time.Second
	ttyEvery = 250 * time.Millisecond
	logEvery = 5 * time.Second
)

// clearLine returns the cursor to the start of the line and erases it.
const clearLine = "\r\x1b[K"

// progress counts the script's operations and shows them on stderr. The
// counters are updated by the script's goroutine and read by the ticker's.
type progress struct {
	w     io.Writer
	name  string
	tty   bool
	off   bool
	delay time.Duration
	every time.Duration
	start time.Time

	calls, errs atomic.Int64
	// done and total are what cluster.progress last set; total < 0 when
	// unknown. explicit says whether it was ever called.
	done, total atomic.Int64
	explicit    atomic.Bool

	mu    sync.Mutex // serializes writes to the terminal
	drawn bool       // a progress line is on the terminal now
	shown bool       // a progress line was written at least once

	stop chan struct{}
	wg   sync.WaitGroup
}

func newProgress(w io.Writer, name string, opts Options) *progress {
	p := &progress{w: w, name: name, off: opts.Progress == ProgressOff || w == io.Discard, stop: make(chan struct{})}
	switch opts.tty {
	case 1:
		p.tty = true
	case 0:
		p.tty = IsTerminal(w)
	}
	if p.tty {
		p.delay, p.every = ttyDelay, ttyEvery
	} else {
		p.delay, p.every = logEvery, logEvery
	}
	if opts.progressDelay > 0 {
		p.delay = opts.progressDelay
	}
	if opts.progressEvery > 0 {
		p.every = opts.progressEvery
	}
	p.total.Store(-1)
	return p
}

// IsTerminal reports whether w is a character device, such as a terminal:
// where a progress line may be redrawn in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) begin() {
	p.start = time.Now()
	if p.off {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTimer(p.delay)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw(false)
				t.Reset(p.every)
			}
		}
	}()
}

// end stops the ticker and, when a progress line was shown, writes the
// final one.
func (p *progress) end() {
	if p.off {
		return
	}
	close(p.stop)
	p.wg.Wait()
	if p.shown {
		p.draw(true)
	}
}

func (p *progress) draw(final bool) {
	line := p.line(final)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "%s%s\n", clearLine, line)
		p.drawn = false
	case p.tty:
		fmt.Fprintf(p.w, "%s%s", clearLine, line)
		p.drawn = true
	default:
		fmt.Fprintln(p.w, line)
	}
	p.shown = true
}

// line renders the counters, e.g. "batch_pin.lua: 1200/5000 (24%), 1300
// calls, 3 errors, 42.1/s, 28s".
func (p *progress) line(final bool) string {
	elapsed := time.Since(p.start)
	var b strings.Builder
	b.WriteString(p.name)
	b.WriteString(": ")
	if final {
		b.WriteString("finished: ")
	}
	calls, errs := p.calls.Load(), p.errs.Load()
	count := calls
	if p.explicit.Load() {
		done, total := p.done.Load(), p.total.Load()
		count = done
		if total > 0 {
			fmt.Fprintf(&b, "%d/%d (%d%%), ", done, total, done*100/total)
		} else {
			fmt.Fprintf(&b, "%d done, ", done)
		}
	}
	fmt.Fprintf(&b, "%d calls, %d errors", calls, errs)
	if secs := elapsed.Seconds(); secs > 0 {
		fmt.Fprintf(&b, ", %.1f/s", float64(count)/secs)
	}
	fmt.Fprintf(&b, ", %v", elapsed.Round(time.Second))
	return b.String()
}

// writer returns w wrapped so that what the script writes does not mix
// with a progress line drawn on the terminal.
func (p *progress) writer(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	if p.off || !p.tty {
		return w
	}
	return &progressWriter{p: p, w: w}
}

type progressWriter struct {
	p *progress
	w io.Writer
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	pw.p.mu.Lock()
	defer pw.p.mu.Unlock()
	if pw.p.drawn {
		_, _ = io.WriteString(pw.p.w, clearLine) // best effort, like the line itself
		pw.p.drawn = false
	}
	return pw.w.Write(b)
}
