package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"

	luamods "ipfs-cluster/lua"
)

// Violation is one use of something the sandbox refuses, or a require that
// cannot be satisfied, found in a policy or in a module it requires.
type Violation struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// What is the construct, as written: "os.execute", "load",
	// `require("os")`, "string.dump".
	What string `json:"what"`
	// Message is the full explanation, prefixed with file:line.
	Message string `json:"message"`
}

func (v Violation) String() string { return v.Message }

// SandboxError is returned by Load when the policy uses what the sandbox
// refuses. It lists every violation found, static ones first.
type SandboxError struct {
	Violations []Violation
}

func (e *SandboxError) Error() string {
	msgs := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		msgs[i] = v.Message
	}
	return "policy refused by the sandbox: " + strings.Join(msgs, "; ")
}

// SyntaxError is a parse or compile error of a policy or of a module.
type SyntaxError struct {
	File string
	Line int // 0 at end of file
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s at end of file", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Names that are absent from the sandbox. A reference to one of them as a
// global is refused when the policy loads, so that a forbidden call inside a
// hook is reported before the hook first runs.
var forbiddenGlobals = map[string]string{
	"os":             "the os library",
	"io":             "the io library",
	"debug":          "the debug library",
	"package":        "the package library",
	"coroutine":      "the coroutine library",
	"channel":        "the channel library",
	"load":           "load",
	"loadstring":     "loadstring",
	"loadfile":       "loadfile",
	"dofile":         "dofile",
	"setfenv":        "setfenv",
	"getfenv":        "getfenv",
	"collectgarbage": "collectgarbage",
	"module":         "module",
	"newproxy":       "newproxy",
	"_printregs":     "_printregs",
}

// Libraries require() refuses by name.
var forbiddenModules = map[string]bool{
	"os": true, "io": true, "debug": true, "package": true, "coroutine": true, "channel": true,
}

// Libraries that are open in the sandbox; require() returns them.
var openLibs = map[string]bool{"string": true, "table": true, "math": true}

// Global names the compiler's rewrites call: `..` (see state.concat), and
// table stores whose key is not a constant (state.store, state.fill). They
// contain a NUL byte so no Lua source can name them as identifiers.
const (
	concatGlobal = "\x00concat"
	storeGlobal  = "\x00store"
	fillGlobal   = "\x00fill"
)

var moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$`)

type module struct {
	name  string // require name
	file  string // chunk name in messages
	proto *lua.FunctionProto
}

type compiled struct {
	proto   *lua.FunctionProto
	modules map[string]*module
}

// compileFile parses, checks and compiles a policy source and, recursively,
// the local modules it requires by literal name. Violations are collected
// across all files before failing so that Check can list them all.
func compileFile(name, dir string, src []byte) (*compiled, error) {
	return newLinker(dir).link(name, src)
}

func newLinker(dir string) *linker {
	return &linker{dir: dir, modules: map[string]*module{}, loading: map[string]bool{}}
}

// link compiles the main chunk and what it requires, and fails with every
// violation found.
func (l *linker) link(name string, src []byte) (*compiled, error) {
	proto, err := l.compile(name, src)
	if err != nil {
		return nil, err
	}
	if len(l.violations) > 0 {
		return nil, &SandboxError{Violations: l.violations}
	}
	return &compiled{proto: proto, modules: l.modules}, nil
}

type linker struct {
	dir        string
	modules    map[string]*module
	loading    map[string]bool
	violations []Violation
	// noFolder: the main chunk has no folder (a script embedded in the
	// binary), so only embedded and Go modules resolve.
	noFolder bool
	// goModules are the names of modules written in Go (scripts' cluster
	// module): they resolve before the folder.
	goModules map[string]bool
}

func (l *linker) compile(name string, src []byte) (*lua.FunctionProto, error) {
	chunk, err := parseChunk(name, src)
	if err != nil {
		return nil, err
	}
	c := &checker{file: name}
	c.block(chunk)
	l.violations = append(l.violations, c.violations...)
	for _, r := range c.requires {
		l.require(name, r)
	}
	return compileChunk(name, chunk)
}

// require resolves one literal require found in file.
func (l *linker) require(file string, r requireRef) {
	refuse := func(format string, args ...any) {
		l.violations = append(l.violations, Violation{
			File: file, Line: r.line, What: fmt.Sprintf("require(%q)", r.name),
			Message: fmt.Sprintf("%s:%d: require(%q) is refused: ", file, r.line, r.name) + fmt.Sprintf(format, args...),
		})
	}
	switch {
	case forbiddenModules[r.name]:
		refuse("%s is not available in the policy sandbox", forbiddenGlobals[r.name])
		return
	case openLibs[r.name], l.goModules[r.name]:
		return
	case !moduleName.MatchString(r.name):
		refuse("a module name is made of letters, digits, _ and -, separated by dots (no paths)")
		return
	}
	if _, ok := l.modules[r.name]; ok || l.loading[r.name] {
		return
	}
	rel := filepath.Join(strings.Split(r.name, ".")...) + ".lua"
	src, err := []byte(nil), fs.ErrNotExist
	if !l.noFolder {
		src, err = os.ReadFile(filepath.Join(l.dir, rel))
	}
	switch {
	case err == nil:
		l.loading[r.name] = true
		proto, err := l.compile(filepath.ToSlash(rel), src)
		delete(l.loading, r.name)
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) {
				l.violations = append(l.violations, Violation{
					File: se.File, Line: se.Line, What: fmt.Sprintf("require(%q)", r.name), Message: se.Error(),
				})
				return
			}
			refuse("%v", err)
			return
		}
		l.modules[r.name] = &module{name: r.name, file: filepath.ToSlash(rel), proto: proto}
	case errors.Is(err, fs.ErrNotExist):
		if _, ok := embeddedModules()[r.name]; !ok {
			if l.noFolder {
				refuse("no module %q among the embedded modules (%s)", r.name, strings.Join(luamods.Modules(), ", "))
				return
			}
			folder := "policy"
			if l.goModules != nil {
				folder = "script's"
			}
			refuse("no module %q in the %s folder (%s) or among the embedded modules (%s)",
				r.name, folder, rel, strings.Join(luamods.Modules(), ", "))
		}
	default:
		refuse("%v", err)
	}
}

// embeddedModules compiles the modules of the lua/ package once per
// process; they are checked like any policy code.
var embeddedModules = sync.OnceValue(func() map[string]*module {
	out := map[string]*module{}
	for _, name := range luamods.Modules() {
		src, _ := luamods.Source(name)
		file := "lua/" + name + ".lua"
		chunk, err := parseChunk(file, src)
		if err != nil {
			panic(fmt.Sprintf("embedded Lua module: %v", err))
		}
		c := &checker{file: file}
		c.block(chunk)
		if len(c.violations) > 0 {
			panic(fmt.Sprintf("embedded Lua module: %s", c.violations[0].Message))
		}
		proto, err := compileChunk(file, chunk)
		if err != nil {
			panic(fmt.Sprintf("embedded Lua module: %v", err))
		}
		out[name] = &module{name: name, file: file, proto: proto}
	}
	return out
})

func parseChunk(name string, src []byte) (chunk []ast.Stmt, err error) {
	// The parser reports lexer errors by panicking with values that are not
	// always a *parse.Error; keep a panic from escaping Load.
	defer func() {
		if r := recover(); r != nil {
			err = &SyntaxError{File: name, Msg: fmt.Sprint(r)}
		}
	}()
	chunk, err = parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			msg := strings.TrimSpace(pe.Message)
			if pe.Pos.Line == parse.EOF {
				return nil, &SyntaxError{File: name, Msg: msg}
			}
			if pe.Token != "" {
				msg += fmt.Sprintf(" near '%s'", pe.Token)
			}
			return nil, &SyntaxError{File: name, Line: pe.Pos.Line, Msg: msg}
		}
		return nil, &SyntaxError{File: name, Msg: strings.TrimSpace(err.Error())}
	}
	return chunk, nil
}

func compileChunk(name string, chunk []ast.Stmt) (*lua.FunctionProto, error) {
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) {
			return nil, &SyntaxError{File: name, Line: ce.Line, Msg: ce.Message}
		}
		return nil, &SyntaxError{File: name, Msg: err.Error()}
	}
	return proto, nil
}

type requireRef struct {
	name string
	line int
}

// checker walks a chunk once, in scope order, to find references to
// forbidden globals and literal requires, and rewrites every `..` into a
// call of the concatenation guard so string growth is metered.
type checker struct {
	file       string
	scopes     []map[string]bool
	violations []Violation
	requires   []requireRef
}

func (c *checker) push(names ...string) {
	s := make(map[string]bool, len(names))
	for _, n := range names {
		s[n] = true
	}
	c.scopes = append(c.scopes, s)
}

func (c *checker) pop() { c.scopes = c.scopes[:len(c.scopes)-1] }

func (c *checker) declare(names ...string) {
	top := c.scopes[len(c.scopes)-1]
	for _, n := range names {
		top[n] = true
	}
}

func (c *checker) isGlobal(name string) bool {
	for i := len(c.scopes) - 1; i >= 0; i-- {
		if c.scopes[i][name] {
			return false
		}
	}
	return true
}

func (c *checker) refuse(line int, what, why string) {
	c.violations = append(c.violations, Violation{
		File: c.file, Line: line, What: what,
		Message: fmt.Sprintf("%s:%d: %s is not available in the policy sandbox", c.file, line, what) + why,
	})
}

// forbidden reports whether e names a forbidden global (not shadowed by a
// local) and returns its name.
func (c *checker) forbidden(e ast.Expr) (string, bool) {
	id, ok := e.(*ast.IdentExpr)
	if !ok || !c.isGlobal(id.Value) {
		return "", false
	}
	_, bad := forbiddenGlobals[id.Value]
	return id.Value, bad
}

func (c *checker) block(stmts []ast.Stmt, names ...string) {
	c.push(names...)
	c.stmts(stmts)
	c.pop()
}

// stmts checks a statement list, rewriting in place the statements the
// compiler gets wrong and the table stores the sandbox checks.
func (c *checker) stmts(stmts []ast.Stmt) {
	for i, s := range stmts {
		if f, ok := s.(*ast.GenericForStmt); ok {
			s = hoistForExprs(f)
			stmts[i] = s
		}
		c.stmt(s)
		if a, ok := s.(*ast.AssignStmt); ok {
			stmts[i] = rewriteAssign(a)
		}
	}
}

// padFree is how far past the end of a table's array an integer key may
// land unchecked: gopher-lua (v1.1.2) stores an integer key below
// lua.MaxArrayIndex (2^26) in the array, appending nils one by one up to
// it, in one Go loop that neither the time budget nor a memory check can
// interrupt. `t[50000000] = x` costs gigabytes and half a minute. A gap
// of padFree slots costs 16 KiB.
const padFree = 1024

// staticKey reports whether a store with key k cannot pad a table: a
// constant string, or a constant number within padFree.
func staticKey(k ast.Expr) bool {
	switch k := k.(type) {
	case *ast.StringExpr:
		return true
	case *ast.NumberExpr:
		n, err := strconv.ParseFloat(k.Value, 64)
		return err == nil && n <= padFree
	}
	return false
}

// dynamicStore reports whether e is an assignment target t[k] with a key
// the sandbox checks.
func dynamicStore(e ast.Expr) (*ast.AttrGetExpr, bool) {
	g, ok := e.(*ast.AttrGetExpr)
	return g, ok && !staticKey(g.Key)
}

// rewriteAssign rewrites two kinds of assignment. One with a target t[k]
// whose key is not a constant: `t[k] = v` becomes `store(t, k, v)`. And
// every one with several targets, which gopher-lua (v1.1.2) compiles
// wrong when a value reads a local that an earlier target assigns: `a, b
// = b, a` leaves both at the old b. `a, t[k] = x, y` becomes `do local
// v1, v2 = x, y; a = v1; store(t, k, v2) end`, which computes every value
// before assigning any, as Lua says.
func rewriteAssign(a *ast.AssignStmt) ast.Stmt {
	if len(a.Lhs) == 1 {
		g, dynamic := dynamicStore(a.Lhs[0])
		switch {
		case !dynamic:
			return a
		case len(a.Rhs) == 1:
			return storeStmt(g, a.Rhs[0], a)
		}
	}
	names := make([]string, len(a.Lhs))
	for i := range names {
		names[i] = fmt.Sprintf("\x00value%d", i)
	}
	values := positioned(&ast.LocalAssignStmt{Names: names, Exprs: a.Rhs}, a)
	stmts := []ast.Stmt{values}
	for i, target := range a.Lhs {
		v := positioned(&ast.IdentExpr{Value: names[i]}, a)
		if g, ok := dynamicStore(target); ok {
			stmts = append(stmts, storeStmt(g, v, a))
			continue
		}
		stmts = append(stmts, positioned(&ast.AssignStmt{Lhs: []ast.Expr{target}, Rhs: []ast.Expr{v}}, a))
	}
	return positioned(&ast.DoBlockStmt{Stmts: stmts}, a)
}

// storeStmt is the call store(t, k, v) in place of `t[k] = v`.
func storeStmt(g *ast.AttrGetExpr, v ast.Expr, at ast.Stmt) ast.Stmt {
	call := positioned(&ast.FuncCallExpr{Func: positioned(&ast.IdentExpr{Value: storeGlobal}, at),
		Args: []ast.Expr{g.Object, g.Key, oneValue(v)}}, at)
	return positioned(&ast.FuncCallStmt{Expr: call}, at)
}

// oneValue keeps a call or `...` to its first value, as it is in an
// assignment or in a table field that is not the last.
func oneValue(e ast.Expr) ast.Expr {
	switch e := e.(type) {
	case *ast.FuncCallExpr:
		e.AdjustRet = true
	case *ast.Comma3Expr:
		e.AdjustRet = true
	}
	return e
}

// positioned gives a node the source lines of the node it replaces, so
// that errors name the policy's line.
func positioned[N interface {
	SetLine(int)
	SetLastLine(int)
}](n N, at interface {
	Line() int
	LastLine() int
}) N {
	n.SetLine(at.Line())
	n.SetLastLine(at.LastLine())
	return n
}

// guardFields rewrites a table constructor with fields [k] = v whose key
// is not a constant into fill({other fields}, k1, v1, k2, v2, ...), which
// stores them, checked, into the table the other fields built.
func guardFields(e *ast.TableExpr) ast.Expr {
	var kept []*ast.Field
	var args []ast.Expr
	for _, f := range e.Fields {
		if f.Key != nil && !staticKey(f.Key) {
			args = append(args, f.Key, oneValue(f.Value))
			continue
		}
		kept = append(kept, f)
	}
	if args == nil {
		return e
	}
	if n := len(kept); n > 0 && kept[n-1] != e.Fields[len(e.Fields)-1] && kept[n-1].Key == nil {
		// It was not the last field, so it gave one value.
		kept[n-1].Value = oneValue(kept[n-1].Value)
	}
	e.Fields = kept
	fn := positioned(&ast.IdentExpr{Value: fillGlobal}, e)
	return positioned(&ast.FuncCallExpr{Func: fn, Args: append([]ast.Expr{e}, args...), AdjustRet: true}, e)
}

func (c *checker) stmt(s ast.Stmt) {
	switch s := s.(type) {
	case *ast.AssignStmt:
		c.exprs(s.Lhs)
		c.exprs(s.Rhs)
	case *ast.LocalAssignStmt:
		// As the compiler does, `local f = function` sees f in its body.
		if len(s.Names) == 1 && len(s.Exprs) == 1 {
			if _, ok := s.Exprs[0].(*ast.FunctionExpr); ok {
				c.declare(s.Names...)
			}
		}
		c.exprs(s.Exprs)
		c.declare(s.Names...)
	case *ast.FuncCallStmt:
		s.Expr = c.expr(s.Expr)
	case *ast.DoBlockStmt:
		c.block(s.Stmts)
	case *ast.WhileStmt:
		s.Condition = c.expr(s.Condition)
		s.Stmts = padLoop(s.Stmts, s.Line())
		c.block(s.Stmts)
	case *ast.RepeatStmt:
		s.Stmts = padLoop(s.Stmts, s.Line())
		// The condition sees the body's locals.
		c.push()
		c.stmts(s.Stmts)
		s.Condition = c.expr(s.Condition)
		c.pop()
	case *ast.IfStmt:
		s.Condition = c.expr(s.Condition)
		c.block(s.Then)
		c.block(s.Else)
	case *ast.NumberForStmt:
		s.Init = c.expr(s.Init)
		s.Limit = c.expr(s.Limit)
		if s.Step != nil {
			s.Step = c.expr(s.Step)
		}
		c.block(s.Stmts, s.Name)
	case *ast.GenericForStmt:
		c.exprs(s.Exprs)
		s.Stmts = padLoop(s.Stmts, s.Line())
		c.block(s.Stmts, s.Names...)
	case *ast.FuncDefStmt:
		if s.Name.Func != nil {
			s.Name.Func = c.expr(s.Name.Func)
		}
		if s.Name.Receiver != nil {
			s.Name.Receiver = c.expr(s.Name.Receiver)
			c.function(s.Func, "self")
		} else {
			c.function(s.Func)
		}
	case *ast.ReturnStmt:
		c.exprs(s.Exprs)
	case *ast.BreakStmt, *ast.LabelStmt, *ast.GotoStmt:
	}
}

// loopPad names the local that padLoop declares, forState the ones that
// hoistForExprs declares; the NUL byte keeps them out of reach of Lua
// source.
const loopPad = "\x00loop"

var forState = []string{"\x00for-f", "\x00for-s", "\x00for-c"}

// hoistForExprs rewrites `for names in exprs do ... end` into its definition
// in the Lua manual, `do local f, s, c = exprs; for names in f, s, c do
// ... end end`, to work around a gopher-lua (v1.1.2) compiler bug: a call
// through the result of another call in the explist (`for x in
// g().f() do`) calls the wrong register, "attempt to call a non-function
// object". Local assignments compile such calls correctly. The cost is
// three moves when the loop starts.
func hoistForExprs(f *ast.GenericForStmt) ast.Stmt {
	if len(f.Exprs) == len(forState) {
		if id, ok := f.Exprs[0].(*ast.IdentExpr); ok && id.Value == forState[0] {
			return f // hoisted already (a module compiled twice)
		}
	}
	local := &ast.LocalAssignStmt{Names: forState, Exprs: f.Exprs}
	local.SetLine(f.Line())
	local.SetLastLine(f.Line())
	f.Exprs = make([]ast.Expr, len(forState))
	for i, name := range forState {
		id := &ast.IdentExpr{Value: name}
		id.SetLine(f.Line())
		id.SetLastLine(f.Line())
		f.Exprs[i] = id
	}
	block := &ast.DoBlockStmt{Stmts: []ast.Stmt{local, f}}
	block.SetLine(f.Line())
	block.SetLastLine(f.LastLine())
	return block
}

// padLoop starts a loop body with `local <pad>`, a LOADNIL, to work around
// a gopher-lua (v1.1.2) compiler bug: its jump-to-jump optimization follows
// a backward jump (a generic for, while or repeat going round) into a JMP
// it has already resolved and reads that JMP's offset as a label, so a body
// that starts with a jump (`break`, `if false then ... end`) compiles to a
// wrong target: `for i = 1, 3 do for x in f do break end end` panics with
// an index out of range or runs the wrong code (gopher-lua issue #540).
// With the pad, a backward jump always lands on a LOADNIL. Numeric for
// loops go round with FORLOOP, which the optimization does not follow.
func padLoop(body []ast.Stmt, line int) []ast.Stmt {
	if len(body) > 0 {
		if la, ok := body[0].(*ast.LocalAssignStmt); ok && len(la.Names) == 1 && la.Names[0] == loopPad {
			return body // already padded (a module compiled twice)
		}
	}
	pad := &ast.LocalAssignStmt{Names: []string{loopPad}}
	pad.SetLine(line)
	pad.SetLastLine(line)
	return append([]ast.Stmt{pad}, body...)
}

func (c *checker) function(f *ast.FunctionExpr, extra ...string) {
	names := append(extra, f.ParList.Names...)
	c.block(f.Stmts, names...)
}

func (c *checker) exprs(es []ast.Expr) {
	for i, e := range es {
		es[i] = c.expr(e)
	}
}

// expr checks e and returns it, or its replacement when it is a `..`.
func (c *checker) expr(e ast.Expr) ast.Expr {
	switch e := e.(type) {
	case *ast.IdentExpr:
		if name, bad := c.forbidden(e); bad {
			c.refuse(e.Line(), name, "")
		}
	case *ast.AttrGetExpr:
		if name, bad := c.forbidden(e.Object); bad {
			// Name the whole access ("os.execute"), once.
			what := name
			if k, ok := e.Key.(*ast.StringExpr); ok {
				what += "." + k.Value
			}
			c.refuse(e.Line(), what, "")
			e.Key = c.expr(e.Key)
			return e
		}
		if obj, ok := e.Object.(*ast.IdentExpr); ok && c.isGlobal(obj.Value) {
			if k, ok := e.Key.(*ast.StringExpr); ok {
				switch {
				case obj.Value == "string" && k.Value == "dump":
					c.refuse(e.Line(), "string.dump", "")
				case obj.Value == "_G" && forbiddenGlobals[k.Value] != "":
					c.refuse(e.Line(), "_G."+k.Value, "")
				}
			}
		}
		e.Object = c.expr(e.Object)
		e.Key = c.expr(e.Key)
	case *ast.TableExpr:
		for _, f := range e.Fields {
			if f.Key != nil {
				f.Key = c.expr(f.Key)
			}
			f.Value = c.expr(f.Value)
		}
		return guardFields(e)
	case *ast.FuncCallExpr:
		if id, ok := e.Func.(*ast.IdentExpr); ok && id.Value == "require" && c.isGlobal("require") && len(e.Args) > 0 {
			if s, ok := e.Args[0].(*ast.StringExpr); ok {
				c.requires = append(c.requires, requireRef{name: s.Value, line: e.Line()})
			}
		}
		if e.Func != nil {
			e.Func = c.expr(e.Func)
		}
		if e.Receiver != nil {
			e.Receiver = c.expr(e.Receiver)
		}
		c.exprs(e.Args)
	case *ast.LogicalOpExpr:
		e.Lhs = c.expr(e.Lhs)
		e.Rhs = c.expr(e.Rhs)
	case *ast.RelationalOpExpr:
		e.Lhs = c.expr(e.Lhs)
		e.Rhs = c.expr(e.Rhs)
	case *ast.ArithmeticOpExpr:
		e.Lhs = c.expr(e.Lhs)
		e.Rhs = c.expr(e.Rhs)
	case *ast.StringConcatOpExpr:
		return c.concat(e)
	case *ast.UnaryMinusOpExpr:
		e.Expr = c.expr(e.Expr)
	case *ast.UnaryNotOpExpr:
		e.Expr = c.expr(e.Expr)
	case *ast.UnaryLenOpExpr:
		e.Expr = c.expr(e.Expr)
	case *ast.FunctionExpr:
		c.function(e)
	}
	return e
}

// concat turns a chain a .. b .. c (right-associative) into a single call
// of the guard with the operands in source order, which keeps Lua's
// evaluation order. AdjustRet keeps `return a .. b` from compiling into a
// tail call, so error positions stay on the policy's line.
func (c *checker) concat(e *ast.StringConcatOpExpr) ast.Expr {
	var args []ast.Expr
	var cur ast.Expr = e
	for {
		sc, ok := cur.(*ast.StringConcatOpExpr)
		if !ok {
			args = append(args, c.expr(cur))
			break
		}
		args = append(args, c.expr(sc.Lhs))
		cur = sc.Rhs
	}
	fn := &ast.IdentExpr{Value: concatGlobal}
	fn.SetLine(e.Line())
	fn.SetLastLine(e.LastLine())
	call := &ast.FuncCallExpr{Func: fn, Args: args, AdjustRet: true}
	call.SetLine(e.Line())
	call.SetLastLine(e.LastLine())
	return call
}

// sortViolations orders violations by file then line, for stable reports.
func sortViolations(vs []Violation) {
	sort.SliceStable(vs, func(i, j int) bool {
		if vs[i].File != vs[j].File {
			return vs[i].File < vs[j].File
		}
		return vs[i].Line < vs[j].Line
	})
}
