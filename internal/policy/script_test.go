package policy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func writeScript(t *testing.T, src string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i+1 < len(extra); i += 2 {
		if err := os.WriteFile(filepath.Join(dir, extra[i]), []byte(extra[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "s.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunScriptArgsAndPrint(t *testing.T) {
	path := writeScript(t, `
local m = require("m")
local helper = require("helper")
print(arg[0] ~= nil, #arg, arg[1], arg[2], ...)
print(m.hello(), helper.x, string.format("%d", 7))`,
		"helper.lua", "return {x = 42}")
	var out bytes.Buffer
	err := RunScript(context.Background(), path, ScriptOptions{
		Args:   []string{"-x", "two words"},
		Stdout: &out,
		Modules: map[string]func(*Script) lua.LValue{"m": func(s *Script) lua.LValue {
			t := s.L.CreateTable(0, 1)
			t.RawSetString("hello", s.L.NewFunction(func(L *lua.LState) int {
				L.Push(lua.LString("hello from " + s.Name()))
				return 1
			}))
			return t
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "true\t2\t-x\ttwo words\t-x\ttwo words\nhello from s.lua\t42\t7\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
}

func TestRunScriptErrors(t *testing.T) {
	run := func(src string, opts ScriptOptions) error {
		return RunScript(context.Background(), writeScript(t, src), opts)
	}
	err := run("local x = nil\nlocal y = x.field\n", ScriptOptions{})
	wantErrContains(t, err, "s.lua:2: attempt to index a non-table object(nil) with key 'field'")

	err = run("error('boom')", ScriptOptions{})
	wantErrContains(t, err, "s.lua:1: boom")

	err = run("print('ran')\nlocal f = io.open('x')\nlocal g = loadstring('x')", ScriptOptions{})
	wantErrContains(t, err, "script refused by the sandbox: s.lua:2: io.open is not available in the policy sandbox; s.lua:3: loadstring is not available")
	var se *SandboxError
	if !errors.As(err, &se) || len(se.Violations) != 2 {
		t.Fatalf("want a SandboxError, got %#v", err)
	}

	err = run("local m = require('nothere')", ScriptOptions{})
	wantErrContains(t, err, `no module "nothere" in the script's folder`)

	err = run("if x then", ScriptOptions{})
	var syn *SyntaxError
	if !errors.As(err, &syn) {
		t.Fatalf("want a SyntaxError, got %#v", err)
	}

	// A script with no folder resolves embedded modules only.
	err = RunScript(context.Background(), "builtin", ScriptOptions{Source: []byte("local m = require('s')")})
	wantErrContains(t, err, `builtin.lua:1: require("s") is refused: no module "s" among the embedded modules`)
	err = RunScript(context.Background(), "builtin", ScriptOptions{Source: []byte("local size = require('size') assert(size.parse('1KiB') == 1024)")})
	if err != nil {
		t.Fatal(err)
	}

	err = RunScript(context.Background(), writeScript(t, ""), ScriptOptions{
		Modules: map[string]func(*Script) lua.LValue{"os": func(*Script) lua.LValue { return lua.LNil }}})
	wantErrContains(t, err, `invalid Go module name "os"`)
}

func TestRunScriptContext(t *testing.T) {
	for name, src := range map[string]string{
		"loop":  "while true do end",
		"pcall": "while true do pcall(function() while true do end end) end",
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := RunScript(ctx, writeScript(t, src), ScriptOptions{})
			if time.Since(start) > 5*time.Second {
				t.Fatalf("stopped after %v", time.Since(start))
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v", err)
			}
			wantErrContains(t, err, "timed out at s.lua:1")
		})
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop requested")
	err := RunScript(ctx, writeScript(t, "local m = require('m')\nm.stop()\nwhile true do end"), ScriptOptions{
		Modules: map[string]func(*Script) lua.LValue{"m": func(s *Script) lua.LValue {
			t := s.L.CreateTable(0, 1)
			t.RawSetString("stop", s.L.NewFunction(func(L *lua.LState) int { cancel(stop); return 0 }))
			return t
		}},
	})
	if !errors.Is(err, stop) {
		t.Fatalf("err %v, want the cause", err)
	}
	wantErrContains(t, err, "stopped (stop requested) at s.lua:3")
}

// The string budget is per step, not per run.
func TestRunScriptStep(t *testing.T) {
	src := `
local m = require("m")
for i = 1, 20 do
  if STEP then m.step() end
  local s = string.rep("x", 100 * 1024)
end`
	mod := map[string]func(*Script) lua.LValue{"m": func(s *Script) lua.LValue {
		t := s.L.CreateTable(0, 1)
		t.RawSetString("step", s.L.NewFunction(func(L *lua.LState) int { s.Step(); return 0 }))
		return t
	}}
	err := RunScript(context.Background(), writeScript(t, src), ScriptOptions{MemoryLimit: 1 << 20, Modules: mod})
	wantErrContains(t, err, "s.lua:5:", "string memory limit")
	err = RunScript(context.Background(), writeScript(t, "STEP = true\n"+src), ScriptOptions{MemoryLimit: 1 << 20, Modules: mod})
	if err != nil {
		t.Fatal(err)
	}
}

// Loops that gopher-lua used to miscompile (see padLoop and hoistForExprs).
func TestCompilerWorkarounds(t *testing.T) {
	for src, want := range map[string]string{
		"local function it() return 1 end\nfor i = 1, 3 do for l in it do break end end\nR = 'ok'":                                                       "ok",
		"local function it() return 1 end\nlocal function f() for i = 1, 3 do for l in it do break end end end\nf() R = 'ok'":                            "ok",
		"local n = 0\nfor i = 1, 3 do for _, v in ipairs({1, 2}) do if false then local x end n = n + v end end\nR = tostring(n)":                        "9",
		"local n = 0\nfor i = 1, 3 do while true do break end n = n + 1 end\nR = tostring(n)":                                                            "3",
		"local n = 0\nfor i = 1, 3 do repeat if n > 100 then break end n = n + 1 until n % 2 == 0 end\nR = tostring(n)":                                  "6",
		"local n = 0\nfor i = 1, 5 do for _, v in ipairs({1, 2, 3}) do if v == 2 then goto continue end n = n + v ::continue:: end end\nR = tostring(n)": "20",
		// A call through a call's result in a generic for's explist.
		"local t = {f = function() return ipairs({4, 5}) end}\nlocal function g() return t end\nlocal n = 0\nfor _, v in g().f() do n = n + v end\nR = tostring(n)":            "9",
		"local n = 0\nfor a, b in next, {7} do for c in (function() return function(_, c) if not c then return 1 end end end)() do n = n + a + b + c end end\nR = tostring(n)": "9",
	} {
		var out bytes.Buffer
		err := RunScript(context.Background(), writeScript(t, src+"\nprint(R)"), ScriptOptions{Stdout: &out})
		if err != nil || strings.TrimSpace(out.String()) != want {
			t.Errorf("%q: %q, %v; want %q", src, out.String(), err, want)
		}
		// Policies compile the same way.
		p := mustLoad(t, src+"\nfunction admit() return false, R end")
		if _, reason, err := p.Admit(context.Background(), testPin(t)); reason != want || err != nil {
			t.Errorf("policy %q: %q, %v; want %q", src, reason, err, want)
		}
	}
}

func TestRunScriptManyArgs(t *testing.T) {
	args := make([]string, 20000)
	for i := range args {
		args[i] = "a"
	}
	var out bytes.Buffer
	err := RunScript(context.Background(), writeScript(t, `print(#arg, select("#", ...))`), ScriptOptions{Args: args, Stdout: &out})
	if err != nil || out.String() != "20000\t0\n" {
		t.Fatalf("%q %v", out.String(), err)
	}
}
