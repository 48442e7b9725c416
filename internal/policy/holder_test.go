package policy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

func TestHolderWithoutPolicy(t *testing.T) {
	h, err := NewHolder("", Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if h.Policy() != nil || h.Hash() != "" || h.Reload() != nil {
		t.Fatal("empty holder has a policy")
	}
	if ok, _, err := h.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

func TestHolderRefusesBrokenPolicyAtStart(t *testing.T) {
	_, err := NewHolder(writePolicy(t, "function admit(pin) return os.exit() end"), Options{Logger: quiet()})
	var se *SandboxError
	if !errors.As(err, &se) {
		t.Fatalf("NewHolder error = %v", err)
	}
}

func TestHolderReloadKeepsPreviousOnFailure(t *testing.T) {
	path := writePolicy(t, `function replication(pin) return 2, 2 end`)
	reg := prometheus.NewRegistry()
	h, err := NewHolder(path, Options{Logger: quiet(), Registerer: reg, Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	first := h.Hash()
	ctx := context.Background()

	for _, broken := range []string{
		"function replication(pin) return 3, 3 end\nx = = 1", // syntax
		"function replication(pin) return io.read() end",     // sandbox
		"error('top level fails')",                           // load
		"replication = 'not a function'",                     // hook type
	} {
		if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		err := h.Reload()
		if err == nil {
			t.Fatalf("Reload of %q succeeded", broken)
		}
		wantErrContains(t, err, "keeping the previous policy", first)
		if h.Hash() != first {
			t.Fatalf("hash changed to %s after a failed reload", h.Hash())
		}
		if lo, hi, err := h.Replication(ctx, testPin(t)); lo != 2 || hi != 2 || err != nil {
			t.Fatalf("Replication after failed reload = %d, %d, %v", lo, hi, err)
		}
	}
	var syn *SyntaxError
	if err := os.WriteFile(path, []byte("x = = 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); !errors.As(err, &syn) {
		t.Errorf("Reload error %v does not wrap the *SyntaxError", err)
	}

	if err := os.WriteFile(path, []byte(`function replication(pin) return 4, 5 end`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if h.Hash() == first {
		t.Fatal("hash unchanged after a good reload")
	}
	if lo, hi, err := h.Replication(ctx, testPin(t)); lo != 4 || hi != 5 || err != nil {
		t.Fatalf("Replication after reload = %d, %d, %v", lo, hi, err)
	}
	if got := counterValue(h.reloads.WithLabelValues("error")); got != 5 {
		t.Errorf("reload errors = %v", got)
	}
	if got := counterValue(h.reloads.WithLabelValues("ok")); got != 1 {
		t.Errorf("reload ok = %v", got)
	}
}

// Reloads never block calls: hooks keep answering, from the old or the new
// policy, while reloads run in a loop.
func TestHolderReloadDuringCalls(t *testing.T) {
	path := writePolicy(t, `function replication(pin) return 1, 1 end`)
	h, err := NewHolder(path, Options{Logger: quiet(), Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				lo, hi, err := h.Replication(context.Background(), testPin(t))
				if err != nil || lo != hi || (lo != 1 && lo != 2) {
					t.Errorf("Replication = %d, %d, %v", lo, hi, err)
					return
				}
			}
		}()
	}
	for i := range 20 {
		src := `function replication(pin) return 1, 1 end`
		if i%2 == 0 {
			src = `function replication(pin) return 2, 2 end`
		}
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := h.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}

func TestHolderCountsAndRateLimitsFailures(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := zerolog.New(zerolog.SyncWriter(&lockedWriter{w: &buf, mu: &mu}))
	reg := prometheus.NewRegistry()
	path := writePolicy(t, `
function admit(pin) return "maybe" end
function allocate(pin, c) error("allocator broken") end
function retry_priority(pin, n, err) while true do end end`)
	h, err := NewHolder(path, Options{Logger: &logger, Registerer: reg, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	ctx := context.Background()

	for range 5 {
		if ok, _, err := h.Admit(ctx, testPin(t)); ok || !errors.Is(err, ErrBadReturn) {
			t.Fatalf("Admit = %v, %v", ok, err)
		}
	}
	if ids, err := h.Allocate(ctx, testPin(t), testCandidates(2)); ids != nil || !errors.Is(err, ErrRuntime) {
		t.Fatalf("Allocate = %v, %v", ids, err)
	}
	if r, err := h.RetryPriority(ctx, testPin(t), 1, "x"); r.Class != RetryDefault || !errors.Is(err, ErrTimeout) {
		t.Fatalf("RetryPriority = %v, %v", r, err)
	}
	mu.Lock()
	lines := strings.Count(buf.String(), "policy hook failed")
	mu.Unlock()
	if lines != 3 { // one per hook
		t.Fatalf("%d failure log lines, want 3:\n%s", lines, buf.String())
	}

	now = now.Add(11 * time.Second)
	h.Admit(ctx, testPin(t))
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	last := out[strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n")+1:]
	for _, want := range []string{`"hook":"admit"`, `"suppressed":4`, `"kind":"bad_return"`, "pin refused", `admit returned string \"maybe\"`} {
		if !strings.Contains(last, want) {
			t.Errorf("log line %s lacks %s", last, want)
		}
	}

	f := h.Failures()
	if f["admit"] != 6 || f["allocate"] != 1 || f["retry_priority"] != 1 || f["replication"] != 0 {
		t.Errorf("Failures = %v", f)
	}
	if got := counterValue(h.failures.WithLabelValues("admit", "bad_return")); got != 6 {
		t.Errorf("admit failures metric = %v", got)
	}
	if got := counterValue(h.failures.WithLabelValues("retry_priority", "timeout")); got != 1 {
		t.Errorf("retry_priority timeout metric = %v", got)
	}

	// A second holder on the same registry shares the collectors.
	if _, err := NewHolder(path, Options{Logger: quiet(), Registerer: reg}); err != nil {
		t.Fatalf("second holder: %v", err)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
