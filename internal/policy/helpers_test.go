package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

const testCid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"

// writePolicy writes src as policy.lua in a fresh folder, plus extra files
// (name -> content) beside it, and returns the policy's path.
func writePolicy(t testing.TB, src string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i+1 < len(extra); i += 2 {
		p := filepath.Join(dir, extra[i])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(extra[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "policy.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func quiet() *zerolog.Logger {
	l := zerolog.Nop()
	return &l
}

// testTimeout is the hook budget of tests that do not test time-outs:
// generous, so that a loaded machine or -race cannot make them flaky.
const testTimeout = 5 * time.Second

func mustLoad(t testing.TB, src string, opts ...Options) *Policy {
	t.Helper()
	o := Options{}
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Logger == nil {
		o.Logger = quiet()
	}
	if o.Timeout == 0 {
		o.Timeout = testTimeout
	}
	p, err := Load(writePolicy(t, src), o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

func testPin(t testing.TB) api.Pin {
	t.Helper()
	c, err := api.DecodeCid(testCid)
	if err != nil {
		t.Fatal(err)
	}
	return api.PinWithOpts(c, api.PinOptions{
		Name:     "backups/db-1",
		Metadata: map[string]string{"tier": "hot", "owner": "alice", "team": "infra", "owner_pin_count": "3"},
	})
}

// testPeer returns a deterministic, valid peer ID.
func testPeer(i int) peer.ID {
	h, err := mh.Sum([]byte(fmt.Sprintf("peer-%d", i)), mh.SHA2_256, -1)
	if err != nil {
		panic(err)
	}
	return peer.ID(h)
}

func testCandidates(n int, regions ...string) []Candidate {
	out := make([]Candidate, n)
	for i := range out {
		out[i] = Candidate{
			ID:        testPeer(i),
			Peername:  fmt.Sprintf("peer%d", i),
			Tags:      map[string]string{},
			FreeSpace: int64(1000-i) << 30,
			PinQueue:  int64(i * 10),
			NumPin:    int64(i * 100),
		}
		if len(regions) > 0 {
			out[i].Tags["region"] = regions[i%len(regions)]
		}
	}
	return out
}

func wantErrContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}
