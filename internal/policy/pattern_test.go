package policy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// patternCases are string library calls with what Lua 5.1 (the reference
// interpreter, lua5.1) returns for them, shown as show() below prints
// them; "error" means the call raised an error.
var patternCases = []struct{ expr, want string }{
	{`string.find("hello world", "o w")`, `5 7`},
	{`string.find("hello world", "l+")`, `3 4`},
	{`string.find("hello world", "l+", 5)`, `10 10`},
	{`string.find("hello world", "l+", -3)`, `10 10`},
	{`string.find("hello world", "l+", 100)`, `nil`},
	{`string.find("hello", "", 3)`, `3 2`},
	{`string.find("hello", "", 10)`, `6 5`},
	{`string.find("", "")`, `1 0`},
	{`string.find("a.b", ".", 1, true)`, `2 2`},
	{`string.find("a+b", "+", 1, true)`, `2 2`},
	{`string.find("a+b", "a+b")`, `nil`},
	{`string.find("abc", "b", -1)`, `nil`},
	{`string.find("abc", "b", -10)`, `2 2`},
	{`string.find("abc", "b", 0)`, `2 2`},
	{`string.find("hello", "(l)(l)")`, `3 4 'l' 'l'`},
	{`string.find("hello", "()ll()")`, `3 4 3 5`},
	{`string.find("hello", "^h")`, `1 1`},
	{`string.find("hello", "^e")`, `nil`},
	{`string.find("hello", "o$")`, `5 5`},
	{`string.find("hello", "l$")`, `nil`},
	{`string.find("a$b", "$b")`, `2 3`},
	{`string.find("a^b", "a^b")`, `1 3`},
	{`string.find("  x  ", "^%s*(.-)%s*$")`, `1 5 'x'`},
	{`string.match("  trim me  ", "^%s*(.-)%s*$")`, `'trim me'`},
	{`string.match("key=value", "(%w+)=(%w+)")`, `'key' 'value'`},
	{`string.match("2024-05-01", "(%d+)-(%d+)-(%d+)")`, `'2024' '05' '01'`},
	{`string.match("hello", ".-")`, `''`},
	{`string.match("hello", ".-$")`, `'hello'`},
	{`string.match("hello", "l*")`, `''`},
	{`string.match("hello", "l+")`, `'ll'`},
	{`string.match("hello", "x*")`, `''`},
	{`string.match("hello", "hel?l?o")`, `'hello'`},
	{`string.match("heo", "hel?l?o")`, `'heo'`},
	{`string.match("abc123def", "%a+")`, `'abc'`},
	{`string.match("abc123def", "%d+")`, `'123'`},
	{`string.match("abc123def", "%D+", 4)`, `'def'`},
	{`string.match("ABCdef", "%u+")`, `'ABC'`},
	{`string.match("ABCdef", "%l+")`, `'def'`},
	{`string.match("a,b;c", "%p")`, `','`},
	{`string.match("tab\there", "%s")`, `'	'`},
	{`string.match("x\0y", "%z")`, "'\u0000'"},
	{`string.match("x\0y", "[%z]")`, "'\u0000'"},
	{`string.match("ctl\1x", "%c")`, "'\u0001'"},
	{`string.match("ff0A", "%x+")`, `'ff0A'`},
	{`string.match("ff0Ag", "%X")`, `'g'`},
	{`string.match("__init__", "[_%a]+")`, `'__init__'`},
	{`string.match("hello]", "[]]")`, `']'`},
	{`string.match("a-b", "[a-]")`, `'a'`},
	{`string.match("-", "[a-]")`, `'-'`},
	{`string.match("b", "[^a]")`, `'b'`},
	{`string.match("a", "[^a]")`, `nil`},
	{`string.match("m", "[a-z]")`, `'m'`},
	{`string.match("M", "[a-z]")`, `nil`},
	{`string.match("5", "[%d]")`, `'5'`},
	{`string.match("x%y", "%%")`, `'%'`},
	{`string.match("x.y", "%.")`, `'.'`},
	{`string.match("f(a(b)c)d", "%b()")`, `'(a(b)c)'`},
	{`string.match("f(a(b)c", "%b()")`, `'(b)'`},
	{`string.match("THE (quick) fox", "%f[%a]%a+")`, `'THE'`},
	{`string.match("THE (quick) fox", "%f[%l]%a+")`, `'quick'`},
	{`string.match("hello world", "%f[%w]%w+$")`, `'world'`},
	{`string.match("hello hello", "(h%a+) %1")`, `'hello'`},
	{`string.match("hello help", "(h%a+) %1")`, `nil`},
	{`string.match("abab", "(ab)%1")`, `'ab'`},
	{`string.match("xx", "()x%1")`, `nil`},
	{`string.match("hello", "()")`, `1`},
	{`string.match("hello", "(h)(e)(l)(l)(o)")`, `'h' 'e' 'l' 'l' 'o'`},
	{`string.match("hello", "((h)(e))")`, `'he' 'h' 'e'`},
	{`string.match("date: 2024", "date: (%d%d%d%d)")`, `'2024'`},
	{`string.match("[[nested]]", "%[%[(.-)%]%]")`, `'nested'`},
	{`string.match("abc", "a(.*)c")`, `'b'`},
	{`string.match("abc", "a(.-)c")`, `'b'`},
	{`string.match("aaa", "a-b")`, `nil`},
	{`string.match("aaab", "a-b")`, `'aaab'`},
	{`string.match("aaab", "^a-b$")`, `'aaab'`},
	{`string.match("path/to/file.txt", "([^/]+)$")`, `'file.txt'`},
	{`string.match("path/to/file.txt", "(.+)/")`, `'path/to'`},
	{`string.match("path/to/file.txt", "%.(%w+)$")`, `'txt'`},
	{`string.match("bafybeig", "^baf")`, `'baf'`},
	{`string.match("QmXyz", "^Qm[1-9A-HJ-NP-Za-km-z]+$")`, `'QmXyz'`},
	{`string.match("region:eu-west", "^region:(.*)$")`, `'eu-west'`},
	{`string.match("x", "x", 2)`, `nil`},
	{`string.match("x", "x", 0)`, `'x'`},
	{`string.match("", ".*")`, `''`},
	{`string.match("", ".+")`, `nil`},
	{`string.gsub("hello world", "o", "0")`, `'hell0 w0rld' 2`},
	{`string.gsub("hello world", "o", "0", 1)`, `'hell0 world' 1`},
	{`string.gsub("hello world", "(%w+)", "<%1>")`, `'<hello> <world>' 2`},
	{`string.gsub("hello world", "%w+", "%0 %0", 1)`, `'hello hello world' 1`},
	{`string.gsub("hello", "", "-")`, `'-h-e-l-l-o-' 6`},
	{`string.gsub("hello", "x*", "-")`, `'-h-e-l-l-o-' 6`},
	{`string.gsub("abc", "^a", "A")`, `'Abc' 1`},
	{`string.gsub("aaa", "^a", "A")`, `'Aaa' 1`},
	{`string.gsub("abc", "b$", "B")`, `'abc' 0`},
	{`string.gsub("hello world", "(%w+) (%w+)", "%2 %1")`, `'world hello' 1`},
	{`string.gsub("abc", "%w", "%%")`, `'%%%' 3`},
	{`string.gsub("abc", "%w", "%x")`, `'xxx' 3`},
	{`string.gsub("abc", "()", "%1")`, `'1a2b3c4' 4`},
	{`string.gsub("$name is $age", "%$(%w+)", {name="bob", age=42})`, `'bob is 42' 2`},
	{`string.gsub("$name is $unknown", "%$(%w+)", {name="bob"})`, `'bob is $unknown' 2`},
	{`string.gsub("abc", "%w", function(c) return c:upper() .. "." end)`, `'A.B.C.' 3`},
	{`string.gsub("abc", "%w", function(c) if c == "b" then return false end return "x" end)`, `'xbx' 3`},
	{`string.gsub("abc", "(%w)", function(c) return nil end)`, `'abc' 3`},
	{`string.gsub("a1b2", "%d", function(d) return d * 2 end)`, `'a2b4' 2`},
	{`string.gsub("abc", "b", 5)`, `'a5c' 1`},
	{`string.gsub("abc", "b", 2.5)`, `'a2.5c' 1`},
	{`string.gsub("one two", "(%w+)", "%1 %1", 5)`, `'one one two two' 2`},
	{`string.gsub("x = 1, y = 2", "(%w+) = (%w+)", "%2 = %1")`, `'1 = x, 2 = y' 2`},
	{`string.gsub("", "x", "y")`, `'' 0`},
	{`string.gsub("abc", ".", {a=1, b=true})`, `error`},
	{`string.gsub("abc", "b", "%0%0%0")`, `'abbbc' 1`},
	{`string.gsub("hello", "l", "L", 0)`, `'hello' 0`},
	{`string.gsub("hello", "l", "L", -1)`, `'hello' 0`},
	{`(function() local t = {} for w in string.gmatch("one two  three", "%a+") do t[#t+1] = w end return table.concat(t, "|") end)()`, `'one|two|three'`},
	{`(function() local t = {} for k, v in string.gmatch("a=1, b=2, c=3", "(%w+)=(%w+)") do t[#t+1] = k .. ":" .. v end return table.concat(t, "|") end)()`, `'a:1|b:2|c:3'`},
	{`(function() local t = {} for w in string.gmatch("abc", "") do t[#t+1] = "[" .. w .. "]" end return table.concat(t, "|") end)()`, `'[]|[]|[]|[]'`},
	{`(function() local t = {} for w in string.gmatch("abc", "x*") do t[#t+1] = "[" .. w .. "]" end return table.concat(t, "|") end)()`, `'[]|[]|[]|[]'`},
	{`(function() local t = {} for w in string.gmatch("^a^b", "^%a") do t[#t+1] = w end return table.concat(t, "|") end)()`, `'^a|^b'`},
	{`(function() local t = {} for p in string.gmatch("hello", "()l") do t[#t+1] = p end return table.concat(t, "|") end)()`, `'3|4'`},
	{`(function() local t = {} for a, b in string.gmatch("k1=v1;k2=v2", "(%w+)=(%w+)") do t[#t+1] = a .. b end return #t end)()`, `2`},
	{`("hello"):find("l")`, `3 3`},
	{`("hello"):match("(h)(.)")`, `'h' 'e'`},
	{`("hello"):gsub("l", "L")`, `'heLLo' 2`},
	{`string.find("abc", "[a")`, `error`},
	{`string.find("abc", "%")`, `error`},
	{`string.find("abc", "(a")`, `error`},
	{`string.find("abc", "a)")`, `nil`},
	{`string.find("abc", "%1")`, `error`},
	{`string.find("abc", "(a)%2")`, `error`},
	{`string.find("abc", "%b")`, `error`},
	{`string.find("abc", "%ba")`, `error`},
	{`string.find("abc", "%fa")`, `error`},
	{`string.gsub("abc", "(a)", "%2")`, `error`},
	{`string.gsub("abc", "a", {a={}})`, `error`},
	{`string.gsub("abc", "a", function() return {} end)`, `error`},
	{`string.gsub("abc", "a", true)`, `error`},
	{`string.match("abc", "(()")`, `error`},
	{`string.find("abc", "[%")`, `error`},
	{`string.find("a]", "[]")`, `error`},
	{`string.match("a-z", "[%a-z]+")`, `'a-z'`},
	{`string.match("x-y", "[x%-y]+")`, `'x-y'`},
	{`string.match("hello", "[h-]+")`, `'h'`},
	{`string.match("a.b", "[.]")`, `'.'`},
	{`string.match("aXb", "[^%l]")`, `'X'`},
	{`string.match("a b", "[%S]+")`, `'a'`},
	{`string.match("A1_b", "[%W]")`, `'_'`},
	{`string.match("  ", "%S")`, `nil`},
	{`string.find("abc", "c", 3)`, `3 3`},
	{`string.find("abc", "c", 4)`, `nil`},
	{`string.find("abc", "", 4)`, `4 3`},
	{`string.find("abc", "", 5)`, `4 3`},
	{`string.match(string.rep("a", 20) .. "b", "a-a-a-b")`, `'aaaaaaaaaaaaaaaaaaaab'`},
	{`string.match("aaa", "(a*(.))%2")`, `'aa' 'a'`},
}

// TestPatternsMatchLua51 runs every case through the sandbox's string
// library and compares with Lua 5.1.
func TestPatternsMatchLua51(t *testing.T) {
	var src strings.Builder
	src.WriteString(`
local function show(...)
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then out[i] = "'" .. v .. "'" else out[i] = tostring(v) end
  end
  return table.concat(out, " ")
end
local cases = {}
`)
	for i, c := range patternCases {
		src.WriteString("cases[" + strconv.Itoa(i+1) + "] = function() return show(" + c.expr + ") end\n")
	}
	src.WriteString(`
function admit(pin)
  local ok, r = pcall(cases[tonumber(pin.name)])
  if not ok then return false, "error" end
  return false, r
end`)
	p := mustLoad(t, src.String())
	for i, c := range patternCases {
		pin := testPin(t)
		pin.Name = strconv.Itoa(i + 1)
		_, got, err := p.Admit(context.Background(), pin)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if got != c.want {
			t.Errorf("%s = %q, want %q", c.expr, got, c.want)
		}
	}
}

// A pattern that backtracks for hours on a long subject stops at the hook's
// budget, inside the library call, with the hook's usual timeout error.
func TestPatternStopsAtBudget(t *testing.T) {
	const budget = 50 * time.Millisecond
	p := mustLoad(t, `
local s = string.rep("a", 5000)
function admit(pin)
  if pin.name == "find" then return s:find("a*a*a*a*b") == nil end
  if pin.name == "gsub" then return (s:gsub("a-a-a-a-b", "")) ~= nil end
  if pin.name == "gmatch" then for w in s:gmatch("a*a*a*b") do end return true end
  if pin.name == "match" then return s:match("(a*)(a*)(a*)%3b") == nil end
  return true
end`, Options{Timeout: budget})
	for _, fn := range []string{"find", "gsub", "gmatch", "match"} {
		pin := testPin(t)
		pin.Name = fn
		start := time.Now()
		ok, _, err := p.Admit(context.Background(), pin)
		elapsed := time.Since(start)
		if ok || !errors.Is(err, ErrTimeout) {
			t.Errorf("%s: Admit = %v, %v; want a timeout", fn, ok, err)
			continue
		}
		if !strings.Contains(err.Error(), "admit: timed out after 50ms at policy.lua:") {
			t.Errorf("%s: %v", fn, err)
		}
		// Generous slack for a loaded machine: unbounded, these run for
		// hours.
		if elapsed > budget+2*time.Second {
			t.Errorf("%s: the call ran for %v", fn, elapsed)
		}
	}
}

// Deep patterns fail with an error instead of growing the stack without
// bound, and malformed ones name what is wrong.
func TestPatternErrors(t *testing.T) {
	p := mustLoad(t, `
function admit(pin)
  local pats = {
    deep = string.rep("a?", 5000),
    captures = string.rep("()", 40),
    bracket = "[abc",
    percent = "abc%",
    frontier = "%fx",
    balance = "%b(",
    backref = "(a)%2",
  }
  return string.find(string.rep("a", 300) .. "abc", pats[pin.name]) ~= nil
end`)
	for name, want := range map[string]string{
		"deep":     "string.find: pattern too complex",
		"captures": "string.find: too many captures",
		"bracket":  "string.find: malformed pattern (missing ']')",
		"percent":  "string.find: malformed pattern (ends with '%')",
		"frontier": "string.find: missing '[' after '%f' in pattern",
		"balance":  "string.find: unbalanced pattern",
		"backref":  "string.find: invalid capture index",
	} {
		pin := testPin(t)
		pin.Name = name
		_, _, err := p.Admit(context.Background(), pin)
		if !errors.Is(err, ErrRuntime) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", name, err, want)
		}
	}
}

// FuzzPattern runs the four pattern functions on any subject and pattern:
// each call returns or raises a Lua error, within a time bound, and never
// hits a Go runtime error (which gopher-lua would turn into a Lua error,
// hiding the bug).
func FuzzPattern(f *testing.F) {
	for _, c := range patternCases {
		f.Add("hello (world) 2024-05-01 a=b", c.expr)
	}
	for _, pat := range []string{"a*a*a*b", "%b()", "%f[%w]%w+", "(a)%1", "[^%s]+", "()", "^(.-)$", "[]]", "%", "[a-"} {
		f.Add("aaa(b)c  d", pat)
	}
	p := mustLoad(f, "")
	f.Fuzz(func(t *testing.T, subject, pattern string) {
		st, err := p.newSandbox()
		if err != nil {
			t.Fatal(err)
		}
		defer st.close()
		L := st.L
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		L.SetContext(ctx)
		defer L.RemoveContext()
		st.budget = 1 << 20
		str := L.GetGlobal("string").(*lua.LTable)
		for _, call := range []struct {
			fn   string
			args []lua.LValue
		}{
			{"find", []lua.LValue{lua.LString(subject), lua.LString(pattern)}},
			{"find", []lua.LValue{lua.LString(subject), lua.LString(pattern), lua.LNumber(-3)}},
			{"match", []lua.LValue{lua.LString(subject), lua.LString(pattern)}},
			{"gsub", []lua.LValue{lua.LString(subject), lua.LString(pattern), lua.LString("<%0>")}},
			{"gmatch", []lua.LValue{lua.LString(subject), lua.LString(pattern)}},
		} {
			L.SetTop(0)
			err := L.CallByParam(lua.P{Fn: str.RawGetString(call.fn), NRet: 1, Protect: true}, call.args...)
			if err == nil && call.fn == "gmatch" {
				iter := L.Get(-1)
				for range len(subject) + 2 { // gmatch advances at least one byte per match
					L.SetTop(0)
					if err = L.CallByParam(lua.P{Fn: iter, NRet: 1, Protect: true}); err != nil || L.Get(-1) == lua.LNil {
						break
					}
				}
			}
			if err != nil && strings.Contains(err.Error(), "runtime error") {
				t.Fatalf("string.%s(%q, %q): %v", call.fn, subject, pattern, err)
			}
		}
	})
}
