package policy

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

const fullPolicy = `-- every hook
function admit(pin)
  if pin.metadata.owner == nil then
    return false, "owner required"
  end
  return true
end

function replication(pin)
  if pin.metadata.tier == "hot" then return 3, 5 end
  return nil
end

function allocate(pin, candidates)
  local out = {}
  for i = #candidates, 1, -1 do out[#out + 1] = candidates[i].id end
  return out
end

function retry_priority(pin, attempts, err)
  if attempts > 3 then return "failed" end
  return "normal", 30 * attempts
end
`

func TestCheckOK(t *testing.T) {
	path := writePolicy(t, fullPolicy)
	r, err := Check(path)
	if err != nil || !r.OK {
		t.Fatalf("Check = %+v, %v", r, err)
	}
	want := []HookDef{{"admit", "policy.lua:2"}, {"replication", "policy.lua:9"}, {"allocate", "policy.lua:14"}, {"retry_priority", "policy.lua:20"}}
	if len(r.Hooks) != len(want) {
		t.Fatalf("hooks = %+v", r.Hooks)
	}
	for i := range want {
		if r.Hooks[i] != want[i] {
			t.Errorf("hook %d = %+v, want %+v", i, r.Hooks[i], want[i])
		}
	}
	if len(r.SHA256) != 64 {
		t.Errorf("sha256 = %q", r.SHA256)
	}
	out := Describe(r)
	for _, s := range []string{"hooks           admit (policy.lua:2), replication (policy.lua:9)", "status          ok"} {
		if !strings.Contains(out, s) {
			t.Errorf("Describe lacks %q:\n%s", s, out)
		}
	}
}

func TestCheckProblems(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		field     func(Report) string
		want      string
	}{
		{"syntax", "function admit(pin)\n  return = 1\nend", func(r Report) string { return r.Syntax }, "policy.lua:2:"},
		{"load", "local cfg = nil\nlocal x = cfg.value", func(r Report) string { return r.LoadError }, "policy.lua:2:"},
		{"violation", "\nos.exit(1)", func(r Report) string { return r.Violations[0].Message }, "policy.lua:2: os.exit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Check(writePolicy(t, tc.src))
			if err == nil || r.OK {
				t.Fatalf("Check = %+v, %v", r, err)
			}
			if got := tc.field(r); !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if !strings.Contains(Describe(r), "status          FAILED") {
				t.Errorf("Describe:\n%s", Describe(r))
			}
		})
	}
	r, err := Check("no-such-policy.lua")
	if err == nil || r.OK || !strings.Contains(r.LoadError, "no-such-policy.lua") {
		t.Errorf("missing file: %+v, %v", r, err)
	}
}

func TestDryRun(t *testing.T) {
	p := mustLoad(t, fullPolicy)
	pin := testPin(t)
	cands := testCandidates(3)
	r := DryRunWith(context.Background(), p, DryRunInput{Pin: pin, Candidates: cands, Attempts: 2, LastError: "timeout"})
	if !r.OK || len(r.Results) != 4 {
		t.Fatalf("report = %+v", r)
	}
	want := []string{
		"admitted",
		"min 3, max 5",
		cands[2].ID.String() + ", " + cands[1].ID.String() + ", " + cands[0].ID.String() + " (3 of 3 candidates)",
		`normal, retry after 1m0s (attempt 2, error "timeout")`,
	}
	for i, w := range want {
		if r.Results[i].Summary != w || !r.Results[i].Defined || r.Results[i].Error != "" {
			t.Errorf("result %d = %+v, want %q", i, r.Results[i], w)
		}
	}
	out := Describe(r)
	for _, line := range []string{"admit           admitted", "replication     min 3, max 5", "retry_priority  normal, retry after 1m0s"} {
		if !strings.Contains(out, line) {
			t.Errorf("Describe lacks %q:\n%s", line, out)
		}
	}
	// The report encodes as JSON for scripts.
	b, err := json.Marshal(r)
	if err != nil || !strings.Contains(string(b), `"answer":{"max":5,"min":3}`) {
		t.Errorf("JSON = %s, %v", b, err)
	}

	// Refusal and default answers.
	pin.Metadata = nil
	r = DryRun(context.Background(), p, pin, nil)
	if r.Results[0].Summary != "refused: owner required" || r.Results[1].Summary != "no answer: the configured default applies" {
		t.Errorf("results = %+v", r.Results)
	}
	if r.Results[2].Summary != "no peer accepted (0 of 0 candidates)" {
		t.Errorf("allocate = %+v", r.Results[2])
	}
}

func TestDryRunReportsErrorsAndMissingHooks(t *testing.T) {
	p := mustLoad(t, `function admit(pin) return "yes" end`)
	r := DryRun(context.Background(), p, testPin(t), nil)
	if r.OK {
		t.Fatal("report OK despite a failing hook")
	}
	a := r.Results[0]
	// The daemon refuses the pin when admit fails: the report says so.
	if a.ErrorKind != "bad_return" || !strings.Contains(a.Error, `admit returned string "yes", want boolean (policy.lua:1)`) ||
		a.Summary != "admission fails closed (the pin is refused)" {
		t.Errorf("admit = %+v", a)
	}
	for _, res := range r.Results[1:] {
		if res.Defined || !strings.HasPrefix(res.Summary, "not defined: ") {
			t.Errorf("%s = %+v", res.Hook, res)
		}
	}
	out := Describe(r)
	if !strings.Contains(out, "admit           ERROR (bad_return): admit returned string") {
		t.Errorf("Describe:\n%s", out)
	}

	// A nil policy: everything built-in, and OK.
	r = DryRun(context.Background(), nil, testPin(t), nil)
	if !r.OK || len(r.Results) != 4 || r.Results[0].Summary != "not defined: built-in admission (the pin is admitted)" {
		t.Errorf("nil policy report = %+v", r)
	}
}

func TestParsePinAndCandidates(t *testing.T) {
	pin, err := ParsePin([]byte(`{"cid": "` + testCid + `", "name": "x", "replication_factor_min": 2,
		"replication_factor_max": 3, "metadata": {"tier": "hot"}, "mode": "direct",
		"expire_at": "2030-01-02T03:04:05Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if pin.Cid.String() != testCid || pin.ReplicationFactorMin != 2 || pin.Metadata["tier"] != "hot" ||
		pin.Mode.String() != "direct" || pin.ExpireAt.Year() != 2030 {
		t.Errorf("pin = %+v", pin)
	}
	for _, bad := range []string{`{"replication_min": 2}`, `{"cid": "nope"}`, `[]`, `{} {}`, ``} {
		if _, err := ParsePin([]byte(bad)); err == nil {
			t.Errorf("ParsePin(%q) succeeded", bad)
		}
	}

	id0, id1 := testPeer(0).String(), testPeer(1).String()
	cands, err := ParseCandidates([]byte(`[
		{"id": "` + id0 + `", "peername": "a", "tags": {"region": "eu"}, "freespace": 100, "pinqueue": 2, "numpin": 3, "current": true},
		{"id": "` + id1 + `", "priority": true}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != 2 || cands[0].ID != testPeer(0) || cands[0].Tags["region"] != "eu" || !cands[0].Current ||
		cands[0].FreeSpace != 100 || !cands[1].Priority {
		t.Errorf("cands = %+v", cands)
	}
	for _, bad := range []string{
		`[{"id": "peer1"}]`,
		`[{"peername": "a"}]`,
		`[{"id": "` + id0 + `"}, {"id": "` + id0 + `"}]`,
		`[{"id": "` + id0 + `", "free": 1}]`,
		`{}`,
	} {
		if _, err := ParseCandidates([]byte(bad)); err == nil {
			t.Errorf("ParseCandidates(%q) succeeded", bad)
		}
	}
}

// FuzzDryRunJSON feeds arbitrary pin and candidate JSON through the CLI
// path: parsing must fail cleanly or the dry run must complete, with every
// hook answering or failing with a message, never panicking.
func FuzzDryRunJSON(f *testing.F) {
	id0, id1 := testPeer(0).String(), testPeer(1).String()
	f.Add(`{"cid": "`+testCid+`", "name": "backups/a", "metadata": {"tier": "hot", "owner": "bob"}}`,
		`[{"id": "`+id0+`", "tags": {"region": "eu"}}, {"id": "`+id1+`", "pinqueue": 500}]`)
	f.Add(`{"cid": null, "replication_factor_min": -1, "replication_factor_max": -1}`, `[]`)
	f.Add(`{"name": "\u0000\ufffd", "metadata": {"": ""}, "user_allocations": ["`+id1+`"]}`, `null`)
	f.Add(`{"expire_at": "2001-01-01T00:00:00Z", "mode": "direct"}`, `[{"id": "`+id0+`", "freespace": -1e18}]`)
	f.Add(`{`, `[{"id": 1}]`)

	dir := f.TempDir()
	path := dir + "/policy.lua"
	src := fullPolicy + `
local tags = require("tags")
local size = require("size")
local cid = require("cid")
local prev = allocate
function allocate(pin, c)
  local _ = tags.spread(c, "region")
  local _ = cid.info(pin.cid)
  local _ = size.parse(pin.metadata.size or "1GiB")
  return prev(pin, c)
end`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		f.Fatal(err)
	}
	p, err := Load(path, Options{Logger: quiet(), Timeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pinJSON, candsJSON string) {
		pin, err := ParsePin([]byte(pinJSON))
		if err != nil {
			return
		}
		cands, err := ParseCandidates([]byte(candsJSON))
		if err != nil {
			return
		}
		r := DryRun(context.Background(), p, pin, cands)
		if len(r.Results) != 4 {
			t.Fatalf("%d results", len(r.Results))
		}
		for _, res := range r.Results {
			if res.Summary == "" {
				t.Fatalf("%s: empty summary", res.Hook)
			}
			if res.Error != "" && res.ErrorKind == "" {
				t.Fatalf("%s: error without kind", res.Hook)
			}
		}
		if r.Results[2].Error == "" && r.Results[2].Answer != nil {
			if ids := r.Results[2].Answer.([]string); len(ids) != len(cands) {
				t.Fatalf("allocate returned %d of %d candidates", len(ids), len(cands))
			}
		}
		_ = Describe(r)
	})
}
