package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rs/zerolog"
	lua "github.com/yuin/gopher-lua"
)

// ScriptOptions configure RunScript.
type ScriptOptions struct {
	// Args are the script's arguments. The script sees them in the global
	// table arg (arg[0] is the script's path, arg[1] the first argument)
	// and, up to 4096 of them, as the main chunk's varargs (...).
	Args []string
	// Source, when not nil, is the script's code and path only names it
	// (arg[0], and its base name in messages). Such a script has no
	// folder: require finds the embedded and the Go modules only.
	Source []byte
	// Modules are modules written in Go: require(name) returns what the
	// loader returned. The loaders run once, in name order, before the
	// script starts. A Go module takes precedence over a file of the same
	// name in the script's folder.
	Modules map[string]func(s *Script) lua.LValue
	// Stdout receives what print() writes, a line per call (nil: discarded).
	Stdout io.Writer
	// MemoryLimit is the number of bytes of strings the script may create
	// between two calls of Script.Step (default DefaultMemoryLimit); see
	// Options.MemoryLimit for what is metered.
	MemoryLimit int64
}

// Script is a running batch script as its Go modules see it. Its methods,
// like the Lua state, are for the goroutine running the script: module
// functions are called on it.
type Script struct {
	// L is the script's Lua state.
	L    *lua.LState
	st   *state
	name string
	out  io.Writer
	line bytes.Buffer
	err  error // the main chunk's Lua error
}

// Name is the script's chunk name, its base name, which starts the
// file:line of its error messages.
func (s *Script) Name() string { return s.name }

// Step marks the end of one unit of the script's work: the string budget
// (ScriptOptions.MemoryLimit) starts again. A batch script runs for as
// long as its input lasts, so its strings are bounded per step rather than
// per run; Go modules call Step on every operation they perform and on
// every item an iterator yields.
func (s *Script) Step() { s.st.budget = s.st.p.opts.MemoryLimit }

// ScriptError is the error of a script that did not run to its end. Msg
// starts with the script's file:line when it is known.
type ScriptError struct {
	Msg string
	// Err is the cause, when there is one beyond the message: the cause of
	// the context (context.Canceled, context.DeadlineExceeded or what was
	// given to a context.CancelCauseFunc) for an interrupted script, or a
	// *SyntaxError or *SandboxError for one that did not compile.
	Err error
}

func (e *ScriptError) Error() string { return e.Msg }

// Unwrap returns the cause.
func (e *ScriptError) Unwrap() error { return e.Err }

// RunScript runs the Lua batch script at path, in the sandbox of policies:
// the same libraries, static check and refusals, string metering and
// stack bounds. Unlike a hook, a script has no time budget: it runs until
// it ends or ctx does, and the VM checks ctx between instructions, so
// `while true do end` stops as soon as ctx is canceled.
//
// The error is nil when the script ran to its end; otherwise it is a
// *ScriptError whose message carries the script's file:line: a syntax
// error or sandbox violations (found before anything runs), a Lua error,
// or the interruption by ctx.
func RunScript(ctx context.Context, path string, opts ScriptOptions) error {
	src := opts.Source
	if src == nil {
		b, err := os.ReadFile(path)
		if err != nil {
			return &ScriptError{Msg: fmt.Sprintf("script: %v", err), Err: err}
		}
		src = b
	}
	name := filepath.Base(path)
	if !strings.HasSuffix(name, ".lua") && opts.Source != nil {
		name += ".lua"
	}

	names := make([]string, 0, len(opts.Modules))
	goModules := make(map[string]bool, len(opts.Modules))
	for n := range opts.Modules {
		if !moduleName.MatchString(n) || forbiddenModules[n] || openLibs[n] {
			return fmt.Errorf("script: invalid Go module name %q", n)
		}
		names = append(names, n)
		goModules[n] = true
	}
	sort.Strings(names)

	l := newLinker(filepath.Dir(path))
	l.goModules = goModules
	l.noFolder = opts.Source != nil
	c, err := l.link(name, src)
	if err != nil {
		return scriptCompileError(err)
	}

	limit := opts.MemoryLimit
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	nop := zerolog.Nop()
	p := &Policy{path: path, name: name, proto: c.proto, modules: c.modules,
		opts: Options{MemoryLimit: limit, Logger: &nop}.withDefaults(), log: nop}
	st, err := p.newSandbox()
	if err != nil {
		return &ScriptError{Msg: fmt.Sprintf("%s: %v", name, err), Err: err}
	}
	L := st.L
	defer L.Close()
	out := opts.Stdout
	if out == nil {
		out = io.Discard
	}
	s := &Script{L: L, st: st, name: name, out: out}
	L.G.Global.RawSetString("print", L.NewFunction(s.print))
	args := L.CreateTable(len(opts.Args), 1)
	args.RawSetInt(0, lua.LString(path))
	for i, a := range opts.Args {
		args.RawSetInt(i+1, lua.LString(a))
	}
	L.G.Global.RawSetString("arg", args)

	L.SetContext(ctx)
	defer L.RemoveContext()
	for _, n := range names {
		v := opts.Modules[n](s)
		if v == nil || v == lua.LNil {
			v = lua.LTrue
		}
		st.loaded[n] = v
	}
	s.Step()
	if err := s.run(c.proto, opts.Args); err != nil {
		return err
	}
	err = s.err

	if ctx.Err() != nil {
		// Interrupted, whatever the script made of it (pcall may have
		// caught the first error, and the script then ended).
		msg := ""
		if err != nil {
			msg = luaMessage(err)
		}
		cause := context.Cause(ctx)
		what := "stopped (" + cause.Error() + ")"
		switch {
		case errors.Is(cause, context.Canceled) && cause != context.Canceled:
			what = "interrupted (" + cause.Error() + ")"
		case errors.Is(cause, context.Canceled):
			what = "interrupted"
		case errors.Is(cause, context.DeadlineExceeded):
			what = "timed out"
		}
		if loc := atWhere(msg); loc != "" {
			return &ScriptError{Msg: what + loc, Err: cause}
		}
		return &ScriptError{Msg: name + ": " + what, Err: cause}
	}
	if err != nil {
		msg := luaMessage(err)
		if st.refused != nil && !strings.Contains(msg, "policy sandbox") {
			msg = st.refused.Message
		}
		if st.refused != nil {
			return &ScriptError{Msg: msg, Err: &SandboxError{Violations: []Violation{*st.refused}}}
		}
		return &ScriptError{Msg: clarify(msg)}
	}
	if st.refused != nil {
		// The script caught the refusal with pcall and went on; touching
		// a forbidden name still fails it, as it fails a policy's load.
		return &ScriptError{Msg: st.refused.Message, Err: &SandboxError{Violations: []Violation{*st.refused}}}
	}
	return nil
}

// maxScriptArgs bounds the arguments passed as the chunk's varargs, which
// live on the Lua value stack.
const maxScriptArgs = 4096

// run calls the script's main chunk and leaves its Lua error in s.err. A
// Go panic out of the VM (a gopher-lua bug) comes back as an error rather
// than crashing the process.
func (s *Script) run(proto *lua.FunctionProto, args []string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &ScriptError{Msg: fmt.Sprintf("%s: internal error of the Lua VM: %v", s.name, r)}
		}
	}()
	L := s.L
	L.Push(L.NewFunctionFromProto(proto))
	nargs := 0
	if len(args) <= maxScriptArgs {
		// More arguments are only in the arg table.
		for _, a := range args {
			L.Push(lua.LString(a))
		}
		nargs = len(args)
	}
	s.err = L.PCall(nargs, 0, nil)
	return nil
}

func scriptCompileError(err error) error {
	var se *SandboxError
	if errors.As(err, &se) {
		sortViolations(se.Violations)
		msgs := make([]string, len(se.Violations))
		for i, v := range se.Violations {
			msgs[i] = v.Message
		}
		return &ScriptError{Msg: "script refused by the sandbox: " + strings.Join(msgs, "; "), Err: se}
	}
	return &ScriptError{Msg: err.Error(), Err: err}
}

// print writes its arguments, tab-separated, as one line of the script's
// output. What it prints was metered when it was made: print itself is
// not charged, since output is what a script is for.
func (s *Script) print(L *lua.LState) int {
	b := &s.line
	b.Reset()
	for i := 1; i <= L.GetTop(); i++ {
		if i > 1 {
			b.WriteByte('\t')
		}
		b.WriteString(L.ToStringMeta(L.Get(i)).String())
	}
	b.WriteByte('\n')
	if _, err := s.out.Write(b.Bytes()); err != nil {
		L.RaiseError("print: %v", err)
	}
	if b.Cap() > 64<<10 {
		s.line = bytes.Buffer{} // do not keep a huge line's buffer
	}
	return 0
}
