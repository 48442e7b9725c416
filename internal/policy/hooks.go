package policy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	lua "github.com/yuin/gopher-lua"

	"ipfs-cluster/internal/api"
)

// Candidate is one peer offered to the allocate hook, in the built-in
// order. The JSON names are the Lua field names, which is what
// `policy test --candidates` reads.
type Candidate struct {
	ID        peer.ID           `json:"id"`
	Peername  string            `json:"peername"`
	Tags      map[string]string `json:"tags"`
	FreeSpace int64             `json:"freespace"`
	PinQueue  int64             `json:"pinqueue"`
	NumPin    int64             `json:"numpin"`
	// Current: the peer already holds an allocation of this pin.
	Current bool `json:"current"`
	// Priority: the peer is one of the configured priority peers.
	Priority bool `json:"priority"`
}

// RetryClass is retry_priority's answer.
type RetryClass int

// Retry classes. RetryDefault (the zero value) means the hook is absent or
// returned nil: the caller applies its built-in rule.
const (
	RetryDefault RetryClass = iota
	RetryPriority
	RetryNormal
	RetryFailed
)

var retryNames = [...]string{"default", "priority", "normal", "failed"}

// String returns the Lua spelling of the class ("default" for the zero
// value).
func (c RetryClass) String() string {
	if c < 0 || int(c) >= len(retryNames) {
		return fmt.Sprintf("retry(%d)", int(c))
	}
	return retryNames[c]
}

// Retry is what retry_priority decided for a failed pin. Delay is zero
// unless the hook returned one; it is at most MaxRetryDelay and is
// meaningless for RetryFailed.
type Retry struct {
	Class RetryClass
	Delay time.Duration
}

// maxReason bounds the refusal reason admit may return, since it goes into
// an API reply.
const maxReason = 1024

// Admit calls admit(pin). Without the hook (or without a policy) the pin is
// admitted. On error ok is false: admission fails closed, and the error
// (which names the policy's file:line) is meant to be shown to the client.
// A refusal without a reason gets "refused by policy".
func (p *Policy) Admit(ctx context.Context, pin api.Pin) (ok bool, reason string, err error) {
	if !p.Has(HookAdmit) {
		return true, "", nil
	}
	st, n, err := p.call(ctx, HookAdmit, func(st *state) int {
		st.L.Push(st.pinTable(&pin))
		return 1
	})
	if err != nil {
		return false, "", err
	}
	defer p.put(st)
	L := st.L
	switch v := L.Get(1).(type) {
	case lua.LBool:
		if v {
			return true, "", nil
		}
		if n < 2 {
			return false, "refused by policy", nil
		}
		switch r := L.Get(2).(type) {
		case lua.LString:
			reason = strings.TrimSpace(string(r))
			if reason == "" {
				reason = "refused by policy"
			}
			reason = truncate(reason, maxReason)
			return false, reason, nil
		case *lua.LNilType:
			return false, "refused by policy", nil
		default:
			return false, "", st.badReturn(HookAdmit, "admit returned false with %s as reason, want a string", describe(r))
		}
	default:
		if n == 0 {
			return false, "", st.badReturn(HookAdmit, "admit returned nothing, want true, or false and a reason")
		}
		return false, "", st.badReturn(HookAdmit, "admit returned %s, want boolean", describe(v))
	}
}

// Replication calls replication(pin) and returns the factors it chose.
//
// (0, 0, nil) means "no answer": the hook is absent or returned nil (or
// 0, 0), and the caller uses its configured default. (-1, -1) means pin
// everywhere. Otherwise 1 <= min <= max. On error the caller falls back to
// its default as well.
func (p *Policy) Replication(ctx context.Context, pin api.Pin) (min, max int, err error) {
	if !p.Has(HookReplication) {
		return 0, 0, nil
	}
	st, n, err := p.call(ctx, HookReplication, func(st *state) int {
		st.L.Push(st.pinTable(&pin))
		return 1
	})
	if err != nil {
		return 0, 0, err
	}
	defer p.put(st)
	L := st.L
	first := L.Get(1)
	if n == 0 || first == lua.LNil {
		return 0, 0, nil
	}
	lo, ok := integer(first)
	if !ok {
		return 0, 0, st.badReturn(HookReplication, "replication returned %s as min, want an integer", describe(first))
	}
	second := L.Get(2)
	hi, ok := integer(second)
	if n < 2 || !ok {
		return 0, 0, st.badReturn(HookReplication, "replication returned %s as max, want an integer (the hook returns min, max)", describe(second))
	}
	switch {
	case lo == 0 && hi == 0, lo == -1 && hi == -1:
	case lo < 1 || hi < lo:
		return 0, 0, st.badReturn(HookReplication,
			"replication returned min %d, max %d; want 1 <= min <= max, -1, -1 for everywhere, or nil for the default", lo, hi)
	}
	return lo, hi, nil
}

// Allocate calls allocate(pin, candidates) with the candidates in the
// built-in order and returns the peers to use, in order.
//
// A nil slice with a nil error means "no answer" (hook absent or returned
// nil): keep the built-in order. A non-nil slice is the policy's choice: a
// subset of the candidates, possibly empty, without duplicates. The caller
// takes up to replication_max of them. The hook may return peer id strings
// or the candidate tables themselves.
func (p *Policy) Allocate(ctx context.Context, pin api.Pin, cands []Candidate) ([]peer.ID, error) {
	if !p.Has(HookAllocate) {
		return nil, nil
	}
	st, n, err := p.call(ctx, HookAllocate, func(st *state) int {
		st.L.Push(st.pinTable(&pin))
		st.L.Push(st.candidatesTable(cands))
		return 2
	})
	if err != nil {
		return nil, err
	}
	defer p.put(st)
	first := st.L.Get(1)
	if n == 0 || first == lua.LNil {
		return nil, nil
	}
	tbl, ok := first.(*lua.LTable)
	if !ok {
		return nil, st.badReturn(HookAllocate, "allocate returned %s, want an array of peer ids", describe(first))
	}
	return st.allocation(tbl, cands)
}

func (st *state) allocation(tbl *lua.LTable, cands []Candidate) ([]peer.ID, error) {
	size := tbl.Len()
	var badKey lua.LValue
	tbl.ForEach(func(k, _ lua.LValue) {
		if badKey != nil {
			return
		}
		if i, ok := integer(k); !ok || i < 1 || i > size {
			badKey = k
		}
	})
	if badKey != nil {
		return nil, st.badReturn(HookAllocate, "allocate returned a table with key %s, want an array of peer ids", describe(badKey))
	}
	// Match the rendered ids the hook saw, not decoded ones: decoding
	// base58 would cost a microsecond per returned id. The lookup
	// structures belong to the state and are reused.
	if st.index == nil {
		st.index = make(map[string]int, len(cands))
	}
	clear(st.index)
	for i, s := range st.ids {
		st.index[s] = i
	}
	index := st.index
	seenAt := st.seenAt[:0] // candidate index -> result position, 0 = unseen
	for range cands {
		seenAt = append(seenAt, 0)
	}
	st.seenAt = seenAt
	out := make([]peer.ID, 0, size)
	var unknown, dups []string
	for i := 1; i <= size; i++ {
		v := tbl.RawGetInt(i)
		if t, ok := v.(*lua.LTable); ok {
			v = t.RawGetString("id")
		}
		s, ok := v.(lua.LString)
		if !ok {
			return nil, st.badReturn(HookAllocate, "allocate returned %s at index %d, want a peer id string or a candidate table",
				describe(tbl.RawGetInt(i)), i)
		}
		ci, known := index[string(s)]
		if !known {
			unknown = append(unknown, fmt.Sprintf("%q (index %d)", truncate(string(s), 64), i))
			continue
		}
		if first := seenAt[ci]; first != 0 {
			dups = append(dups, fmt.Sprintf("%q (indexes %d and %d)", string(s), first, i))
			continue
		}
		seenAt[ci] = i
		out = append(out, cands[ci].ID)
	}
	var problems []string
	if len(unknown) > 0 {
		problems = append(problems, "peers that are not candidates: "+listSome(unknown))
	}
	if len(dups) > 0 {
		problems = append(problems, "duplicate peers: "+listSome(dups))
	}
	if len(problems) > 0 {
		return nil, st.badReturn(HookAllocate, "allocate returned %s", strings.Join(problems, "; "))
	}
	return out, nil
}

func listSome(items []string) string {
	const show = 5
	if len(items) <= show {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:show], ", ") + fmt.Sprintf(" and %d more", len(items)-show)
}

// RetryPriority calls retry_priority(pin, attempts, err) for a pin that
// failed attempts times, the last time with lastErr. Without the hook, or
// when it returns nil, the answer is Retry{Class: RetryDefault}. Delays
// above MaxRetryDelay are clamped to it.
func (p *Policy) RetryPriority(ctx context.Context, pin api.Pin, attempts int, lastErr string) (Retry, error) {
	if !p.Has(HookRetryPriority) {
		return Retry{}, nil
	}
	st, n, err := p.call(ctx, HookRetryPriority, func(st *state) int {
		st.L.Push(st.pinTable(&pin))
		st.L.Push(lua.LNumber(attempts))
		st.L.Push(lua.LString(lastErr))
		return 3
	})
	if err != nil {
		return Retry{}, err
	}
	defer p.put(st)
	L := st.L
	first := L.Get(1)
	if n == 0 || first == lua.LNil {
		return Retry{}, nil
	}
	var r Retry
	switch first {
	case lua.LString("priority"):
		r.Class = RetryPriority
	case lua.LString("normal"):
		r.Class = RetryNormal
	case lua.LString("failed"):
		r.Class = RetryFailed
	default:
		return Retry{}, st.badReturn(HookRetryPriority, `retry_priority returned %s, want "priority", "normal" or "failed"`, describe(first))
	}
	if n < 2 {
		return r, nil
	}
	switch d := L.Get(2).(type) {
	case *lua.LNilType:
	case lua.LNumber:
		secs := float64(d)
		if math.IsNaN(secs) || secs < 0 {
			return Retry{}, st.badReturn(HookRetryPriority, "retry_priority returned %s as delay, want seconds >= 0", describe(d))
		}
		if secs >= MaxRetryDelay.Seconds() {
			r.Delay = MaxRetryDelay
		} else {
			r.Delay = time.Duration(secs * float64(time.Second))
		}
	default:
		return Retry{}, st.badReturn(HookRetryPriority, "retry_priority returned %s as delay, want a number of seconds", describe(d))
	}
	return r, nil
}

// call runs hook h on a pooled state. push pushes the arguments after the
// function and returns their number. On success the results are on the
// stack (1..n) and the caller must hand the state back with put after
// reading them; on error the state is already discarded.
func (p *Policy) call(ctx context.Context, h Hook, push func(*state) int) (*state, int, error) {
	st, err := p.get()
	if err != nil {
		return nil, 0, &HookError{Hook: h, Kind: ErrRuntime, Msg: fmt.Sprintf("%s: preparing a Lua state: %v", h, err)}
	}
	fn := st.hooks[h]
	if fn == nil {
		// The top level defined the hook in the first state but not in
		// this one: it depends on something that changes between runs.
		st.close()
		return nil, 0, &HookError{Hook: h, Kind: ErrRuntime,
			Msg: fmt.Sprintf("%s: the hook is not defined in every Lua state (does the top level depend on randomness?)", h)}
	}
	L := st.L
	L.SetTop(0)
	L.Push(fn)
	nargs := push(st)

	cctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	L.SetContext(cctx)
	st.budget = p.opts.MemoryLimit
	st.hook = hookNames[h]
	if out, ok := ctx.Value(outputKey{}).(*[]string); ok {
		st.output = out // a dry run collects print() output
	}
	st.calls++
	err = L.PCall(nargs, lua.MultRet, nil)
	L.RemoveContext()
	ctxErr := cctx.Err()
	cancel()
	if err != nil {
		// The state may be half-way through anything (a module load, a
		// global update): it is not reused.
		st.close()
		return nil, 0, p.callError(st, h, err, ctx.Err(), ctxErr)
	}
	return st, L.GetTop(), nil
}

func (p *Policy) callError(st *state, h Hook, err, parentErr, ctxErr error) *HookError {
	msg := luaMessage(err)
	if ctxErr != nil {
		e := &HookError{Hook: h, Kind: ErrTimeout, Cause: parentErr}
		switch {
		case errors.Is(parentErr, context.Canceled):
			e.Msg = fmt.Sprintf("%s: canceled by the caller%s", h, atWhere(msg))
		case parentErr != nil:
			e.Msg = fmt.Sprintf("%s: the caller's deadline passed%s", h, atWhere(msg))
		default:
			e.Msg = fmt.Sprintf("%s: timed out after %v%s", h, p.opts.Timeout, atWhere(msg))
		}
		return e
	}
	msg = clarify(msg)
	if st.refused != nil && !strings.Contains(msg, "policy sandbox") {
		msg = st.refused.Message
	}
	// The message reaches API replies and logs: error() may raise a
	// string of megabytes.
	return &HookError{Hook: h, Kind: ErrRuntime, Msg: fmt.Sprintf("%s: %s", h, truncate(msg, maxReason))}
}

// clarify adds a hint to gopher-lua's terse message for calling a missing
// function, the usual symptom of a typo or of a library outside the
// sandbox.
func clarify(msg string) string {
	if strings.Contains(msg, "attempt to call a non-function object") || strings.Contains(msg, "attempt to call a nil value") {
		return msg + " (calling a function that does not exist: a typo, or a library the sandbox does not provide?)"
	}
	return msg
}

func (st *state) badReturn(h Hook, format string, args ...any) *HookError {
	msg := fmt.Sprintf(format, args...)
	if def := st.p.defined[h]; def != "" {
		msg += " (" + def + ")"
	}
	return &HookError{Hook: h, Kind: ErrBadReturn, Msg: msg}
}

// describe renders a Lua value for error messages: type and, for scalars,
// the value.
func describe(v lua.LValue) string {
	switch v := v.(type) {
	case *lua.LNilType:
		return "nil"
	case lua.LString:
		return fmt.Sprintf("string %q", truncate(string(v), 64))
	case lua.LNumber:
		return "number " + v.String()
	case lua.LBool:
		return "boolean " + v.String()
	default:
		return "a " + v.Type().String()
	}
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// integer converts a Lua number holding a whole value in int32 range.
func integer(v lua.LValue) (int, bool) {
	n, ok := v.(lua.LNumber)
	if !ok {
		return 0, false
	}
	f := float64(n)
	if f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, false
	}
	return int(f), true
}

func (p *Policy) get() (*state, error) {
	select {
	case st := <-p.pool:
		return st, nil
	default:
		return p.newState()
	}
}

// put returns a state after a successful call. A call that only returned
// a malformed value left the state as clean as any successful call, so it
// is reused too.
func (p *Policy) put(st *state) {
	st.L.SetTop(0)
	st.output, st.hook = nil, ""
	if st.calls >= p.opts.MaxCallsPerState || st.refused != nil {
		st.close()
		return
	}
	select {
	case p.pool <- st:
	default:
		st.close()
	}
}

func (st *state) pinTable(pin *api.Pin) *lua.LTable { return PinTable(st.L, pin) }

// PinTable builds the Lua view of a pin that hooks receive (and batch
// scripts get from the cluster module). Metadata, user_allocations and
// origins are always tables (possibly empty) so Lua code needs no nil
// checks; expire_at is Unix seconds, absent when the pin does not expire.
func PinTable(L *lua.LState, pin *api.Pin) *lua.LTable {
	t := L.CreateTable(0, 9)
	c := ""
	if pin.Cid.Defined() {
		c = pin.Cid.String()
	}
	t.RawSetString("cid", lua.LString(c))
	t.RawSetString("name", lua.LString(pin.Name))
	t.RawSetString("mode", lua.LString(pin.Mode.String()))
	t.RawSetString("replication_min", lua.LNumber(pin.ReplicationFactorMin))
	t.RawSetString("replication_max", lua.LNumber(pin.ReplicationFactorMax))
	md := L.CreateTable(0, len(pin.Metadata))
	for k, v := range pin.Metadata {
		md.RawSetString(k, lua.LString(v))
	}
	t.RawSetString("metadata", md)
	ua := L.CreateTable(len(pin.UserAllocations), 0)
	for _, id := range pin.UserAllocations {
		ua.Append(idValue(id))
	}
	t.RawSetString("user_allocations", ua)
	origins := L.CreateTable(len(pin.Origins), 0)
	for _, o := range pin.Origins {
		if o.Multiaddr != nil {
			origins.Append(lua.LString(o.String()))
		}
	}
	t.RawSetString("origins", origins)
	if !pin.ExpireAt.IsZero() {
		t.RawSetString("expire_at", lua.LNumber(pin.ExpireAt.Unix()))
	}
	return t
}

// candidatesTable builds the candidates array; tags is always a table.
//
// Building 100 fresh candidate tables dominates the cost of an allocate
// call (gopher-lua tables with string keys cost about 20 allocations each),
// so a state keeps the tables of its previous call and refills them. A
// table the policy extended with a new key loses its metatable (see
// candidateNewIndex) and is rebuilt; fields the policy overwrote are
// simply set again. Hooks must therefore not keep candidate tables after
// they return, which docs/policies.md states.
func (st *state) candidatesTable(cands []Candidate) *lua.LTable {
	arr := st.L.CreateTable(len(cands), 0)
	st.ids = st.ids[:0]
	for i := range cands {
		arr.Append(st.candidateTable(i, &cands[i]))
	}
	return arr
}

type candidateSlot struct {
	t, tags *lua.LTable
	ntags   int // number of keys set in tags
}

func (st *state) candidateTable(i int, c *Candidate) *lua.LTable {
	if i >= len(st.slots) {
		st.slots = append(st.slots, candidateSlot{})
	}
	s := &st.slots[i]
	if s.t == nil || s.t.Metatable != st.candidateMT {
		s.t = st.L.CreateTable(0, 8)
		s.t.Metatable = st.candidateMT
		s.tags = nil
	}
	t := s.t
	id := idValue(c.ID)
	st.ids = append(st.ids, string(id.(lua.LString)))
	setValue(t, "id", id)
	setString(t, "peername", c.Peername)
	setNumber(t, "freespace", c.FreeSpace)
	setNumber(t, "pinqueue", c.PinQueue)
	setNumber(t, "numpin", c.NumPin)
	setValue(t, "current", lua.LBool(c.Current))
	setValue(t, "priority", lua.LBool(c.Priority))
	if !st.refillTags(s, c.Tags) {
		s.tags = st.L.CreateTable(0, len(c.Tags))
		s.tags.Metatable = st.candidateMT
		for k, v := range c.Tags {
			s.tags.RawSetString(k, lua.LString(v))
		}
		s.ntags = len(c.Tags)
	}
	setValue(t, "tags", s.tags)
	return t
}

// refillTags updates the slot's tags table in place when it still has
// exactly the keys of tags, and reports whether it could. Keys the policy
// added took the metatable away, keys it removed fail the lookup, and keys
// gone from tags since the last call change the count. (A key added with
// rawset goes unnoticed: hooks must not keep or extend these tables.)
func (st *state) refillTags(s *candidateSlot, tags map[string]string) bool {
	t := s.tags
	if t == nil || t.Metatable != st.candidateMT || s.ntags != len(tags) {
		return false
	}
	for k, v := range tags {
		if t.RawGetString(k) == lua.LNil {
			return false
		}
		setString(t, k, v)
	}
	return true
}

// candidateNewIndex is the __newindex of reused tables: the first new key
// marks the table as modified by dropping the metatable, then stores the
// value as a plain assignment would.
func (st *state) candidateNewIndex(L *lua.LState) int {
	t := L.CheckTable(1)
	t.Metatable = lua.LNil
	L.RawSet(t, L.CheckAny(2), L.Get(3))
	return 0
}

// setValue, setString and setNumber skip unchanged values: a lookup is
// cheaper than gopher-lua's keyed store, and boxing a new Lua value
// allocates, while candidates change little between calls.
func setValue(t *lua.LTable, key string, v lua.LValue) {
	if t.RawGetString(key) != v {
		t.RawSetString(key, v)
	}
}

// setString and setNumber skip unchanged values: boxing a new Lua value
// allocates, and candidates change little between calls.
func setString(t *lua.LTable, key, v string) {
	if old, ok := t.RawGetString(key).(lua.LString); ok && string(old) == v {
		return
	}
	t.RawSetString(key, lua.LString(v))
}

func setNumber(t *lua.LTable, key string, v int64) {
	if old, ok := t.RawGetString(key).(lua.LNumber); ok && old == lua.LNumber(v) {
		return
	}
	t.RawSetString(key, lua.LNumber(v))
}

// Peer ids are rendered in base58 for Lua, which costs about a microsecond
// each; a cluster has few peers, so the renderings are cached process-wide
// (bounded, never evicted: past the bound ids are rendered on each use).
var (
	idCache    sync.Map // peer.ID -> lua.LValue
	idCacheLen atomic.Int64
)

const idCacheMax = 1 << 14

func idValue(id peer.ID) lua.LValue {
	if v, ok := idCache.Load(id); ok {
		return v.(lua.LValue)
	}
	var v lua.LValue = lua.LString(id.String())
	if idCacheLen.Load() < idCacheMax {
		if _, loaded := idCache.LoadOrStore(id, v); !loaded {
			idCacheLen.Add(1)
		}
	}
	return v
}
