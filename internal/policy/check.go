package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

// Report is the result of Check and of a dry run, for `ipfs-cluster policy
// check` and `policy test`. Write prints it for humans; it also encodes as
// JSON.
type Report struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256,omitempty"`
	// OK: the policy loads and, for a dry run, no hook failed.
	OK    bool      `json:"ok"`
	Hooks []HookDef `json:"hooks"`
	// Syntax is the first syntax error, as file:line: message.
	Syntax     string      `json:"syntax_error,omitempty"`
	Violations []Violation `json:"violations,omitempty"`
	// LoadError is an error raised by the top level or a hook global that
	// is not a function.
	LoadError string `json:"load_error,omitempty"`
	// Results holds one entry per hook, in call order (dry runs only).
	Results []HookResult `json:"results,omitempty"`
	// Output is what the policy print()ed during the dry run.
	Output []string `json:"output,omitempty"`
}

// HookDef is a hook the policy defines and where.
type HookDef struct {
	Hook  string `json:"hook"`
	Where string `json:"where"`
}

// HookResult is one hook's answer in a dry run.
type HookResult struct {
	Hook    string `json:"hook"`
	Defined bool   `json:"defined"`
	// Answer is the converted answer: {"ok","reason"} for admit,
	// {"min","max"} for replication, an array of ids for allocate (null for
	// "no answer"), {"class","delay_seconds"} for retry_priority.
	Answer any `json:"answer,omitempty"`
	// Summary is the answer in words, including what the daemon would do.
	Summary string `json:"summary"`
	Error   string `json:"error,omitempty"`
	// ErrorKind is timeout, bad_return or runtime.
	ErrorKind string        `json:"error_kind,omitempty"`
	Elapsed   time.Duration `json:"elapsed_ns"`
}

// checkOptions are the options of Check and of CLI loads: default limits,
// no logging (the CLI prints the report instead).
func checkOptions() Options {
	l := zerolog.Nop()
	return Options{Logger: &l, PoolSize: 1}
}

// Check loads the policy at path the way the daemon would and reports its
// syntax, the hooks it defines and every sandbox violation found (static
// ones, or the first one hit while running the top level). The error is
// nil exactly when report.OK; it is the Load error otherwise.
func Check(path string) (Report, error) {
	r := Report{Path: path}
	if src, err := os.ReadFile(path); err == nil {
		sum := sha256.Sum256(src)
		r.SHA256 = hex.EncodeToString(sum[:])
	}
	p, err := Load(path, checkOptions())
	if err != nil {
		r.fail(err)
		return r, err
	}
	r.describePolicy(p)
	r.OK = true
	return r, nil
}

// CheckPolicy is Check for an already loaded policy: it lists the hooks.
func CheckPolicy(p *Policy) Report {
	r := Report{}
	r.describePolicy(p)
	r.OK = true
	return r
}

func (r *Report) describePolicy(p *Policy) {
	r.Path, r.SHA256 = p.Path(), p.Hash()
	r.Hooks = []HookDef{}
	for _, h := range Hooks() {
		if p.Has(h) {
			r.Hooks = append(r.Hooks, HookDef{Hook: h.String(), Where: p.defined[h]})
		}
	}
}

func (r *Report) fail(err error) {
	r.OK = false
	var (
		se  *SandboxError
		syn *SyntaxError
		le  *LoadError
	)
	switch {
	case errors.As(err, &se):
		r.Violations = append(r.Violations, se.Violations...)
		sortViolations(r.Violations)
	case errors.As(err, &syn):
		r.Syntax = syn.Error()
	case errors.As(err, &le):
		r.LoadError = le.Error()
	default:
		r.LoadError = err.Error()
	}
}

// DryRunInput is what a dry run feeds the hooks.
type DryRunInput struct {
	Pin        api.Pin
	Candidates []Candidate
	// Attempts and LastError are retry_priority's arguments (default 1 and
	// "dry run").
	Attempts  int
	LastError string
}

// DryRun calls every hook of p once with pin and cands, as `policy test`
// does, and reports each answer or error. retry_priority gets attempt 1 and
// the error text "dry run". A nil p reports every hook as not defined.
func DryRun(ctx context.Context, p *Policy, pin api.Pin, cands []Candidate) Report {
	return DryRunWith(ctx, p, DryRunInput{Pin: pin, Candidates: cands})
}

type outputKey struct{}

// DryRunWith is DryRun with every input explicit.
func DryRunWith(ctx context.Context, p *Policy, in DryRunInput) Report {
	if in.Attempts <= 0 {
		in.Attempts = 1
	}
	if in.LastError == "" {
		in.LastError = "dry run"
	}
	r := CheckPolicy(p)
	var output []string
	ctx = context.WithValue(ctx, outputKey{}, &output)

	run := func(h Hook, f func() (any, string, error)) {
		res := HookResult{Hook: h.String(), Defined: p.Has(h)}
		start := time.Now()
		ans, summary, err := f()
		res.Elapsed = time.Since(start)
		switch {
		case err != nil:
			res.Error = err.Error()
			res.ErrorKind = kindLabel(err)
			res.Summary = fallbackText(h, true)
			r.OK = false
		case !res.Defined:
			res.Summary = "not defined: " + fallbackText(h, false)
		default:
			res.Answer, res.Summary = ans, summary
		}
		r.Results = append(r.Results, res)
	}

	run(HookAdmit, func() (any, string, error) {
		ok, reason, err := p.Admit(ctx, in.Pin)
		if ok {
			return map[string]any{"ok": true}, "admitted", err
		}
		return map[string]any{"ok": false, "reason": reason}, fmt.Sprintf("refused: %s", reason), err
	})
	run(HookReplication, func() (any, string, error) {
		lo, hi, err := p.Replication(ctx, in.Pin)
		ans := map[string]int{"min": lo, "max": hi}
		switch {
		case lo == 0 && hi == 0:
			return ans, "no answer: the configured default applies", err
		case lo == -1:
			return ans, "pin everywhere (-1, -1)", err
		}
		return ans, fmt.Sprintf("min %d, max %d", lo, hi), err
	})
	run(HookAllocate, func() (any, string, error) {
		ids, err := p.Allocate(ctx, in.Pin, in.Candidates)
		if ids == nil {
			return nil, "no answer: the built-in order applies", err
		}
		names := make([]string, len(ids))
		for i, id := range ids {
			names[i] = id.String()
		}
		if len(ids) == 0 {
			return names, fmt.Sprintf("no peer accepted (0 of %d candidates)", len(in.Candidates)), err
		}
		return names, fmt.Sprintf("%s (%d of %d candidates)", strings.Join(names, ", "), len(ids), len(in.Candidates)), err
	})
	run(HookRetryPriority, func() (any, string, error) {
		rt, err := p.RetryPriority(ctx, in.Pin, in.Attempts, in.LastError)
		ans := map[string]any{"class": rt.Class.String(), "delay_seconds": rt.Delay.Seconds()}
		var s string
		switch {
		case rt.Class == RetryDefault:
			s = "no answer: the built-in rule applies"
		case rt.Class == RetryFailed:
			s = "failed: no more retries"
		case rt.Delay > 0:
			s = fmt.Sprintf("%s, retry after %v", rt.Class, rt.Delay)
		default:
			s = fmt.Sprintf("%s, retry now", rt.Class)
		}
		return ans, fmt.Sprintf("%s (attempt %d, error %q)", s, in.Attempts, in.LastError), err
	})
	r.Output = output
	return r
}

// fallbackText says what the daemon does when hook h is not defined or,
// with failed, when it fails: every hook falls back to the built-in
// behaviour except admission, which fails closed.
func fallbackText(h Hook, failed bool) string {
	switch {
	case h == HookAdmit && failed:
		return "admission fails closed (the pin is refused)"
	case h == HookAdmit:
		return "built-in admission (the pin is admitted)"
	case h == HookReplication:
		return "the configured default factors apply"
	case h == HookAllocate:
		return "the built-in order applies"
	default:
		return "the built-in retry rule applies"
	}
}

// Write prints the report for humans: a header, then one line per hook.
func (r Report) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-15s %s", "policy", r.Path)
	if r.SHA256 != "" {
		fmt.Fprintf(&b, " (sha256 %s)", r.SHA256)
	}
	b.WriteByte('\n')
	if len(r.Hooks) > 0 {
		defs := make([]string, len(r.Hooks))
		for i, d := range r.Hooks {
			defs[i] = fmt.Sprintf("%s (%s)", d.Hook, d.Where)
		}
		fmt.Fprintf(&b, "%-15s %s\n", "hooks", strings.Join(defs, ", "))
	} else if r.Syntax == "" && r.LoadError == "" && len(r.Violations) == 0 {
		fmt.Fprintf(&b, "%-15s none defined: every decision is built-in\n", "hooks")
	}
	if r.Syntax != "" {
		fmt.Fprintf(&b, "%-15s %s\n", "syntax error", r.Syntax)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "%-15s %s\n", "refused", v.Message)
	}
	if r.LoadError != "" {
		fmt.Fprintf(&b, "%-15s %s\n", "load error", r.LoadError)
	}
	for _, res := range r.Results {
		if res.Error != "" {
			fmt.Fprintf(&b, "%-15s ERROR (%s): %s; %s\n", res.Hook, res.ErrorKind, res.Error, res.Summary)
			continue
		}
		fmt.Fprintf(&b, "%-15s %s\n", res.Hook, res.Summary)
	}
	for _, line := range r.Output {
		fmt.Fprintf(&b, "%-15s %s\n", "print", line)
	}
	status := "ok"
	if !r.OK {
		status = "FAILED"
	}
	fmt.Fprintf(&b, "%-15s %s\n", "status", status)
	_, err := io.WriteString(w, b.String())
	return err
}

// Describe returns what Write prints.
func Describe(r Report) string {
	var b strings.Builder
	_ = r.Write(&b) // a strings.Builder does not fail
	return b.String()
}

// ParsePin decodes the pin JSON of `policy test --pin`: the Pin/PinOptions
// JSON of the API ("cid", "name", "replication_factor_min", "metadata",
// ...). Unknown fields are errors, to catch the Lua spellings
// ("replication_min") by mistake.
func ParsePin(data []byte) (api.Pin, error) {
	var pin api.Pin
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pin); err != nil {
		return api.Pin{}, fmt.Errorf("pin JSON: %w", err)
	}
	if dec.More() {
		return api.Pin{}, errors.New("pin JSON: trailing data after the object")
	}
	return pin, nil
}

// ParseCandidates decodes the candidates JSON of `policy test
// --candidates`: an array of objects with the Lua field names (id,
// peername, tags, freespace, pinqueue, numpin, current, priority). Every id
// must be a valid peer ID, once.
func ParseCandidates(data []byte) ([]Candidate, error) {
	var cands []Candidate
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cands); err != nil {
		return nil, fmt.Errorf("candidates JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("candidates JSON: trailing data after the array")
	}
	seen := make(map[string]int, len(cands))
	for i, c := range cands {
		if c.ID == "" {
			return nil, fmt.Errorf("candidates JSON: candidate %d has no id", i+1)
		}
		if j, dup := seen[string(c.ID)]; dup {
			return nil, fmt.Errorf("candidates JSON: candidates %d and %d have the same id %s", j+1, i+1, c.ID)
		}
		seen[string(c.ID)] = i
	}
	return cands, nil
}
