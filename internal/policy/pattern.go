package policy

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// The sandbox's string.find, string.match, string.gmatch and string.gsub
// match Lua 5.1 patterns with the interpreter below instead of gopher-lua's
// matcher. A pattern such as "a*a*a*a*b" backtracks for a time that grows
// with a power of the subject's length, all inside one library call where
// the VM never checks the hook's budget; this interpreter counts its steps
// and checks the call's context every patternCheckEvery of them, so a hook
// stops at its budget inside a pattern as it does between instructions.
// It follows Lua 5.1's lstrlib.c, including %f, and bounds the nesting of
// backtracking as Lua 5.2 does ("pattern too complex") so that a long
// pattern cannot exhaust the goroutine's stack.

const (
	// patternSpecials are the characters that make string.find match a
	// pattern rather than search for plain text.
	patternSpecials = "^$*+?.([%-"
	// maxCaptures is Lua's LUA_MAXCAPTURES.
	maxCaptures = 32
	// maxMatchDepth bounds the recursion of one match (Lua 5.2's
	// MAXCCALLS).
	maxMatchDepth = 200
	// patternCheckEvery is how many steps pass between two checks of the
	// context: a step is a few nanoseconds, so the check costs nothing
	// measurable and comes every few microseconds.
	patternCheckEvery = 1 << 12

	capUnfinished = -1
	capPosition   = -2
)

// patternError is raised (as a panic) inside a match and recovered by
// matchState.run: a malformed pattern, a match too deep, or the context's
// end. Lua's C code unwinds the same way, with longjmp.
type patternError string

// matchState is one match of one pattern against one subject; it is used
// by a single goroutine.
type matchState struct {
	src, pat string
	ctx      context.Context // nil: never interrupted
	level    int             // captures open or closed so far
	capture  [maxCaptures]struct{ init, len int }
	depth    int
	steps    int
}

func newMatchState(L *lua.LState, src, pat string) *matchState {
	return &matchState{src: src, pat: pat, ctx: L.Context()}
}

// run calls f and turns a patternError raised inside into an error; any
// other panic (a Lua error of a gsub callback, say) goes on unwinding.
func (ms *matchState) run(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			pe, ok := r.(patternError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", string(pe))
		}
	}()
	f()
	return nil
}

func (ms *matchState) fail(msg string) { panic(patternError(msg)) }

// step counts one unit of matching work and, every patternCheckEvery of
// them, gives up if the call's context has ended.
func (ms *matchState) step() {
	ms.steps++
	if ms.steps%patternCheckEvery == 0 && ms.ctx != nil {
		if err := ms.ctx.Err(); err != nil {
			ms.fail("pattern matching interrupted: " + err.Error())
		}
	}
}

// at is the subject's byte at i, or 0 past its end (C strings end in NUL,
// which %f relies on).
func (ms *matchState) at(i int) byte {
	if i < len(ms.src) {
		return ms.src[i]
	}
	return 0
}

// patAt is the pattern's byte at i, or 0 past its end.
func (ms *matchState) patAt(i int) byte {
	if i < len(ms.pat) {
		return ms.pat[i]
	}
	return 0
}

// classEnd returns the index just past the single-character class that
// starts at p.
func (ms *matchState) classEnd(p int) int {
	c := ms.patAt(p)
	p++
	switch c {
	case '%':
		if p >= len(ms.pat) {
			ms.fail("malformed pattern (ends with '%')")
		}
		return p + 1
	case '[':
		if ms.patAt(p) == '^' {
			p++
		}
		for { // the first character is never the closing ']'
			if p >= len(ms.pat) {
				ms.fail("malformed pattern (missing ']')")
			}
			c := ms.pat[p]
			p++
			if c == '%' && p < len(ms.pat) {
				p++ // an escape such as %]
			}
			if ms.patAt(p) == ']' {
				return p + 1
			}
		}
	}
	return p
}

// matchClass reports whether c is in the class %cl (C locale).
func matchClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isAlpha(c)
	case 'c':
		res = c < 32 || c == 127
	case 'd':
		res = '0' <= c && c <= '9'
	case 'l':
		res = 'a' <= c && c <= 'z'
	case 'p':
		res = isPunct(c)
	case 's':
		res = c == ' ' || ('\t' <= c && c <= '\r')
	case 'u':
		res = 'A' <= c && c <= 'Z'
	case 'w':
		res = isAlpha(c) || ('0' <= c && c <= '9')
	case 'x':
		res = ('0' <= c && c <= '9') || ('a' <= c|0x20 && c|0x20 <= 'f')
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if 'A' <= cl && cl <= 'Z' {
		return !res
	}
	return res
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func isPunct(c byte) bool {
	return c > 32 && c < 127 && !isAlpha(c) && !('0' <= c && c <= '9')
}

// matchBracketClass reports whether c is in the set [...] from p (the '[')
// to ec (the ']').
func (ms *matchState) matchBracketClass(c byte, p, ec int) bool {
	sig := true
	if ms.patAt(p+1) == '^' {
		sig = false
		p++
	}
	for p++; p < ec; p++ {
		switch {
		case ms.pat[p] == '%':
			p++
			if matchClass(c, ms.patAt(p)) {
				return sig
			}
		case ms.patAt(p+1) == '-' && p+2 < ec:
			p += 2
			if ms.pat[p-2] <= c && c <= ms.pat[p] {
				return sig
			}
		case ms.pat[p] == c:
			return sig
		}
	}
	return !sig
}

// singleMatch reports whether the subject's byte at s matches the class
// from p to ep.
func (ms *matchState) singleMatch(s, p, ep int) bool {
	if s >= len(ms.src) {
		return false
	}
	c := ms.src[s]
	switch ms.pat[p] {
	case '.':
		return true
	case '%':
		return matchClass(c, ms.patAt(p+1))
	case '[':
		return ms.matchBracketClass(c, p, ep-1)
	}
	return ms.pat[p] == c
}

// match matches the pattern from p against the subject from s and returns
// the end of the match, or -1.
func (ms *matchState) match(s, p int) int {
	ms.depth++
	if ms.depth > maxMatchDepth {
		ms.fail("pattern too complex")
	}
	defer func() { ms.depth-- }()
	for {
		ms.step()
		if p >= len(ms.pat) {
			return s
		}
		switch ms.pat[p] {
		case '(':
			if ms.patAt(p+1) == ')' {
				return ms.startCapture(s, p+2, capPosition)
			}
			return ms.startCapture(s, p+1, capUnfinished)
		case ')':
			return ms.endCapture(s, p+1)
		case '$':
			if p+1 == len(ms.pat) {
				if s == len(ms.src) {
					return s
				}
				return -1
			}
		case '%':
			switch next := ms.patAt(p + 1); {
			case next == 'b':
				if s = ms.matchBalance(s, p+2); s < 0 {
					return -1
				}
				p += 4
				continue
			case next == 'f':
				p += 2
				if ms.patAt(p) != '[' {
					ms.fail("missing '[' after '%f' in pattern")
				}
				ep := ms.classEnd(p)
				prev := byte(0)
				if s > 0 {
					prev = ms.src[s-1]
				}
				if ms.matchBracketClass(prev, p, ep-1) || !ms.matchBracketClass(ms.at(s), p, ep-1) {
					return -1
				}
				p = ep
				continue
			case '0' <= next && next <= '9':
				if s = ms.matchCapture(s, next); s < 0 {
					return -1
				}
				p += 2
				continue
			}
		}
		// A single-character class, maybe followed by a quantifier.
		ep := ms.classEnd(p)
		m := ms.singleMatch(s, p, ep)
		switch ms.patAt(ep) {
		case '?':
			if m {
				if res := ms.match(s+1, ep+1); res >= 0 {
					return res
				}
			}
			p = ep + 1
			continue
		case '*':
			return ms.maxExpand(s, p, ep)
		case '+':
			if !m {
				return -1
			}
			return ms.maxExpand(s+1, p, ep)
		case '-':
			return ms.minExpand(s, p, ep)
		}
		if !m {
			return -1
		}
		s++
		p = ep
	}
}

func (ms *matchState) maxExpand(s, p, ep int) int {
	i := 0
	for ms.singleMatch(s+i, p, ep) {
		ms.step()
		i++
	}
	for ; i >= 0; i-- {
		if res := ms.match(s+i, ep+1); res >= 0 {
			return res
		}
	}
	return -1
}

func (ms *matchState) minExpand(s, p, ep int) int {
	for {
		if res := ms.match(s, ep+1); res >= 0 {
			return res
		}
		if !ms.singleMatch(s, p, ep) {
			return -1
		}
		s++
	}
}

func (ms *matchState) startCapture(s, p, what int) int {
	if ms.level >= maxCaptures {
		ms.fail("too many captures")
	}
	ms.capture[ms.level].init = s
	ms.capture[ms.level].len = what
	ms.level++
	res := ms.match(s, p)
	if res < 0 {
		ms.level--
	}
	return res
}

func (ms *matchState) endCapture(s, p int) int {
	l := -1
	for i := ms.level - 1; i >= 0; i-- {
		if ms.capture[i].len == capUnfinished {
			l = i
			break
		}
	}
	if l < 0 {
		ms.fail("invalid pattern capture")
	}
	ms.capture[l].len = s - ms.capture[l].init
	res := ms.match(s, p)
	if res < 0 {
		ms.capture[l].len = capUnfinished
	}
	return res
}

func (ms *matchState) matchBalance(s, p int) int {
	if p+1 >= len(ms.pat) {
		ms.fail("unbalanced pattern")
	}
	if s >= len(ms.src) || ms.src[s] != ms.pat[p] {
		return -1
	}
	b, e := ms.pat[p], ms.pat[p+1]
	cont := 1
	for s++; s < len(ms.src); s++ {
		ms.step()
		switch ms.src[s] {
		case e:
			if cont--; cont == 0 {
				return s + 1
			}
		case b:
			cont++
		}
	}
	return -1
}

// matchCapture matches a back reference %1-%9 to a closed capture.
func (ms *matchState) matchCapture(s int, digit byte) int {
	l := int(digit) - '1'
	if l < 0 || l >= ms.level || ms.capture[l].len == capUnfinished {
		ms.fail("invalid capture index")
	}
	c := ms.capture[l]
	if c.len == capPosition {
		return -1 // as in Lua 5.1, whose length check fails for it
	}
	if len(ms.src)-s >= c.len && ms.src[c.init:c.init+c.len] == ms.src[s:s+c.len] {
		return s + c.len
	}
	return -1
}

// captureValue is capture i of the match from s to e: the whole match
// when the pattern has no capture and i is 0.
func (ms *matchState) captureValue(i, s, e int) lua.LValue {
	if i >= ms.level {
		if i != 0 {
			ms.fail("invalid capture index")
		}
		return lua.LString(ms.src[s:e])
	}
	c := ms.capture[i]
	switch c.len {
	case capUnfinished:
		ms.fail("unfinished capture")
	case capPosition:
		return lua.LNumber(c.init + 1)
	}
	return lua.LString(ms.src[c.init : c.init+c.len])
}

// pushCaptures pushes the captures of the match from s to e (the whole
// match if there is none and wholeIfNone) and returns how many.
func (ms *matchState) pushCaptures(L *lua.LState, s, e int, wholeIfNone bool) int {
	n := ms.level
	if n == 0 && wholeIfNone {
		n = 1
	}
	for i := range n {
		L.Push(ms.captureValue(i, s, e))
	}
	return n
}

// raise turns a pattern error into the Lua error of function fn.
func raise(L *lua.LState, fn string, err error) {
	L.RaiseError("%s: %s", fn, err.Error())
}

// strFind is string.find.
func strFind(L *lua.LState) int { return findAux(L, "string.find", true) }

// strMatch is string.match.
func strMatch(L *lua.LState) int { return findAux(L, "string.match", false) }

func findAux(L *lua.LState, fn string, find bool) int {
	s := L.CheckString(1)
	p := L.CheckString(2)
	init := L.OptInt(3, 1)
	if init < 0 {
		init += len(s) + 1
	}
	init = min(max(init-1, 0), len(s))
	if find && (lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(p, patternSpecials)) {
		if i := strings.Index(s[init:], p); i >= 0 {
			L.Push(lua.LNumber(init + i + 1))
			L.Push(lua.LNumber(init + i + len(p)))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	anchor := strings.HasPrefix(p, "^")
	ms := newMatchState(L, s, strings.TrimPrefix(p, "^"))
	n := 0
	err := ms.run(func() {
		for s1 := init; ; s1++ {
			ms.level = 0
			if e := ms.match(s1, 0); e >= 0 {
				if find {
					L.Push(lua.LNumber(s1 + 1))
					L.Push(lua.LNumber(e))
					n = ms.pushCaptures(L, -1, -1, false) + 2
				} else {
					n = ms.pushCaptures(L, s1, e, true)
				}
				return
			}
			if s1 >= len(s) || anchor {
				return
			}
		}
	})
	if err != nil {
		raise(L, fn, err)
	}
	if n == 0 {
		L.Push(lua.LNil)
		return 1
	}
	return n
}

// strGmatch is string.gmatch: as in Lua 5.1, a leading '^' is an ordinary
// character.
func strGmatch(L *lua.LState) int {
	s := L.CheckString(1)
	p := L.CheckString(2)
	pos := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		ms := newMatchState(L, s, p)
		n := 0
		err := ms.run(func() {
			for ; pos <= len(s); pos++ {
				ms.level = 0
				if e := ms.match(pos, 0); e >= 0 {
					start := pos
					pos = e
					if e == start {
						pos++ // an empty match: go on from the next character
					}
					n = ms.pushCaptures(L, start, e, true)
					return
				}
			}
		})
		if err != nil {
			raise(L, "string.gmatch", err)
		}
		return n
	}))
	return 1
}

// gsub is string.gsub. It checks the result against the call's string
// budget as it grows, so a result that would not fit is refused before
// it is built.
func (st *state) gsub(L *lua.LState) int {
	src := L.CheckString(1)
	p := L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTTable, lua.LTFunction:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := L.OptInt(4, len(src)+1)
	anchor := strings.HasPrefix(p, "^")
	ms := newMatchState(L, src, strings.TrimPrefix(p, "^"))
	var b strings.Builder
	grow := func(n int) { st.precharge(L, "string.gsub", int64(b.Len())+int64(n)) }
	n := 0
	s := 0
	err := ms.run(func() {
		for n < maxN {
			ms.level = 0
			e := ms.match(s, 0)
			if e >= 0 {
				n++
				v := ms.replacement(L, repl, s, e)
				grow(len(v))
				b.WriteString(v)
			}
			switch {
			case e > s:
				s = e
			case s < len(src):
				grow(1)
				b.WriteByte(src[s])
				s++
			default:
				return
			}
			if anchor {
				return
			}
		}
	})
	if err != nil {
		raise(L, "string.gsub", err)
	}
	grow(len(src) - s)
	b.WriteString(src[s:])
	if n > 0 {
		st.charge(L, int64(b.Len()))
	}
	L.Push(lua.LString(b.String()))
	L.Push(lua.LNumber(n))
	return 2
}

// replacement is what gsub puts in place of the match from s to e.
func (ms *matchState) replacement(L *lua.LState, repl lua.LValue, s, e int) string {
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		return ms.expand(lua.LVAsString(r), s, e)
	case *lua.LTable:
		v = L.GetTable(r, ms.captureValue(0, s, e))
	case *lua.LFunction:
		top := L.GetTop()
		L.Push(r)
		L.Call(ms.pushCaptures(L, s, e, true), 1)
		v = L.Get(-1)
		L.SetTop(top)
	}
	switch v := v.(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return lua.LVAsString(v)
	}
	if !lua.LVAsBool(v) {
		return ms.src[s:e] // nil or false keeps the match
	}
	ms.fail(fmt.Sprintf("invalid replacement value (a %s)", v.Type().String()))
	return ""
}

// expand is a string replacement with its %0-%9 and %% filled in.
func (ms *matchState) expand(r string, s, e int) string {
	if !strings.Contains(r, "%") {
		return r
	}
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		c := r[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		switch d := byteOf(r, i); {
		case d == '0':
			b.WriteString(ms.src[s:e])
		case '1' <= d && d <= '9':
			switch v := ms.captureValue(int(d-'1'), s, e).(type) {
			case lua.LNumber:
				b.WriteString(strconv.Itoa(int(v)))
			default:
				b.WriteString(lua.LVAsString(v))
			}
		default:
			b.WriteByte(d)
		}
	}
	return b.String()
}

// byteOf is r[i], or 0 past its end: in Lua 5.1 a replacement ending in
// '%' adds the string's terminating NUL.
func byteOf(r string, i int) byte {
	if i < len(r) {
		return r[i]
	}
	return 0
}
