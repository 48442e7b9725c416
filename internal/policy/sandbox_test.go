package policy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Forbidden things are refused when the policy loads, even when they sit in
// a hook that has not run yet, and Check lists them with file:line.
func TestSandboxRefusesAtLoad(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		what      string
		line      int
	}{
		{"os.execute in hook", "function admit(pin)\n  os.execute('rm -rf /')\n  return true\nend", "os.execute", 2},
		{"io.open at top level", "local f = io.open('secrets.txt')", "io.open", 1},
		{"require os", "local os2 = require(\"os\")", `require("os")`, 1},
		{"require io without parens", "\n\nlocal x = require 'io'", `require("io")`, 3},
		{"load", "function allocate(pin, c)\n  return load('return 1')()\nend", "load", 2},
		{"loadstring", "local f = loadstring('x = 1')", "loadstring", 1},
		{"string.dump", "function admit(pin) return string.dump(admit) ~= nil end", "string.dump", 1},
		{"debug", "function admit(pin)\n\n  debug.sethook()\nend", "debug.sethook", 3},
		{"dofile", "dofile('x.lua')", "dofile", 1},
		{"loadfile", "local f = loadfile", "loadfile", 1},
		{"setfenv", "setfenv(1, {})", "setfenv", 1},
		{"getfenv", "local e = getfenv(1)", "getfenv", 1},
		{"_G.os", "local o = _G.os", "_G.os", 1},
		{"_G['io']", "local o = _G['io']", "_G.io", 1},
		{"collectgarbage", "collectgarbage()", "collectgarbage", 1},
		{"package", "package.path = './?.lua'", "package.path", 1},
		{"require with path", "local m = require('../secrets')", `require("../secrets")`, 1},
		{"require absolute", "local m = require('/abs/module')", `require("/abs/module")`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writePolicy(t, tc.src)
			_, err := Load(path, Options{Logger: quiet()})
			var se *SandboxError
			if !errors.As(err, &se) {
				t.Fatalf("Load error = %v, want a *SandboxError", err)
			}
			v := se.Violations[0]
			if v.What != tc.what || v.Line != tc.line || v.File != "policy.lua" {
				t.Errorf("violation = %+v, want %s at line %d", v, tc.what, tc.line)
			}
			wantErrContains(t, err, "policy.lua:")
			r, cerr := Check(path)
			if cerr == nil || r.OK || len(r.Violations) == 0 || r.Violations[0].What != tc.what {
				t.Errorf("Check = %+v, %v", r, cerr)
			}
			if !strings.Contains(Describe(r), v.Message) {
				t.Errorf("Describe does not show %q:\n%s", v.Message, Describe(r))
			}
		})
	}
}

func TestSandboxListsEveryViolation(t *testing.T) {
	path := writePolicy(t, "local a = os.time()\nlocal b = io.read()\nfunction admit(pin)\n  return load('x')\nend\n")
	r, err := Check(path)
	if err == nil || len(r.Violations) != 3 {
		t.Fatalf("Check = %+v, %v", r, err)
	}
	for i, want := range []string{"policy.lua:1: os.time", "policy.lua:2: io.read", "policy.lua:4: load"} {
		if !strings.HasPrefix(r.Violations[i].Message, want) {
			t.Errorf("violation %d = %q, want prefix %q", i, r.Violations[i].Message, want)
		}
	}
}

// Names that would be refused as globals are fine as locals, parameters,
// fields and table keys.
func TestSandboxAllowsShadowsAndFields(t *testing.T) {
	p := mustLoad(t, `
local load = function(x) return x end
local function dofile(x) return x end
local t = { os = 1, io = 2 }
t.debug = 3
function admit(pin, os)
  local io = { open = function() return true end }
  for _, debug in ipairs({ 1 }) do assert(debug == 1) end
  assert(t.os == 1 and pin.metadata.load == nil)
  return io.open() and load(true) and dofile(true)
end`)
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

// Names built at run time escape the static check; the sandbox still
// refuses them, at load when the top level touches them and at call time
// inside hooks, with a message that says why.
func TestSandboxRefusesDynamicNames(t *testing.T) {
	path := writePolicy(t, "local name = 'o' .. 's'\n\nlocal lib = _G[name]\n")
	_, err := Load(path, Options{Logger: quiet()})
	var se *SandboxError
	if !errors.As(err, &se) || se.Violations[0].What != "os" || se.Violations[0].Line != 3 {
		t.Fatalf("Load error = %v", err)
	}
	r, _ := Check(path)
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0].Message, "policy.lua:3: os is not available in the policy sandbox") {
		t.Fatalf("Check violations = %+v", r.Violations)
	}

	// Catching the refusal with pcall does not help.
	_, err = Load(writePolicy(t, "local ok, lib = pcall(function() return _G['i' .. 'o'] end)"), Options{Logger: quiet()})
	if !errors.As(err, &se) || se.Violations[0].What != "io" {
		t.Fatalf("Load error with pcall = %v", err)
	}

	p := mustLoad(t, `
function admit(pin) return _G["lo" .. "ad"]("return true")() end
function replication(pin) return require("i" .. "o") end
function allocate(pin, c) return getmetatable("").__index.dump end`)
	_, _, err = p.Admit(context.Background(), testPin(t))
	wantErrContains(t, err, "admit: policy.lua:2: load is not available in the policy sandbox")
	_, _, err = p.Replication(context.Background(), testPin(t))
	wantErrContains(t, err, `policy.lua:3: require("io") is refused`)
	// string.dump is gone from the string table the metatable points to.
	ids, err := p.Allocate(context.Background(), testPin(t), testCandidates(1))
	if err != nil || ids != nil {
		t.Fatalf("Allocate = %v, %v; want nil (dump absent)", ids, err)
	}
}

func TestSandboxGlobalTableIsProtected(t *testing.T) {
	p := mustLoad(t, `
function admit(pin)
  assert(type(getmetatable(_G)) == "string")
  assert(rawget(_G, "os") == nil)
  local ok = pcall(setmetatable, _G, nil)
  assert(not ok, "metatable removed")
  return true
end`)
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

func TestSandboxLibraries(t *testing.T) {
	p := mustLoad(t, `
function admit(pin)
  assert(string.upper("a") == "A" and table.concat({1, 2}, "-") == "1-2")
  assert(math.max(1, 2) == 2 and select("#", 1, 2) == 2)
  assert(require("string") == string and require("math") == math)
  for _, name in ipairs({"os", "io", "debug", "coroutine", "package", "load", "dofile", "collectgarbage"}) do
    assert(rawget(_G, name) == nil, name)
  end
  assert(string["du" .. "mp"] == nil)
  return true
end`)
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

func TestRequire(t *testing.T) {
	path := writePolicy(t, `
local helpers = require("helpers")
local nested = require("lib.nested")
local tags = require("tags")
function admit(pin)
  assert(helpers.double(2) == 4)
  assert(nested.name == "nested" and nested.helpers == helpers)
  assert(tags.count ~= nil)
  assert(require("size").parse("1KiB") == 1024)
  return true
end`,
		"helpers.lua", "local M = {}\nfunction M.double(x) return 2 * x end\nreturn M\n",
		"lib/nested.lua", "return { name = 'nested', helpers = require('helpers') }\n",
	)
	p, err := Load(path, Options{Logger: quiet(), Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

func TestRequireLocalShadowsEmbedded(t *testing.T) {
	path := writePolicy(t, `function admit(pin) return require("tags") == "mine" end`,
		"tags.lua", "return 'mine'")
	p, err := Load(path, Options{Logger: quiet(), Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

func TestRequireErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   string
		extra []string
		want  []string
	}{
		{"missing", "local m = require('nowhere')", nil,
			[]string{`policy.lua:1: require("nowhere") is refused: no module "nowhere" in the policy folder`, "tags"}},
		{"module violation", "local m = require('bad')", []string{"bad.lua", "local x = 1\nreturn os.getenv('HOME')"},
			[]string{"bad.lua:2: os.getenv is not available in the policy sandbox"}},
		{"module syntax", "local m = require('broken')", []string{"broken.lua", "return {"},
			[]string{"broken.lua", "end of file"}},
		{"module error at load", "local m = require('raises')", []string{"raises.lua", "\nerror('module says no')"},
			[]string{"raises.lua:2: module says no"}},
		{"circular", "local a = require('a')", []string{"a.lua", "return require('b')", "b.lua", "return require('a')"},
			[]string{`circular require of module "a"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writePolicy(t, tc.src, tc.extra...), Options{Logger: quiet()})
			wantErrContains(t, err, tc.want...)
		})
	}
}

func TestRequireDynamicLocalModuleNotPreloaded(t *testing.T) {
	path := writePolicy(t, `function admit(pin) local n = "help" .. "ers" return require(n) end`,
		"helpers.lua", "return true")
	p, err := Load(path, Options{Logger: quiet(), Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Admit(context.Background(), testPin(t))
	wantErrContains(t, err, `module "helpers" not found`, "literal")
}

// The time budget stops an endless loop; the state is dropped, and other
// calls on the same policy keep working meanwhile and afterwards.
func TestTimeoutStopsEndlessLoop(t *testing.T) {
	const budget = 50 * time.Millisecond
	p := mustLoad(t, `
function admit(pin)
  if pin.name == "spin" then
    while true do end
  end
  return true
end
function replication(pin) return 2, 3 end`, Options{Timeout: budget, PoolSize: 2})
	spin := testPin(t)
	spin.Name = "spin"

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ok, _, err := p.Admit(context.Background(), spin)
			elapsed := time.Since(start)
			if ok || !errors.Is(err, ErrTimeout) {
				errs <- errors.New("spinning admit: " + errString(err))
			}
			// Generous slack: CI machines are loaded; the point is that
			// the loop stops instead of running forever.
			if elapsed > budget+2*time.Second {
				errs <- errors.New("spinning admit ran for " + elapsed.String())
			}
			if err != nil && !strings.Contains(err.Error(), "admit: timed out after 50ms at policy.lua:4") {
				errs <- errors.New("timeout message: " + err.Error())
			}
		}()
	}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if lo, hi, err := p.Replication(context.Background(), testPin(t)); lo != 2 || hi != 3 || err != nil {
					errs <- errors.New("replication during timeouts: " + errString(err))
					return
				}
				if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
					errs <- errors.New("admit during timeouts: " + errString(err))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestMemoryLimit(t *testing.T) {
	p := mustLoad(t, `
function admit(pin)
  local kind = pin.name
  if kind == "rep" then return string.rep("x", 1e9) ~= nil end
  if kind == "double" then
    local s = "x"
    while true do s = s .. s end
  end
  if kind == "concat" then
    local t = {}
    for i = 1, 100 do t[i] = string.rep("y", 100000) end
    return table.concat(t) ~= nil
  end
  if kind == "format" then return string.format("%999999d", 1) ~= nil end
  if kind == "gsub" then
    local s = string.rep("x", 100000)
    return string.gsub(s, "x", string.rep("y", 1000)) ~= nil
  end
  if kind == "many" then
    local keep = {}
    for i = 1, 1000 do keep[i] = string.rep("z", 1e6 - 1) .. i end
  end
  if kind == "ok" then
    local s = string.rep("ab", 1000)
    local r = string.gsub(s, "a", "%0%0")
    return #r == 3000 and #string.upper(s) == 2000 and #(s .. s) == 4000
  end
  return true
end`, Options{MemoryLimit: 8 << 20, Timeout: 10 * time.Second})
	for _, kind := range []string{"rep", "double", "concat", "format", "gsub", "many"} {
		pin := testPin(t)
		pin.Name = kind
		_, _, err := p.Admit(context.Background(), pin)
		if !errors.Is(err, ErrRuntime) {
			t.Errorf("%s: err = %v, want ErrRuntime", kind, err)
			continue
		}
		if !strings.Contains(err.Error(), "memory limit") && !strings.Contains(err.Error(), "invalid format") {
			t.Errorf("%s: err = %v", kind, err)
		}
	}
	pin := testPin(t)
	pin.Name = "ok"
	if ok, _, err := p.Admit(context.Background(), pin); !ok || err != nil {
		t.Errorf("ok: Admit = %v, %v", ok, err)
	}
}

// TestFarIntegerKeys: gopher-lua fills a table's array with nils up to an
// integer key, in one loop nothing interrupts; a key far past the end is
// refused quickly through every way of storing one, and stores that only
// look alike still behave as Lua says.
func TestFarIntegerKeys(t *testing.T) {
	p := mustLoad(t, `
local far = 67108000
function admit(pin)
  local kind = pin.name
  if kind == "assign" then local t = {} t[far] = true end
  if kind == "multi" then local t, x = {}, nil x, t[far] = 1, 2 end
  if kind == "field" then local t = {[far] = true} end
  if kind == "rawset" then rawset({}, far, true) end
  if kind == "insert" then table.insert({}, far, true) end
  if kind == "newindex" then
    local t = setmetatable({}, {__newindex = {}})
    t[far] = true
  end
  if kind == "nil" then local t = {} t[far] = nil end
  if kind == "ok" then
    local t = {}
    for i = 1, 5000 do t[i] = i end          -- in order
    t[6000] = 1                               -- a small gap
    local k = "k" .. far
    t[k], t[far + 0.5], t[2^26] = 1, 2, 3     -- not array keys
    local a, b, c = 1, 2, 3
    a, b, c = c, a, b                         -- every value before any store
    t[1], t[2] = t[2], t[1]
    local function two() return "x", "y" end
    local u = {two(), [far - far + 7] = two(), two()}
    local v = {[k] = 1, two()}
    local w = setmetatable({}, {__newindex = function(t, k, v) rawset(t, k, v * 2) end})
    w[5000] = 21
    return t[5000] == 5000 and t[1] == 2 and t[2] == 1 and t[6000] == 1 and t[k] == 1
      and t[far + 0.5] == 2 and t[2^26] == 3 and a == 3 and b == 1 and c == 2
      and u[1] == "x" and u[2] == "x" and u[3] == "y" and u[7] == "x"
      and v[1] == "x" and v[2] == "y" and v[k] == 1 and w[5000] == 42
  end
  return true
end`, Options{Timeout: 10 * time.Second})
	for _, kind := range []string{"assign", "multi", "field", "rawset", "insert", "newindex", "nil"} {
		pin := testPin(t)
		pin.Name = kind
		start := time.Now()
		_, _, err := p.Admit(context.Background(), pin)
		if !errors.Is(err, ErrRuntime) || !strings.Contains(err.Error(), "table index 67108000 lies 67107999 slots past the end") {
			t.Errorf("%s: err = %v, want the far key refused", kind, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: refused after %s", kind, took)
		}
	}
	pin := testPin(t)
	pin.Name = "ok"
	if ok, _, err := p.Admit(context.Background(), pin); !ok || err != nil {
		t.Errorf("ok: Admit = %v, %v", ok, err)
	}
}

// TestMultipleAssignment: gopher-lua compiles `a, b = b, a` among locals
// into a = b then b = a; the rewrite computes every value first.
func TestMultipleAssignment(t *testing.T) {
	p := mustLoad(t, `
function admit(pin)
  local a, b, c = 1, 2, 3
  a, b = b, a
  local swapped = a == 2 and b == 1
  a, b, c = c, a, b
  local x, y = 1
  x, y = y
  return swapped and a == 3 and b == 2 and c == 1 and x == nil and y == nil
end`, Options{})
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Errorf("Admit = %v, %v", ok, err)
	}
}

func TestMemoryLimitIsPerCall(t *testing.T) {
	// Each call may create up to the limit; calls do not add up.
	p := mustLoad(t, `function admit(pin) return #string.rep("x", 600000) == 600000 end`,
		Options{MemoryLimit: 1 << 20, PoolSize: 1})
	for range 5 {
		if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
			t.Fatalf("Admit = %v, %v", ok, err)
		}
	}
}

func TestStackLimits(t *testing.T) {
	p := mustLoad(t, `
local function deep(n) return deep(n + 1) + 1 end
function admit(pin)
  if pin.name == "recurse" then return deep(1) end
  return select("#", unpack({}, 1, 1e8)) > 0
end`)
	for _, name := range []string{"recurse", "unpack"} {
		pin := testPin(t)
		pin.Name = name
		start := time.Now()
		_, _, err := p.Admit(context.Background(), pin)
		if !errors.Is(err, ErrRuntime) || !strings.Contains(err.Error(), "overflow") {
			t.Errorf("%s: err = %v, want a stack or registry overflow", name, err)
		}
		t.Logf("%s: %v in %v", name, err, time.Since(start))
	}
}

func TestPrintGoesToDryRunOutput(t *testing.T) {
	p := mustLoad(t, `
print("loading")
function admit(pin)
  print("admit", pin.name, 42, nil)
  return true
end`)
	r := DryRun(context.Background(), p, testPin(t), nil)
	if len(r.Output) != 1 || r.Output[0] != "admit\tbackups/db-1\t42\tnil" {
		t.Fatalf("output = %q", r.Output)
	}
	// Outside dry runs, print() does not fail.
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

// pcall cannot swallow the time-out: once the budget is spent every
// instruction raises again, up to the hook.
func TestTimeoutNotCaughtByPcall(t *testing.T) {
	p := mustLoad(t, `
function admit(pin)
  while true do
    pcall(function() while true do end end)
  end
end`, Options{Timeout: 20 * time.Millisecond})
	start := time.Now()
	_, _, err := p.Admit(context.Background(), testPin(t))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestCandidateMetatableIsProtected(t *testing.T) {
	p := mustLoad(t, `
function allocate(pin, c)
  assert(getmetatable(c[1]) == "engine-owned table")
  assert(not pcall(setmetatable, c[1], nil))
  return nil
end`)
	if _, err := p.Allocate(context.Background(), testPin(t), testCandidates(2)); err != nil {
		t.Fatal(err)
	}
}

// TestToNumberReadsExponents: gopher-lua's tonumber gives nil for "1e2";
// the sandbox's reads it as Lua 5.1 does, and leaves the rest as it was.
func TestToNumberReadsExponents(t *testing.T) {
	p := mustLoad(t, `
function admit(pin)
  return tonumber("1e2") == 100 and tonumber(" -1.5E3 ") == -1500 and tonumber(".5e1") == 5
    and tonumber("1e400") == 1/0 and tonumber("12") == 12 and tonumber("0x10") == 16
    and tonumber("1e") == nil and tonumber("e5") == nil and tonumber("1e2", 16) == 482
    and tonumber("ff", 16) == 255 and tonumber(7) == 7 and tonumber({}) == nil
end`, Options{})
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Errorf("Admit = %v, %v", ok, err)
	}
}
