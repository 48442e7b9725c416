package policy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// state is one sandboxed Lua state with the policy's chunk already run. It
// serves one call at a time: the pool hands it to exactly one goroutine.
type state struct {
	L     *lua.LState
	p     *Policy
	hooks [numHooks]*lua.LFunction
	calls int

	// budget is the number of string bytes the current call may still
	// create; see charge.
	budget int64
	// loaded caches required modules; loadingMark flags a module whose top
	// level is running, to report circular requires.
	loaded map[string]lua.LValue
	// output, when not nil, collects print() lines (dry runs); otherwise
	// print() goes to the debug log.
	output *[]string
	hook   string // running hook, for print() logs
	// ids are the rendered ids of the current allocate call's candidates;
	// slots keep candidate tables for reuse (see candidatesTable).
	ids         []string
	slots       []candidateSlot
	candidateMT *lua.LTable
	index       map[string]int
	seenAt      []int
	// refused records the first forbidden name the running code touched,
	// so Load and Check can report it as a sandbox violation.
	refused *Violation
}

var loadingMark = lua.LString("\x00loading")

// newSandbox prepares a sandboxed state for p, with nothing run in it yet.
func (p *Policy) newSandbox() (*state, error) {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:     true,
		CallStackSize:    callStackSize,
		RegistrySize:     registrySize,
		RegistryMaxSize:  registryMaxSize,
		RegistryGrowStep: registryGrow,
	})
	st := &state{L: L, p: p, loaded: map[string]lua.LValue{}}
	if err := st.sandbox(); err != nil {
		L.Close()
		return nil, fmt.Errorf("%w: preparing the Lua sandbox: %v", ErrRuntime, err)
	}
	return st, nil
}

// newState prepares a sandboxed state and runs the policy's top level in it.
func (p *Policy) newState() (*state, error) {
	st, err := p.newSandbox()
	if err != nil {
		return nil, err
	}
	L := st.L

	ctx, cancel := context.WithTimeout(context.Background(), p.opts.InitTimeout)
	defer cancel()
	L.SetContext(ctx)
	st.budget = p.opts.MemoryLimit
	L.Push(L.NewFunctionFromProto(p.proto))
	err = L.PCall(0, 0, nil)
	L.RemoveContext()
	if err != nil {
		L.Close()
		if st.refused != nil {
			return nil, &SandboxError{Violations: []Violation{*st.refused}}
		}
		if ctx.Err() != nil {
			return nil, &LoadError{File: p.name, Msg: fmt.Sprintf("%s: top level did not finish within %v%s",
				p.name, p.opts.InitTimeout, atWhere(luaMessage(err)))}
		}
		return nil, &LoadError{File: p.name, Msg: luaMessage(err)}
	}
	if st.refused != nil {
		// The top level caught the refusal with pcall; touching a
		// forbidden name still fails the load.
		L.Close()
		return nil, &SandboxError{Violations: []Violation{*st.refused}}
	}
	for h := range numHooks {
		switch v := L.GetGlobal(hookNames[h]).(type) {
		case *lua.LNilType:
		case *lua.LFunction:
			st.hooks[h] = v
		default:
			L.Close()
			return nil, &LoadError{File: p.name, Msg: fmt.Sprintf("%s: global %s is a %s, want a function",
				p.name, hookNames[h], v.Type())}
		}
	}
	L.SetTop(0)
	return st, nil
}

// LoadError is an error raised while running the policy's top level.
type LoadError struct {
	File string
	Msg  string
}

func (e *LoadError) Error() string { return e.Msg }

func (st *state) close() { st.L.Close() }

// sandbox opens the allowed libraries and replaces or removes the rest.
func (st *state) sandbox() error {
	L := st.L
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		if err := L.PCall(1, 0, nil); err != nil {
			return err
		}
	}
	G := L.G.Global
	for name := range forbiddenGlobals {
		G.RawSetString(name, lua.LNil)
	}
	G.RawSetString("require", L.NewFunction(st.require))
	G.RawSetString("print", L.NewFunction(st.print))
	G.RawSetString(concatGlobal, L.NewFunction(st.concat))
	G.RawSetString(storeGlobal, L.NewFunction(st.store))
	G.RawSetString(fillGlobal, L.NewFunction(st.fill))
	rawset, ok := G.RawGetString("rawset").(*lua.LFunction)
	if !ok || !rawset.IsG {
		return errors.New("rawset missing")
	}
	G.RawSetString("rawset", L.NewFunction(st.guardedStore(rawset.GFunction, 2)))

	str, ok := G.RawGetString("string").(*lua.LTable)
	if !ok {
		return errors.New("string library missing")
	}
	str.RawSetString("dump", lua.LNil)
	for name, fn := range map[string]lua.LGFunction{
		"find":   strFind,
		"match":  strMatch,
		"gmatch": strGmatch,
		"gsub":   st.gsub,
	} {
		str.RawSetString(name, L.NewFunction(fn))
	}
	wrap := func(t *lua.LTable, name string, w func(orig lua.LGFunction) lua.LGFunction) error {
		orig, ok := t.RawGetString(name).(*lua.LFunction)
		if !ok || !orig.IsG {
			return fmt.Errorf("library function %s missing", name)
		}
		t.RawSetString(name, L.NewFunction(w(orig.GFunction)))
		return nil
	}
	for name, w := range map[string]func(lua.LGFunction) lua.LGFunction{
		"rep":     st.rep,
		"format":  st.format,
		"upper":   st.charged,
		"lower":   st.charged,
		"reverse": st.charged,
		"char":    st.charged,
	} {
		if err := wrap(str, name, w); err != nil {
			return err
		}
	}
	tbl, ok := G.RawGetString("table").(*lua.LTable)
	if !ok {
		return errors.New("table library missing")
	}
	tbl.RawSetString("concat", L.NewFunction(st.tableConcat))
	if err := wrap(G, "tonumber", exponentNumbers); err != nil {
		return err
	}
	if err := wrap(tbl, "insert", func(orig lua.LGFunction) lua.LGFunction {
		return func(L *lua.LState) int {
			if L.GetTop() < 3 { // table.insert(t, v) appends
				return orig(L)
			}
			return st.guardedStore(orig, 2)(L)
		}
	}); err != nil {
		return err
	}

	// Reading a forbidden global raises a clear error instead of yielding
	// nil, which would only fail later as "attempt to index a nil value".
	// The metatable is protected so the policy cannot remove the guard;
	// rawget still returns nil, which gives nothing away.
	mt := L.CreateTable(0, 2)
	mt.RawSetString("__index", L.NewFunction(st.globalGuard))
	mt.RawSetString("__metatable", lua.LString("the global table is protected"))
	G.Metatable = mt

	// Protected so that a policy cannot disarm the change detection of
	// reused candidate tables through getmetatable(c).__newindex.
	st.candidateMT = L.CreateTable(0, 2)
	st.candidateMT.RawSetString("__newindex", L.NewFunction(st.candidateNewIndex))
	st.candidateMT.RawSetString("__metatable", lua.LString("engine-owned table"))
	return nil
}

func (st *state) globalGuard(L *lua.LState) int {
	if k, ok := L.Get(2).(lua.LString); ok {
		if _, bad := forbiddenGlobals[string(k)]; bad {
			st.refuse(L, string(k), fmt.Sprintf("%s is not available in the policy sandbox", k))
		}
	}
	L.Push(lua.LNil)
	return 1
}

// refuse records a sandbox violation at the calling Lua line and raises it.
func (st *state) refuse(L *lua.LState, what, msg string) {
	where := L.Where(1)
	file, line := splitWhere(where)
	if st.refused == nil {
		st.refused = &Violation{File: file, Line: line, What: what, Message: where + " " + msg}
	}
	L.RaiseError("%s", msg)
}

// splitWhere parses gopher-lua's "chunk:line:" position prefix.
func splitWhere(where string) (string, int) {
	where = strings.TrimSuffix(where, ":")
	i := strings.LastIndexByte(where, ':')
	if i < 0 {
		return where, 0
	}
	line, err := strconv.Atoi(where[i+1:])
	if err != nil {
		return where, 0
	}
	return where[:i], line
}

func (st *state) require(L *lua.LState) int {
	name := L.CheckString(1)
	if v, ok := st.loaded[name]; ok {
		if v == loadingMark {
			L.RaiseError("circular require of module %q", name)
		}
		L.Push(v)
		return 1
	}
	if openLibs[name] {
		L.Push(L.GetGlobal(name))
		return 1
	}
	if forbiddenModules[name] {
		st.refuse(L, fmt.Sprintf("require(%q)", name),
			fmt.Sprintf("require(%q) is refused: %s is not available in the policy sandbox", name, forbiddenGlobals[name]))
	}
	if !moduleName.MatchString(name) {
		st.refuse(L, fmt.Sprintf("require(%q)", name),
			fmt.Sprintf("require(%q) is refused: a module name is made of letters, digits, _ and -, separated by dots (no paths)", name))
	}
	m := st.p.modules[name]
	if m == nil {
		m = embeddedModules()[name]
	}
	if m == nil {
		L.RaiseError("module %q not found: modules come from the embedded lua/ set or from the policy's folder, "+
			"and a folder module is only loaded with the policy when required by a literal name", name)
	}
	st.loaded[name] = loadingMark
	defer func() {
		// A raising module must not stay marked as loading: pcall(require)
		// may catch the error and the state lives on.
		if st.loaded[name] == loadingMark {
			delete(st.loaded, name)
		}
	}()
	L.Push(L.NewFunctionFromProto(m.proto))
	L.Push(lua.LString(name))
	L.Call(1, 1)
	v := L.Get(-1)
	L.Pop(1)
	if v == lua.LNil {
		v = lua.LTrue
	}
	st.loaded[name] = v
	L.Push(v)
	return 1
}

func (st *state) print(L *lua.LState) int {
	n := L.GetTop()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte('\t')
		}
		b.WriteString(L.ToStringMeta(L.Get(i)).String())
	}
	st.charge(L, int64(b.Len()))
	line := b.String()
	if st.output != nil {
		*st.output = append(*st.output, line)
		return 0
	}
	file, lineNo := splitWhere(L.Where(1))
	st.p.log.Debug().Str("hook", st.hook).Str("file", file).Int("line", lineNo).Str("policy", st.p.path).Msg(line)
	return 0
}

// charge accounts n bytes of new string data against the call's budget.
func (st *state) charge(L *lua.LState, n int64) {
	st.budget -= n
	if st.budget < 0 {
		L.RaiseError("string memory limit exceeded: one call may create at most %d bytes of strings", st.p.opts.MemoryLimit)
	}
}

// precharge refuses an operation whose result would exceed the budget
// before the result is allocated.
func (st *state) precharge(L *lua.LState, what string, n int64) {
	if n > st.budget || n < 0 {
		L.RaiseError("%s: result of %d bytes would exceed the string memory limit (%d bytes per call, %d left)",
			what, n, st.p.opts.MemoryLimit, max(st.budget, 0))
	}
}

// exponent is a decimal number with an exponent, as Lua 5.1 reads one.
var exponent = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+$`)

// exponentNumbers wraps tonumber, which in gopher-lua (v1.1.2) gives nil
// for "1e2" while the same string converts in arithmetic: a policy
// reading "1e3" from metadata would refuse it as not a number.
func exponentNumbers(orig lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		s, ok := L.Get(1).(lua.LString)
		if !ok || L.GetTop() > 1 && L.Get(2) != lua.LNil && L.Get(2) != lua.LNumber(10) {
			return orig(L)
		}
		t := strings.TrimSpace(string(s))
		if !exponent.MatchString(t) {
			return orig(L)
		}
		// Out of range gives ±inf or 0, as strtod does for Lua.
		f, err := strconv.ParseFloat(t, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return orig(L)
		}
		L.Push(lua.LNumber(f))
		return 1
	}
}

// slotBytes is the size of one slot of a table's array: a Go interface.
const slotBytes = 16

// store implements `t[k] = v` after the compiler's rewrite of a store
// whose key is not a constant (see padFree): the key is checked, then the
// store goes through the VM's rules, metamethods included.
func (st *state) store(L *lua.LState) int {
	obj, k := L.Get(1), L.Get(2)
	if t, ok := obj.(*lua.LTable); ok {
		st.checkKey(L, t, k)
	}
	L.SetTable(obj, k, L.Get(3))
	return 0
}

// fill stores the fields [k] = v of a table constructor whose keys are
// not constants, given as pairs after the table the other fields built.
func (st *state) fill(L *lua.LState) int {
	t := L.CheckTable(1)
	for i := 2; i <= L.GetTop(); i += 2 {
		k := L.Get(i)
		if k == lua.LNil {
			L.RaiseError("table index is nil")
		}
		st.checkKey(L, t, k)
		t.RawSet(k, L.Get(i+1))
	}
	L.Push(t)
	return 1
}

// guardedStore wraps a library function that stores into the table of
// argument 1 at the key of argument arg (rawset, table.insert).
func (st *state) guardedStore(orig lua.LGFunction, arg int) lua.LGFunction {
	return func(L *lua.LState) int {
		st.checkKey(L, L.CheckTable(1), L.Get(arg))
		return orig(L)
	}
}

// checkKey charges the nils gopher-lua would append to t's array to store
// integer key k past its end (see padFree) against the call's memory
// budget, and refuses the store when they do not fit. A table whose
// __newindex is a table passes the store on: that table is checked too.
func (st *state) checkKey(L *lua.LState, t *lua.LTable, k lua.LValue) {
	n, ok := k.(lua.LNumber)
	if !ok {
		return
	}
	f := float64(n)
	if f != math.Trunc(f) || f <= padFree || f >= float64(lua.MaxArrayIndex) {
		return
	}
	i := int(f)
	for range 100 { // a chain of __newindex tables, bounded
		if t.RawGetInt(i-1) != lua.LNil || t.RawGetInt(i) != lua.LNil {
			return // in the array already, or right after its end
		}
		if gap := int64(i - 1 - t.MaxN()); gap > padFree {
			bytes := gap * slotBytes
			if bytes > st.budget {
				L.RaiseError("table index %d lies %d slots past the end of the table's array: gopher-lua would fill them with nil, %d bytes, "+
					"more than the %d left of the %d bytes one call may use; use a string key, or fill the table in order",
					i, gap, bytes, max(st.budget, 0), st.p.opts.MemoryLimit)
			}
			st.budget -= bytes
		}
		next, ok := L.GetMetaField(t, "__newindex").(*lua.LTable)
		if !ok {
			return
		}
		t = next
	}
}

// concat implements `..` after the compiler's rewrite: a b c ... are the
// operands of one chain, concatenated right to left like the VM does so
// that __concat metamethods see the same operands.
func (st *state) concat(L *lua.LState) int {
	n := L.GetTop()
	var total int64
	simple := true
	for i := 1; i <= n; i++ {
		switch v := L.Get(i).(type) {
		case lua.LString:
			total += int64(len(v))
		case lua.LNumber:
			total += 24 // the longest %.14g rendering
		default:
			simple = false
		}
	}
	if simple {
		st.precharge(L, "concatenation", total)
		var b strings.Builder
		b.Grow(int(total))
		for i := 1; i <= n; i++ {
			b.WriteString(lua.LVAsString(L.Get(i)))
		}
		st.charge(L, int64(b.Len()))
		L.Push(lua.LString(b.String()))
		return 1
	}
	acc := L.Get(n)
	for i := n - 1; i >= 1; i-- {
		acc = st.concat2(L, L.Get(i), acc)
	}
	L.Push(acc)
	return 1
}

func (st *state) concat2(L *lua.LState, lhs, rhs lua.LValue) lua.LValue {
	if lua.LVCanConvToString(lhs) && lua.LVCanConvToString(rhs) {
		a, b := lua.LVAsString(lhs), lua.LVAsString(rhs)
		st.precharge(L, "concatenation", int64(len(a)+len(b)))
		st.charge(L, int64(len(a)+len(b)))
		return lua.LString(a + b)
	}
	mm := L.GetMetaField(lhs, "__concat")
	if mm == lua.LNil {
		mm = L.GetMetaField(rhs, "__concat")
	}
	if mm == lua.LNil {
		bad := lhs
		if lua.LVCanConvToString(lhs) {
			bad = rhs
		}
		L.RaiseError("attempt to concatenate a %s value", bad.Type())
	}
	L.Push(mm)
	L.Push(lhs)
	L.Push(rhs)
	L.Call(2, 1)
	v := L.Get(-1)
	L.Pop(1)
	return v
}

func (st *state) rep(orig lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		s := L.CheckString(1)
		n := L.CheckInt(2)
		if n > 0 && len(s) > 0 {
			size := int64(math.MaxInt64)
			if int64(n) <= math.MaxInt64/int64(len(s)) {
				size = int64(n) * int64(len(s))
			}
			st.precharge(L, "string.rep", size)
			st.charge(L, size)
		}
		return orig(L)
	}
}

// format refuses widths and precisions above 99, as C Lua does, so that
// one directive cannot ask Go's fmt for a megabyte of padding.
func (st *state) format(orig lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		f := L.CheckString(1)
		for i := 0; i < len(f); i++ {
			if f[i] != '%' {
				continue
			}
			i++
			for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
				i++
			}
			digits := 0
			for i < len(f) && f[i] >= '0' && f[i] <= '9' {
				digits++
				i++
			}
			if i < len(f) && f[i] == '.' {
				i++
				prec := 0
				for i < len(f) && f[i] >= '0' && f[i] <= '9' {
					prec++
					i++
				}
				digits = max(digits, prec)
			}
			if digits > 2 {
				L.RaiseError("invalid format (width or precision too long)")
			}
		}
		n := orig(L)
		st.charge(L, int64(len(lua.LVAsString(L.Get(-1)))))
		return n
	}
}

// charged wraps a library function whose result is no longer than its
// input: it only accounts for the bytes created.
func (st *state) charged(orig lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		n := orig(L)
		st.charge(L, int64(len(lua.LVAsString(L.Get(-1)))))
		return n
	}
}

// tableConcat is table.concat with the size checked before building.
func (st *state) tableConcat(L *lua.LState) int {
	tbl := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, tbl.Len())
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	var total int64
	for k := i; k <= j; k++ {
		v := tbl.RawGetInt(k)
		if !lua.LVCanConvToString(v) {
			L.RaiseError("invalid value (%s) at index %d in table for concat", v.Type(), k)
		}
		if s, ok := v.(lua.LString); ok {
			total += int64(len(s))
		} else {
			total += 24
		}
		if k < j {
			total += int64(len(sep))
		}
		if total > st.budget {
			st.precharge(L, "table.concat", total)
		}
	}
	var b strings.Builder
	b.Grow(int(total))
	for k := i; k <= j; k++ {
		b.WriteString(lua.LVAsString(tbl.RawGetInt(k)))
		if k < j {
			b.WriteString(sep)
		}
	}
	st.charge(L, int64(b.Len()))
	L.Push(lua.LString(b.String()))
	return 1
}

// luaMessage extracts the Lua error value of a PCall error without the
// traceback gopher-lua appends.
func luaMessage(err error) string {
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object != nil {
		return strings.TrimSpace(ae.Object.String())
	}
	return strings.TrimSpace(err.Error())
}

// atWhere turns "file:line: message" into " at file:line", or "".
func atWhere(msg string) string {
	if loc := location(msg); loc != "" {
		return " at " + loc
	}
	return ""
}

// location returns the leading "file:line" of a Lua error message.
func location(msg string) string {
	i := strings.Index(msg, ": ")
	if i < 0 {
		i = len(msg)
	}
	file, line := splitWhere(msg[:i])
	if line == 0 || file == "" || strings.ContainsAny(file, " \t") {
		return ""
	}
	return fmt.Sprintf("%s:%d", file, line)
}
