package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestLoadRecordsHooksHashAndPath(t *testing.T) {
	src := "-- two hooks\nfunction admit(pin) return true end\n\nfunction allocate(pin, c) return nil end\n"
	path := writePolicy(t, src)
	p, err := Load(path, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(src))
	if p.Hash() != hex.EncodeToString(sum[:]) {
		t.Errorf("Hash = %s", p.Hash())
	}
	if p.Path() != path {
		t.Errorf("Path = %s", p.Path())
	}
	want := map[Hook]bool{HookAdmit: true, HookAllocate: true}
	for _, h := range Hooks() {
		if p.Has(h) != want[h] {
			t.Errorf("Has(%s) = %v", h, p.Has(h))
		}
	}
	if p.defined[HookAllocate] != "policy.lua:4" {
		t.Errorf("allocate defined at %q", p.defined[HookAllocate])
	}
	if got := strings.Join(p.HookNames(), ","); got != "admit,allocate" {
		t.Errorf("HookNames = %s", got)
	}
}

func TestNilPolicyIsBuiltIn(t *testing.T) {
	var p *Policy
	ctx := context.Background()
	pin := testPin(t)
	if ok, _, err := p.Admit(ctx, pin); !ok || err != nil {
		t.Errorf("Admit = %v, %v", ok, err)
	}
	if lo, hi, err := p.Replication(ctx, pin); lo != 0 || hi != 0 || err != nil {
		t.Errorf("Replication = %d, %d, %v", lo, hi, err)
	}
	if ids, err := p.Allocate(ctx, pin, testCandidates(3)); ids != nil || err != nil {
		t.Errorf("Allocate = %v, %v", ids, err)
	}
	if r, err := p.RetryPriority(ctx, pin, 1, "x"); r != (Retry{}) || err != nil {
		t.Errorf("RetryPriority = %v, %v", r, err)
	}
	if p.Hash() != "" || p.Path() != "" || p.Has(HookAdmit) {
		t.Error("nil policy has a hash, path or hook")
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"syntax", "local a = 1\n\nx = = 1\n", []string{"policy.lua:3:", "syntax error"}},
		{"unclosed", "function admit(pin)\n  return true\n", []string{"policy.lua", "end of file"}},
		{"top level error", "local x = 1\nerror('no config')\n", []string{"policy.lua:2:", "no config"}},
		{"hook not a function", "admit = true\n", []string{"global admit is a boolean, want a function"}},
		{"endless top level", "while true do end\n", []string{"policy.lua: top level did not finish within"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Logger: quiet()}
			if tc.name == "endless top level" {
				opts.InitTimeout = 50 * time.Millisecond
			}
			_, err := Load(writePolicy(t, tc.src), opts)
			wantErrContains(t, err, tc.want...)
		})
	}
}

func TestAdmitReturns(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		body   string
		ok     bool
		reason string
		err    []string
	}{
		{"true", "return true", true, "", nil},
		{"false with reason", `return false, "no name"`, false, "no name", nil},
		{"false alone", "return false", false, "refused by policy", nil},
		{"false with nil reason", "return false, nil", false, "refused by policy", nil},
		{"blank reason", `return false, "  "`, false, "refused by policy", nil},
		{"string", `return "yes"`, false, "", []string{`admit returned string "yes", want boolean (policy.lua:2)`}},
		{"nothing", "return", false, "", []string{"admit returned nothing", "(policy.lua:2)"}},
		{"nil", "return nil", false, "", []string{"admit returned nil, want boolean"}},
		{"number reason", "return false, 3", false, "", []string{"admit returned false with number 3 as reason, want a string"}},
		{"table", "return {}", false, "", []string{"admit returned a table, want boolean"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustLoad(t, "-- admit\nfunction admit(pin)\n  "+tc.body+"\nend\n")
			ok, reason, err := p.Admit(ctx, testPin(t))
			if tc.err != nil {
				wantErrContains(t, err, tc.err...)
				if !errors.Is(err, ErrBadReturn) {
					t.Errorf("error %v is not ErrBadReturn", err)
				}
				if ok {
					t.Error("admitted on error: admission must fail closed")
				}
				return
			}
			if err != nil || ok != tc.ok || reason != tc.reason {
				t.Errorf("Admit = %v, %q, %v; want %v, %q", ok, reason, err, tc.ok, tc.reason)
			}
		})
	}
}

func TestAdmitLongReasonIsTruncated(t *testing.T) {
	p := mustLoad(t, `function admit(pin) return false, string.rep("x", 5000) end`)
	_, reason, err := p.Admit(context.Background(), testPin(t))
	if err != nil || len(reason) != maxReason+3 {
		t.Errorf("reason of %d bytes, %v", len(reason), err)
	}
	// So is the message of an error the hook raises.
	p = mustLoad(t, `function admit(pin) error(string.rep("E", 200000)) end`)
	if _, _, err = p.Admit(context.Background(), testPin(t)); err == nil || len(err.Error()) > maxReason+100 {
		t.Errorf("error of %d bytes", len(errString(err)))
	}
}

func TestPinTable(t *testing.T) {
	pin := testPin(t)
	pin.ReplicationFactorMin, pin.ReplicationFactorMax = 2, 4
	pin.UserAllocations = []peer.ID{testPeer(1), testPeer(2)}
	pin.ExpireAt = time.Unix(1700000000, 0)
	p := mustLoad(t, `
function admit(pin)
  assert(pin.cid == "`+testCid+`", "cid " .. pin.cid)
  assert(pin.name == "backups/db-1")
  assert(pin.mode == "recursive")
  assert(pin.replication_min == 2 and pin.replication_max == 4)
  assert(pin.metadata.tier == "hot")
  assert(#pin.user_allocations == 2 and pin.user_allocations[1] == "`+testPeer(1).String()+`")
  assert(#pin.origins == 0)
  assert(pin.expire_at == 1700000000)
  return true
end`)
	if ok, _, err := p.Admit(context.Background(), pin); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
	// No expiry and no metadata: expire_at is nil, metadata an empty table.
	pin.ExpireAt, pin.Metadata = time.Time{}, nil
	p = mustLoad(t, `function admit(pin) return pin.expire_at == nil and next(pin.metadata) == nil end`)
	if ok, _, err := p.Admit(context.Background(), pin); !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
}

func TestReplicationReturns(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		body   string
		lo, hi int
		err    []string
	}{
		{"return 3, 5", 3, 5, nil},
		{"return 1, 1", 1, 1, nil},
		{"return -1, -1", -1, -1, nil},
		{"return nil", 0, 0, nil},
		{"return", 0, 0, nil},
		{"return 0, 0", 0, 0, nil},
		{"return 5, 3", 0, 0, []string{"replication returned min 5, max 3; want 1 <= min <= max", "(policy.lua:1)"}},
		{"return 0, 2", 0, 0, []string{"min 0, max 2"}},
		{"return -1, 3", 0, 0, []string{"min -1, max 3"}},
		{"return 2.5, 3", 0, 0, []string{"replication returned number 2.5 as min, want an integer"}},
		{`return "3", 5`, 0, 0, []string{`replication returned string "3" as min`}},
		{"return 3", 0, 0, []string{"replication returned nil as max"}},
		{"return 3, {}", 0, 0, []string{"replication returned a table as max"}},
	} {
		t.Run(tc.body, func(t *testing.T) {
			p := mustLoad(t, "function replication(pin) "+tc.body+" end")
			lo, hi, err := p.Replication(ctx, testPin(t))
			if tc.err != nil {
				wantErrContains(t, err, tc.err...)
				if !errors.Is(err, ErrBadReturn) {
					t.Errorf("error %v is not ErrBadReturn", err)
				}
				if lo != 0 || hi != 0 {
					t.Errorf("factors %d, %d on error, want 0, 0", lo, hi)
				}
				return
			}
			if err != nil || lo != tc.lo || hi != tc.hi {
				t.Errorf("Replication = %d, %d, %v; want %d, %d", lo, hi, err, tc.lo, tc.hi)
			}
		})
	}
}

func TestAllocateReturns(t *testing.T) {
	ctx := context.Background()
	cands := testCandidates(4, "eu", "us")
	for _, tc := range []struct {
		name string
		body string
		want []int // candidate indexes; nil = no answer
		err  []string
	}{
		{"ids reversed", "local out = {} for i = #c, 1, -1 do out[#out+1] = c[i].id end return out", []int{3, 2, 1, 0}, nil},
		{"candidate tables", "return { c[2], c[1] }", []int{1, 0}, nil},
		{"subset", "return { c[3].id }", []int{2}, nil},
		{"empty", "return {}", []int{}, nil},
		{"nil", "return nil", nil, nil},
		{"unknown", `return { c[1].id, "QmNotACandidate", "garbage" }`, nil,
			[]string{`allocate returned peers that are not candidates: "QmNotACandidate" (index 2), "garbage" (index 3)`}},
		{"duplicate", "return { c[1].id, c[2].id, c[1].id }", nil,
			[]string{"allocate returned duplicate peers:", "(indexes 1 and 3)"}},
		{"not a table", `return "x"`, nil, []string{`allocate returned string "x", want an array of peer ids`}},
		{"hash key", `return { c[1].id, extra = 1 }`, nil, []string{`allocate returned a table with key string "extra"`}},
		{"hole", `return { c[1].id, nil, c[2].id }`, nil, []string{"allocate returned nil at index 2"}},
		{"number element", `return { 7 }`, nil, []string{"allocate returned number 7 at index 1, want a peer id string or a candidate table"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustLoad(t, "function allocate(pin, c) "+tc.body+" end")
			ids, err := p.Allocate(ctx, testPin(t), cands)
			if tc.err != nil {
				wantErrContains(t, err, tc.err...)
				if !errors.Is(err, ErrBadReturn) {
					t.Errorf("error %v is not ErrBadReturn", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if ids != nil {
					t.Fatalf("ids = %v, want nil (no answer)", ids)
				}
				return
			}
			if ids == nil || len(ids) != len(tc.want) {
				t.Fatalf("ids = %v, want %d", ids, len(tc.want))
			}
			for i, ci := range tc.want {
				if ids[i] != cands[ci].ID {
					t.Errorf("ids[%d] = %s, want candidate %d", i, ids[i], ci)
				}
			}
		})
	}
}

func TestCandidateTable(t *testing.T) {
	cands := testCandidates(2, "eu")
	cands[1].Current, cands[1].Priority = true, true
	p := mustLoad(t, `
function allocate(pin, c)
  assert(#c == 2)
  local b = c[2]
  assert(b.id == "`+cands[1].ID.String()+`")
  assert(b.peername == "peer1")
  assert(b.tags.region == "eu")
  assert(b.freespace == `+itoa(cands[1].FreeSpace)+`)
  assert(b.pinqueue == 10 and b.numpin == 100)
  assert(b.current == true and b.priority == true)
  assert(c[1].current == false and c[1].priority == false)
  return nil
end`)
	if _, err := p.Allocate(context.Background(), testPin(t), cands); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRetryPriorityReturns(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		body string
		want Retry
		err  []string
	}{
		{`return "priority"`, Retry{Class: RetryPriority}, nil},
		{`return "normal", 30`, Retry{Class: RetryNormal, Delay: 30 * time.Second}, nil},
		{`return "normal", 0.25`, Retry{Class: RetryNormal, Delay: 250 * time.Millisecond}, nil},
		{`return "failed"`, Retry{Class: RetryFailed}, nil},
		{`return "normal", 1e12`, Retry{Class: RetryNormal, Delay: MaxRetryDelay}, nil},
		{`return "normal", nil`, Retry{Class: RetryNormal}, nil},
		{`return nil`, Retry{}, nil},
		{`return "later"`, Retry{}, []string{`retry_priority returned string "later", want "priority", "normal" or "failed"`}},
		{`return "normal", -1`, Retry{}, []string{"retry_priority returned number -1 as delay, want seconds >= 0"}},
		{`return "normal", 0/0`, Retry{}, []string{"as delay, want seconds >= 0"}},
		{`return "normal", "30s"`, Retry{}, []string{`retry_priority returned string "30s" as delay, want a number of seconds`}},
		{`return true`, Retry{}, []string{"retry_priority returned boolean true"}},
	} {
		t.Run(tc.body, func(t *testing.T) {
			p := mustLoad(t, "function retry_priority(pin, attempts, err)\n"+
				"  assert(attempts == 2 and err == 'dial backoff')\n  "+tc.body+"\nend")
			r, err := p.RetryPriority(ctx, testPin(t), 2, "dial backoff")
			if tc.err != nil {
				wantErrContains(t, err, tc.err...)
				if !errors.Is(err, ErrBadReturn) {
					t.Errorf("error %v is not ErrBadReturn", err)
				}
				return
			}
			if err != nil || r != tc.want {
				t.Errorf("RetryPriority = %+v, %v; want %+v", r, err, tc.want)
			}
		})
	}
}

func TestRuntimeErrorsNameFileAndLine(t *testing.T) {
	p := mustLoad(t, "function admit(pin)\n  local t = nil\n  return t.x\nend\n"+
		"function replication(pin)\n  error('tier table broken')\nend\n"+
		"function allocate(pin, c)\n  return frobnicate(c)\nend\n")
	ctx := context.Background()
	_, _, err := p.Admit(ctx, testPin(t))
	wantErrContains(t, err, "admit: policy.lua:3:")
	if !errors.Is(err, ErrRuntime) {
		t.Errorf("%v is not ErrRuntime", err)
	}
	var he *HookError
	if !errors.As(err, &he) || he.Hook != HookAdmit {
		t.Errorf("%v is not a HookError of admit", err)
	}
	_, _, err = p.Replication(ctx, testPin(t))
	wantErrContains(t, err, "replication: policy.lua:6: tier table broken")
	_, err = p.Allocate(ctx, testPin(t), testCandidates(2))
	wantErrContains(t, err, "allocate: policy.lua:9:", "does not exist")
}

// A state whose call raised an error is discarded, never reused: the next
// call runs on a state fresh from the top level.
func TestErroredStateIsDiscarded(t *testing.T) {
	p := mustLoad(t, `
calls = 0
function admit(pin)
  calls = calls + 1
  if calls == 1 then error("first call fails") end
  return true
end`, Options{PoolSize: 1})
	for range 3 {
		_, _, err := p.Admit(context.Background(), testPin(t))
		wantErrContains(t, err, "first call fails")
	}
}

// A malformed return leaves the state as clean as any successful call, so
// the state is kept.
func TestBadReturnKeepsState(t *testing.T) {
	p := mustLoad(t, `
calls = 0
function admit(pin)
  calls = calls + 1
  if calls == 1 then return "oops" end
  return true
end`, Options{PoolSize: 1})
	if _, _, err := p.Admit(context.Background(), testPin(t)); !errors.Is(err, ErrBadReturn) {
		t.Fatalf("first call: %v", err)
	}
	if ok, _, err := p.Admit(context.Background(), testPin(t)); !ok || err != nil {
		t.Fatalf("second call = %v, %v", ok, err)
	}
}

func TestStatesAreRecycled(t *testing.T) {
	p := mustLoad(t, `
calls = 0
function replication(pin)
  calls = calls + 1
  return calls, calls
end`, Options{PoolSize: 1, MaxCallsPerState: 3})
	var got []int
	for range 7 {
		lo, _, err := p.Replication(context.Background(), testPin(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, lo)
	}
	// The validation state served the first three calls.
	want := []int{1, 2, 3, 1, 2, 3, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("calls seen = %v, want %v", got, want)
		}
	}
}

func TestConcatSemantics(t *testing.T) {
	p := mustLoad(t, `
local mt = { __concat = function(a, b)
  local x = type(a) == "table" and a.v or a
  local y = type(b) == "table" and b.v or b
  return x .. "+" .. y
end }
local obj = setmetatable({ v = "obj" }, mt)
local function tail(a, b) return a .. b end
function admit(pin)
  assert(1 .. 2 == "12")
  assert("a" .. 1.5 == "a1.5")
  assert("x" .. obj == "x+obj", "x" .. obj)
  assert(obj .. "y" == "obj+y")
  assert("a" .. "b" .. obj .. "c" == "abobj+c", "a" .. "b" .. obj .. "c")
  assert(tail("p", "q") == "pq")
  local parts = {}
  for i = 1, 3 do parts[#parts + 1] = "n" .. i end
  return true, table.concat(parts, ",")
end
function replication(pin)
  local s = "x" .. nil
end`)
	ok, _, err := p.Admit(context.Background(), testPin(t))
	if !ok || err != nil {
		t.Fatalf("Admit = %v, %v", ok, err)
	}
	_, _, err = p.Replication(context.Background(), testPin(t))
	wantErrContains(t, err, "policy.lua:21: attempt to concatenate a nil value")
}

func TestCallerContext(t *testing.T) {
	p := mustLoad(t, "function admit(pin) while true do end end")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := p.Admit(ctx, testPin(t))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrTimeout and context.Canceled", err)
	}
	wantErrContains(t, err, "admit: canceled by the caller")
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("does-not-exist.lua", Options{Logger: quiet()})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

// Candidate tables are reused between calls on a state; whatever a hook
// did to them, the next call must see exactly the new candidates.
func TestCandidateTablesReusedSafely(t *testing.T) {
	p := mustLoad(t, `
function allocate(pin, c)
  local want = pin.metadata
  assert(#c == tonumber(want.n), "count " .. #c)
  for i = 1, #c do
    local x = c[i]
    assert(x.rank == nil, "stale rank on " .. i)
    assert(x.pinqueue == tonumber(want["q" .. i]), "pinqueue " .. i .. " = " .. tostring(x.pinqueue))
    assert(x.tags.region == want["r" .. i], "region " .. i .. " = " .. tostring(x.tags.region))
    assert(x.tags.rack == want["k" .. i], "rack " .. i .. " = " .. tostring(x.tags.rack))
    assert(x.tags.extra == nil, "stale extra tag on " .. i)
    assert(x.current == (want["c" .. i] == "1"), "current " .. i)
    -- Scribble on everything.
    x.rank = i
    x.pinqueue = -1
    x.current = "nope"
    x.tags.extra = "x"
    x.tags.region = nil
  end
  c.extra = true
  return nil
end`, Options{PoolSize: 1})
	ctx := context.Background()
	check := func(cands []Candidate) {
		t.Helper()
		pin := testPin(t)
		pin.Metadata = map[string]string{"n": strconv.Itoa(len(cands))}
		for i, c := range cands {
			n := strconv.Itoa(i + 1)
			pin.Metadata["q"+n] = strconv.FormatInt(c.PinQueue, 10)
			if r, ok := c.Tags["region"]; ok {
				pin.Metadata["r"+n] = r
			}
			if r, ok := c.Tags["rack"]; ok {
				pin.Metadata["k"+n] = r
			}
			if c.Current {
				pin.Metadata["c"+n] = "1"
			}
		}
		if _, err := p.Allocate(ctx, pin, cands); err != nil {
			t.Fatal(err)
		}
	}
	a := testCandidates(3, "eu", "us")
	check(a)
	check(a) // same input after scribbling
	b := testCandidates(5, "ap")
	b[1].Tags["rack"] = "r1"
	b[2].Current = true
	check(b)
	c := testCandidates(2)
	check(c) // fewer candidates, tags gone
	b[1].Tags = map[string]string{"rack": "r2"}
	check(b)
}
