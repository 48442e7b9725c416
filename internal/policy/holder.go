package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

// logEvery is the minimum interval between two log lines about failures of
// the same hook; the failures in between are counted and reported with the
// next line. A policy that fails on every pin must not flood the log.
const logEvery = 10 * time.Second

// Holder holds the active policy of a peer and is what the daemon calls.
//
// Readers get the current *Policy through an atomic pointer, so a reload
// never blocks a hook call and a call in flight finishes on the policy it
// started with. Reload serializes reloads among themselves only. The hook
// methods forward to the current policy, count failures per hook and log
// them at most once per hook every 10s with the number suppressed.
//
// A Holder without a policy file (path "") has a nil policy: every hook is
// absent. All methods are safe for concurrent use.
type Holder struct {
	path string
	opts Options
	log  zerolog.Logger

	cur      atomic.Pointer[Policy]
	reloadMu sync.Mutex
	stats    [numHooks]hookStats

	failures *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	now      func() time.Time
}

type hookStats struct {
	failures   atomic.Uint64
	lastLog    atomic.Int64 // unix nanoseconds of the last log line
	suppressed atomic.Uint64
}

// NewHolder loads the policy at path. An empty path means no policy. A
// policy that fails to load is an error: a peer should not start with a
// policy other than the one configured.
func NewHolder(path string, opts Options) (*Holder, error) {
	opts = opts.withDefaults()
	h := &Holder{path: path, opts: opts, log: *opts.Logger, now: time.Now}
	if err := h.registerMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	if path == "" {
		return h, nil
	}
	p, err := Load(path, opts)
	if err != nil {
		return nil, err
	}
	h.cur.Store(p)
	h.log.Info().Str("policy", path).Str("sha256", p.Hash()).Strs("hooks", p.HookNames()).Msg("policy loaded")
	return h, nil
}

func (h *Holder) registerMetrics(reg prometheus.Registerer) error {
	h.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ipfscluster", Subsystem: "policy", Name: "hook_failures_total",
		Help: "Lua policy hook calls that failed, by hook and kind (timeout, bad_return, runtime).",
	}, []string{"hook", "kind"})
	h.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ipfscluster", Subsystem: "policy", Name: "reloads_total",
		Help: "Lua policy reloads, by result (ok, error).",
	}, []string{"result"})
	if reg == nil {
		return nil
	}
	for _, c := range []**prometheus.CounterVec{&h.failures, &h.reloads} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("policy metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return fmt.Errorf("policy metrics: %w", err)
			}
			*c = existing
		}
	}
	return nil
}

// Policy returns the current policy, nil when none is configured.
func (h *Holder) Policy() *Policy { return h.cur.Load() }

// Hash is the sha256 of the current policy file, "" without a policy.
func (h *Holder) Hash() string { return h.cur.Load().Hash() }

// Path is the configured policy file, "" when none.
func (h *Holder) Path() string { return h.path }

// Reload loads the policy file again. On failure the previous policy stays
// active and the error (wrapping the Load error, so errors.As finds a
// *SandboxError or *SyntaxError) says so. Without a policy file it does
// nothing.
func (h *Holder) Reload() error {
	if h.path == "" {
		return nil
	}
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	old := h.cur.Load()
	p, err := Load(h.path, h.opts)
	if err != nil {
		h.reloads.WithLabelValues("error").Inc()
		h.log.Error().Err(err).Str("policy", h.path).Str("kept_sha256", old.Hash()).
			Msg("policy reload failed; keeping the previous policy")
		return fmt.Errorf("policy reload failed, keeping the previous policy (sha256 %s): %w", old.Hash(), err)
	}
	h.cur.Store(p)
	h.reloads.WithLabelValues("ok").Inc()
	h.log.Info().Str("policy", h.path).Str("sha256", p.Hash()).Str("previous_sha256", old.Hash()).
		Strs("hooks", p.HookNames()).Msg("policy reloaded")
	return nil
}

// Admit is Policy.Admit on the current policy; failures are counted and
// logged. On error ok is false: the caller refuses the pin with the error.
func (h *Holder) Admit(ctx context.Context, pin api.Pin) (bool, string, error) {
	ok, reason, err := h.cur.Load().Admit(ctx, pin)
	if err != nil {
		h.failed(HookAdmit, err, pin)
	}
	return ok, reason, err
}

// Replication is Policy.Replication on the current policy. On error it
// returns 0, 0 like "no answer", so a caller may use the default without
// looking at the error, which is already counted and logged.
func (h *Holder) Replication(ctx context.Context, pin api.Pin) (int, int, error) {
	lo, hi, err := h.cur.Load().Replication(ctx, pin)
	if err != nil {
		h.failed(HookReplication, err, pin)
	}
	return lo, hi, err
}

// Allocate is Policy.Allocate on the current policy. On error it returns a
// nil slice like "no answer": the built-in order applies.
func (h *Holder) Allocate(ctx context.Context, pin api.Pin, cands []Candidate) ([]peer.ID, error) {
	ids, err := h.cur.Load().Allocate(ctx, pin, cands)
	if err != nil {
		h.failed(HookAllocate, err, pin)
	}
	return ids, err
}

// RetryPriority is Policy.RetryPriority on the current policy. On error it
// returns Retry{Class: RetryDefault}: the built-in rule applies.
func (h *Holder) RetryPriority(ctx context.Context, pin api.Pin, attempts int, lastErr string) (Retry, error) {
	r, err := h.cur.Load().RetryPriority(ctx, pin, attempts, lastErr)
	if err != nil {
		h.failed(HookRetryPriority, err, pin)
	}
	return r, err
}

// Failures returns the number of failed calls per hook name since the
// Holder was created (reloads do not reset them).
func (h *Holder) Failures() map[string]uint64 {
	out := make(map[string]uint64, numHooks)
	for i := range numHooks {
		out[hookNames[i]] = h.stats[i].failures.Load()
	}
	return out
}

func kindLabel(err error) string {
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrBadReturn):
		return "bad_return"
	default:
		return "runtime"
	}
}

func (h *Holder) failed(hook Hook, err error, pin api.Pin) {
	s := &h.stats[hook]
	s.failures.Add(1)
	h.failures.WithLabelValues(hook.String(), kindLabel(err)).Inc()

	now := h.now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(logEvery) || !s.lastLog.CompareAndSwap(last, now) {
		s.suppressed.Add(1)
		return
	}
	var ev *zerolog.Event
	if hook == HookAdmit {
		ev = h.log.Warn() // the pin was refused: the client sees the error
	} else {
		ev = h.log.Error()
	}
	c := ""
	if pin.Cid.Defined() {
		c = pin.Cid.String()
	}
	fallback := "built-in behaviour used"
	if hook == HookAdmit {
		fallback = "pin refused"
	}
	ev.Str("hook", hook.String()).Str("kind", kindLabel(err)).Err(err).Str("cid", c).
		Str("policy", h.path).Uint64("suppressed", s.suppressed.Swap(0)).
		Msg("policy hook failed; " + fallback)
}
