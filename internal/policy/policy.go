// Package policy runs the operator's Lua policy: four optional hooks that
// steer admission, replication factors, allocation order and retries (see
// docs/policies.md for the contract policy authors rely on).
//
// A policy file is parsed, statically checked and compiled once by Load.
// Hook calls run on a pool of sandboxed Lua states, each of which has
// already executed the compiled chunk, so a call costs a Lua function call
// plus the conversion of its arguments. No lock is held across calls: one
// Lua state serves one call at a time and the pool hands out states through
// a channel.
//
// Every hook method is safe for concurrent use and never panics on what the
// policy does: runtime errors, time-outs and malformed return values come
// back as errors wrapping ErrRuntime, ErrTimeout or ErrBadReturn. What to do
// with an error is the caller's choice; the design is that admission fails
// closed and the other hooks fall back to the built-in behaviour. Holder
// wraps a Policy with lock-free reloads, failure counters and rate-limited
// logging, and is what the daemon is expected to use.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	lua "github.com/yuin/gopher-lua"

	"ipfs-cluster/internal/logging"
)

// Hook names one of the global functions a policy may define.
type Hook int

// The hooks, in the order they run for a new pin.
const (
	HookAdmit Hook = iota
	HookReplication
	HookAllocate
	HookRetryPriority
	numHooks
)

var hookNames = [numHooks]string{"admit", "replication", "allocate", "retry_priority"}

// String returns the Lua name of the hook.
func (h Hook) String() string {
	if h < 0 || h >= numHooks {
		return fmt.Sprintf("hook(%d)", int(h))
	}
	return hookNames[h]
}

// Hooks lists every hook in call order.
func Hooks() []Hook { return []Hook{HookAdmit, HookReplication, HookAllocate, HookRetryPriority} }

// Sentinel errors. Every error a hook method returns wraps exactly one of
// them, so callers can branch with errors.Is; the message names the hook,
// what went wrong and, when known, the policy's file:line.
var (
	// ErrTimeout: the call ran out of its time budget (Options.Timeout).
	ErrTimeout = errors.New("policy hook timed out")
	// ErrBadReturn: the hook returned values of the wrong type or range.
	ErrBadReturn = errors.New("policy hook returned a malformed value")
	// ErrRuntime: the hook raised a Lua error, hit a sandbox limit, or a
	// Lua state for it could not be prepared.
	ErrRuntime = errors.New("policy hook failed")
)

// HookError is the error type of every failed hook call.
type HookError struct {
	Hook Hook
	// Kind is ErrTimeout, ErrBadReturn or ErrRuntime.
	Kind error
	// Msg is the complete human-readable message, starting with the hook
	// name and ending with the file:line when known.
	Msg string
	// Cause is the context error when the caller's own context ended the
	// call (context.Canceled or context.DeadlineExceeded), else nil.
	Cause error
}

func (e *HookError) Error() string { return e.Msg }

// Unwrap exposes the sentinel kind and, when set, the context error.
func (e *HookError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// Default limits. They are sized for policies that look at one pin and a
// few hundred candidates; docs/policies.md explains each bound.
const (
	DefaultTimeout          = 50 * time.Millisecond
	DefaultInitTimeout      = time.Second
	DefaultMemoryLimit      = 16 << 20
	DefaultMaxCallsPerState = 10000
	// MaxRetryDelay caps the delay retry_priority may ask for; longer
	// answers are clamped to it.
	MaxRetryDelay = 24 * time.Hour
)

// Lua state sizes. The value stack (registry) may grow from registrySize to
// registryMaxSize slots of 16 bytes (256 KiB), the call stack holds at most
// callStackSize frames: together they bound recursion and unpack().
const (
	registrySize    = 1024
	registryMaxSize = 16 * 1024
	registryGrow    = 1024
	callStackSize   = 200
)

// Options tune a policy's limits. The zero value gives the defaults.
type Options struct {
	// Timeout is the wall-clock budget of one hook call (default 50ms).
	// The Lua VM checks it between instructions, so a loop that never ends
	// stops at the budget; see docs/policies.md for what it cannot stop.
	Timeout time.Duration
	// InitTimeout bounds the run of the file's top level when a new Lua
	// state is prepared (default 1s).
	InitTimeout time.Duration
	// MemoryLimit is the number of bytes of strings one call (or one run of
	// the top level) may create through concatenation and the string and
	// table libraries (default 16 MiB). Gopher-lua has no allocator hook:
	// tables and closures are bounded by the time budget instead.
	MemoryLimit int64
	// PoolSize is the number of idle Lua states kept for reuse (default
	// GOMAXPROCS*2). More states are created under load and closed when the
	// pool is full.
	PoolSize int
	// MaxCallsPerState retires a state after that many calls (default
	// 10000), which bounds what a policy can accumulate in globals.
	MaxCallsPerState int
	// Logger receives print() output (debug level) and, through Holder,
	// hook failures. Nil means logging.For("policy"), which carries the
	// "component":"policy" field.
	Logger *zerolog.Logger
	// Registerer, when set, receives the failure and reload counters of a
	// Holder. Nothing is ever registered globally.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.InitTimeout <= 0 {
		o.InitTimeout = DefaultInitTimeout
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	if o.PoolSize <= 0 {
		o.PoolSize = runtime.GOMAXPROCS(0) * 2
	}
	if o.MaxCallsPerState <= 0 {
		o.MaxCallsPerState = DefaultMaxCallsPerState
	}
	if o.Logger == nil {
		l := logging.For("policy")
		o.Logger = &l
	}
	return o
}

// Policy is one loaded policy file. It is immutable after Load except for
// its pool of Lua states, and every method is safe for concurrent use.
//
// A nil *Policy is valid and means "no policy configured": every hook is
// absent and the hook methods return the built-in answers.
type Policy struct {
	path    string
	name    string // chunk name used in messages: the file's base name
	hash    string
	proto   *lua.FunctionProto
	modules map[string]*module // local modules, by require name
	has     [numHooks]bool
	defined [numHooks]string // file:line where each hook is defined
	opts    Options
	log     zerolog.Logger
	pool    chan *state
}

// Load reads, checks and compiles the policy at path, runs its top level
// once in the sandbox to validate it, and returns it ready for calls. The
// error names file:line for syntax errors, sandbox violations (static and
// at load) and errors raised by the top level.
func Load(path string, opts Options) (*Policy, error) {
	opts = opts.withDefaults()
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	sum := sha256.Sum256(src)
	p := &Policy{
		path: path,
		name: filepath.Base(path),
		hash: hex.EncodeToString(sum[:]),
		opts: opts,
		log:  *opts.Logger,
		pool: make(chan *state, opts.PoolSize),
	}
	c, err := compileFile(p.name, filepath.Dir(path), src)
	if err != nil {
		return nil, err
	}
	p.proto, p.modules = c.proto, c.modules
	st, err := p.newState()
	if err != nil {
		return nil, err
	}
	for h := range numHooks {
		if fn := st.hooks[h]; fn != nil {
			p.has[h] = true
			p.defined[h] = fmt.Sprintf("%s:%d", fn.Proto.SourceName, fn.Proto.LineDefined)
		}
	}
	p.put(st)
	return p, nil
}

// Has reports whether the policy defines hook h.
func (p *Policy) Has(h Hook) bool {
	return p != nil && h >= 0 && h < numHooks && p.has[h]
}

// Hash is the hex sha256 of the policy file's bytes as loaded ("" for a nil
// policy). Modules the policy requires from its folder are not included.
func (p *Policy) Hash() string {
	if p == nil {
		return ""
	}
	return p.hash
}

// Path is the file the policy was loaded from ("" for a nil policy).
func (p *Policy) Path() string {
	if p == nil {
		return ""
	}
	return p.path
}

// HookNames lists the names of the hooks the policy defines, in call order.
func (p *Policy) HookNames() []string {
	var out []string
	for _, h := range Hooks() {
		if p.Has(h) {
			out = append(out, h.String())
		}
	}
	return out
}
