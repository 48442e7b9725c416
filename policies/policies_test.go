package policies

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/policy"
)

// load loads the example policy name, after applying replacements (pairs
// of old, new) to its source: that is how the tests turn the knobs an
// operator would edit. Every old string must be present.
func load(t *testing.T, name string, replacements ...string) *policy.Policy {
	t.Helper()
	src, err := FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for i := 0; i+1 < len(replacements); i += 2 {
		if !strings.Contains(s, replacements[i]) {
			t.Fatalf("%s does not contain %q", name, replacements[i])
		}
		s = strings.Replace(s, replacements[i], replacements[i+1], 1)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	l := zerolog.Nop()
	// A generous budget: these tests check decisions, and may run under
	// -race on a loaded machine.
	p, err := policy.Load(path, policy.Options{Logger: &l, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pinWith(t *testing.T, name string, md map[string]string) api.Pin {
	t.Helper()
	c, err := api.DecodeCid("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
	if err != nil {
		t.Fatal(err)
	}
	return api.PinWithOpts(c, api.PinOptions{Name: name, Metadata: md, ReplicationFactorMin: 2, ReplicationFactorMax: 3})
}

func peerID(i int) peer.ID {
	h, err := mh.Sum([]byte(fmt.Sprintf("example-peer-%d", i)), mh.SHA2_256, -1)
	if err != nil {
		panic(err)
	}
	return peer.ID(h)
}

// cands builds candidates from "region:pinqueue" specs ("" region = no
// tag); a trailing "*" marks a current allocation.
func cands(specs ...string) []policy.Candidate {
	out := make([]policy.Candidate, len(specs))
	for i, s := range specs {
		current := strings.HasSuffix(s, "*")
		s = strings.TrimSuffix(s, "*")
		region, queue, _ := strings.Cut(s, ":")
		var q int64
		fmt.Sscan(queue, &q)
		out[i] = policy.Candidate{ID: peerID(i), Peername: fmt.Sprintf("p%d", i), Tags: map[string]string{},
			PinQueue: q, FreeSpace: 1 << 40, Current: current}
		if region != "" {
			out[i].Tags["region"] = region
		}
	}
	return out
}

// order maps the answer back to candidate indexes.
func order(t *testing.T, c []policy.Candidate, ids []peer.ID) []int {
	t.Helper()
	var out []int
	for _, id := range ids {
		found := false
		for i := range c {
			if c[i].ID == id {
				out = append(out, i)
				found = true
			}
		}
		if !found {
			t.Fatalf("answer has unknown peer %s", id)
		}
	}
	return out
}

func same(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestExamplesPassCheck(t *testing.T) {
	want := map[string][]string{
		"regions.lua":   {"allocate"},
		"tiers.lua":     {"replication"},
		"admission.lua": {"admit"},
		"busy.lua":      {"allocate"},
		"retry.lua":     {"retry_priority"},
	}
	files, err := fs.Glob(FS, "*.lua")
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v, %v", files, err)
	}
	for _, f := range files {
		r, err := policy.Check(f)
		if err != nil || !r.OK {
			t.Errorf("%s: %v\n%s", f, err, policy.Describe(r))
			continue
		}
		var hooks []string
		for _, h := range r.Hooks {
			hooks = append(hooks, h.Hook)
		}
		if w, ok := want[f]; !ok || strings.Join(hooks, ",") != strings.Join(w, ",") {
			t.Errorf("%s defines %v, want %v", f, hooks, w)
		}
		src, _ := FS.ReadFile(f)
		if !strings.HasPrefix(string(src), "-- "+f+": ") {
			t.Errorf("%s does not start with its documented header", f)
		}
	}
}

func TestRegions(t *testing.T) {
	ctx := context.Background()
	p := load(t, "regions.lua")
	c := cands("eu:0", "eu:0", "eu:0", "us:0", "us:0", ":0", "ap:0", "ap:0")
	ids, err := p.Allocate(ctx, pinWith(t, "x", nil), c)
	if err != nil {
		t.Fatal(err)
	}
	// One per region first (eu, us, ap in order of appearance, untagged
	// last), then round-robin.
	if got := order(t, c, ids); !same(got, []int{0, 3, 6, 5, 1, 4, 7, 2}) {
		t.Errorf("order = %v", got)
	}

	p = load(t, "regions.lua", "local MIN_PER_REGION = 1", "local MIN_PER_REGION = 2")
	ids, err = p.Allocate(ctx, pinWith(t, "x", nil), c)
	if err != nil {
		t.Fatal(err)
	}
	if got := order(t, c, ids); !same(got, []int{0, 1, 3, 4, 6, 7, 5, 2}) {
		t.Errorf("order with 2 per region = %v", got)
	}

	p = load(t, "regions.lua", "local REQUIRED_REGIONS = {}", `local REQUIRED_REGIONS = { "eu", "mars" }`)
	ids, err = p.Allocate(ctx, pinWith(t, "x", nil), c)
	if err != nil || ids == nil || len(ids) != 0 {
		t.Errorf("missing required region: %v, %v; want an empty answer", ids, err)
	}
	p = load(t, "regions.lua", "local REQUIRED_REGIONS = {}", `local REQUIRED_REGIONS = { "eu", "ap" }`)
	if ids, err = p.Allocate(ctx, pinWith(t, "x", nil), c); err != nil || len(ids) != len(c) {
		t.Errorf("required regions present: %v, %v", ids, err)
	}
	if ids, err = p.Allocate(ctx, pinWith(t, "x", nil), nil); err != nil || len(ids) != 0 {
		t.Errorf("no candidates: %v, %v", ids, err)
	}
}

func TestTiers(t *testing.T) {
	ctx := context.Background()
	p := load(t, "tiers.lua")
	for _, tc := range []struct {
		md     map[string]string
		lo, hi int
	}{
		{map[string]string{"tier": "hot"}, 3, 5},
		{map[string]string{"tier": "cold"}, 1, 2},
		{map[string]string{"tier": "global"}, -1, -1},
		{map[string]string{"tier": "lukewarm"}, 0, 0},
		{nil, 0, 0},
	} {
		lo, hi, err := p.Replication(ctx, pinWith(t, "x", tc.md))
		if err != nil || lo != tc.lo || hi != tc.hi {
			t.Errorf("%v: %d, %d, %v; want %d, %d", tc.md, lo, hi, err, tc.lo, tc.hi)
		}
	}
}

func TestAdmission(t *testing.T) {
	ctx := context.Background()
	p := load(t, "admission.lua")
	good := func() map[string]string {
		return map[string]string{"owner": "alice", "team": "infra", "owner_pin_count": "10"}
	}
	with := func(k, v string) map[string]string {
		md := good()
		if v == "" {
			delete(md, k)
		} else {
			md[k] = v
		}
		return md
	}
	for _, tc := range []struct {
		name   string
		md     map[string]string
		reason string // "" = admitted
	}{
		{"backups/db", good(), ""},
		{"web/site", with("size", "20GiB"), ""},
		{"tmp/x", good(), "pin name must start with one of: backups/, datasets/, web/"},
		{"", good(), "pin name must start with one of"},
		{"datasets/a", with("owner", ""), "metadata owner is required"},
		{"datasets/a", with("team", ""), "metadata team is required"},
		{"datasets/a", with("size", "2TiB"), "declared size 2TiB is above the limit of 100GiB"},
		{"datasets/a", with("size", "huge"), `metadata size: invalid size "huge"`},
		{"datasets/a", with("owner_pin_count", ""), "metadata owner_pin_count is missing or not a number"},
		{"datasets/a", with("owner_pin_count", "lots"), "metadata owner_pin_count is missing or not a number"},
		{"datasets/a", with("owner_pin_count", "1000"), "owner alice has 1000 pins, the quota is 1000"},
		{"datasets/a", map[string]string{"owner": "archive-bot", "team": "x", "owner_pin_count": "5000"}, ""},
	} {
		ok, reason, err := p.Admit(ctx, pinWith(t, tc.name, tc.md))
		if err != nil {
			t.Errorf("%s %v: %v", tc.name, tc.md, err)
			continue
		}
		if tc.reason == "" {
			if !ok {
				t.Errorf("%s %v refused: %s", tc.name, tc.md, reason)
			}
			continue
		}
		if ok || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s %v: %v %q, want refusal %q", tc.name, tc.md, ok, reason, tc.reason)
		}
	}
}

func TestBusy(t *testing.T) {
	ctx := context.Background()
	p := load(t, "busy.lua")
	pin := pinWith(t, "x", nil)

	c := cands(":500", ":10", ":200", ":50", ":900*")
	ids, err := p.Allocate(ctx, pin, c)
	if err != nil {
		t.Fatal(err)
	}
	// Calm peers in the built-in order; the current holder stays.
	if got := order(t, c, ids); !same(got, []int{1, 3, 4}) {
		t.Errorf("order = %v", got)
	}

	// Too few calm peers for replication_min 3: the least busy come back.
	pin.ReplicationFactorMin = 3
	c = cands(":500", ":10", ":200", ":300", ":200")
	ids, err = p.Allocate(ctx, pin, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := order(t, c, ids); !same(got, []int{1, 2, 4}) {
		t.Errorf("order when busy = %v", got)
	}

	pin.ReplicationFactorMin, pin.ReplicationFactorMax = -1, -1
	if ids, err := p.Allocate(ctx, pin, c); ids != nil || err != nil {
		t.Errorf("everywhere: %v, %v; want no answer", ids, err)
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	p := load(t, "retry.lua")
	pin := pinWith(t, "x", nil)
	for _, tc := range []struct {
		attempts int
		err      string
		want     policy.Retry
	}{
		{1, "context deadline exceeded", policy.Retry{Class: policy.RetryPriority}},
		{2, "timeout", policy.Retry{Class: policy.RetryNormal, Delay: 30 * time.Second}},
		{3, "timeout", policy.Retry{Class: policy.RetryNormal, Delay: time.Minute}},
		{7, "timeout", policy.Retry{Class: policy.RetryNormal, Delay: 16 * time.Minute}},
		{8, "timeout", policy.Retry{Class: policy.RetryFailed}},
		{1, "Invalid CID: bad multihash", policy.Retry{Class: policy.RetryFailed}},
	} {
		r, err := p.RetryPriority(ctx, pin, tc.attempts, tc.err)
		if err != nil || r != tc.want {
			t.Errorf("attempt %d %q: %+v, %v; want %+v", tc.attempts, tc.err, r, err, tc.want)
		}
	}

	// The delay stops doubling at MAX_DELAY.
	p = load(t, "retry.lua", "local MAX_ATTEMPTS = 8", "local MAX_ATTEMPTS = 100")
	r, err := p.RetryPriority(ctx, pin, 40, "timeout")
	if err != nil || r != (policy.Retry{Class: policy.RetryNormal, Delay: 6 * time.Hour}) {
		t.Errorf("capped delay: %+v, %v", r, err)
	}
}

// Every example answers a dry run without errors, the way `policy test`
// runs it.
func TestExamplesDryRun(t *testing.T) {
	files, _ := fs.Glob(FS, "*.lua")
	pin := pinWith(t, "backups/x", map[string]string{"owner": "a", "team": "b", "owner_pin_count": "1", "tier": "hot"})
	for _, f := range files {
		p := load(t, f)
		r := policy.DryRun(context.Background(), p, pin, cands("eu:0", "us:500", ":1"))
		if !r.OK {
			t.Errorf("%s:\n%s", f, policy.Describe(r))
		}
		for _, res := range r.Results {
			if res.Error != "" {
				t.Errorf("%s: %s: %v", f, res.Hook, errors.New(res.Error))
			}
		}
	}
}
