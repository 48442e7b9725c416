package cluster_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon/daemontest"
)

// testPolicy exercises every hook, each keyed on the pin so one cluster
// serves every case.
const testPolicy = `
function admit(pin)
  if pin.name == "loop" then
    while true do end
  end
  if string.sub(pin.name, 1, 7) == "secret-" then
    return false, "names starting with secret- are not admitted"
  end
  return true
end

function replication(pin)
  if pin.metadata.tier == "hot" then
    return 3, 3
  end
  return nil
end

function allocate(pin, candidates)
  local avoid = pin.metadata.avoid
  if avoid == nil then
    return nil
  end
  local out = {}
  for _, c in ipairs(candidates) do
    if c.peername ~= avoid then
      table.insert(out, c.id)
    end
  end
  return out
end

function retry_priority(pin, attempts, err)
  if pin.name == "doomed" then
    return "failed"
  end
  return nil
end
`

func writePolicy(t *testing.T, path, src string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(src))
	return hex.EncodeToString(sum[:])
}

// TestPolicyHooksInTheCluster runs three peers, each with its own copy of
// testPolicy, and checks every hook's effect through the core and REST.
func TestPolicyHooksInTheCluster(t *testing.T) {
	dir := t.TempDir()
	var hash string
	peers := daemontest.StartCluster(t, 3, func(i int, c *config.Config) {
		path := filepath.Join(dir, "policy"+string(rune('0'+i))+".lua")
		hash = writePolicy(t, path, testPolicy)
		c.Cluster.PolicyFile = path
		c.Cluster.ReplicationFactorMin, c.Cluster.ReplicationFactorMax = 1, 1
		c.IPFSConnector.IPFSHTTP.PinTimeout = config.Duration(time.Second)
	})
	p0 := peers[0]
	cs := cids(t, p0, 8)

	t.Run("admit refuses with 403 and the reason", func(t *testing.T) {
		_, err := p0.Cluster.Pin(t.Context(), cs[0], api.PinOptions{Name: "secret-plans"})
		if !errors.Is(err, cluster.ErrRefused) || !strings.Contains(err.Error(), "secret- are not admitted") {
			t.Fatalf("Pin = %v, want a refusal with the policy's reason", err)
		}
		resp, err := http.Post(p0.APIURL+"/pins/"+cs[0].String()+"?name=secret-x", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || e.Code != http.StatusForbidden || !strings.Contains(e.Message, "secret- are not admitted") {
			t.Fatalf("POST = %d %+v, want 403 with the reason", resp.StatusCode, e)
		}
		if _, err := p0.Cluster.PinGet(t.Context(), cs[0]); !errors.Is(err, cluster.ErrNotFound) {
			t.Fatalf("a refused pin is in the pinset: %v", err)
		}
	})

	t.Run("admit refuses an add before any data moves", func(t *testing.T) {
		_, err := p0.Cluster.Add(t.Context(), cluster.AddParams{Pin: api.PinOptions{Name: "secret-upload"}},
			func(context.Context, adder.BlockSink) (api.Cid, error) {
				t.Error("a refused add built its DAG")
				return api.Cid{}, errors.New("refused adds must not build")
			})
		if !errors.Is(err, cluster.ErrRefused) {
			t.Fatalf("Add = %v, want a refusal", err)
		}
	})

	t.Run("replication fills factors left at 0", func(t *testing.T) {
		pin, err := p0.Cluster.Pin(t.Context(), cs[1], api.PinOptions{Metadata: map[string]string{"tier": "hot"}})
		if err != nil {
			t.Fatal(err)
		}
		if pin.ReplicationFactorMin != 3 || pin.ReplicationFactorMax != 3 || len(pin.Allocations) != 3 {
			t.Fatalf("hot pin: %d/%d on %v, want 3/3 on three peers", pin.ReplicationFactorMin, pin.ReplicationFactorMax, pin.Allocations)
		}
		pin, err = p0.Cluster.Pin(t.Context(), cs[2], api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2, Metadata: map[string]string{"tier": "hot"}})
		if err != nil || pin.ReplicationFactorMin != 2 || len(pin.Allocations) != 2 {
			t.Fatalf("explicit factors must win over the policy: %d on %v (%v)", pin.ReplicationFactorMin, pin.Allocations, err)
		}
	})

	t.Run("allocate drops a peer and cannot go below min", func(t *testing.T) {
		avoid := peers[1]
		pin, err := p0.Cluster.Pin(t.Context(), cs[3], api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2,
			Metadata: map[string]string{"avoid": avoid.Config.Cluster.Peername}})
		if err != nil {
			t.Fatal(err)
		}
		if len(pin.Allocations) != 2 || slices.Contains(pin.Allocations, avoid.Identity.ID) {
			t.Fatalf("allocations %v, want two peers without %s", pin.Allocations, avoid.Config.Cluster.Peername)
		}
		_, err = p0.Cluster.Pin(t.Context(), cs[4], api.PinOptions{ReplicationFactorMin: 3, ReplicationFactorMax: 3,
			Metadata: map[string]string{"avoid": avoid.Config.Cluster.Peername}})
		if !errors.Is(err, cluster.ErrNotEnoughPeers) || !strings.Contains(err.Error(), "allocate policy") {
			t.Fatalf("Pin = %v, want not enough peers naming the policy", err)
		}
	})

	t.Run("admit that never returns times out alone", func(t *testing.T) {
		var wg sync.WaitGroup
		loopErrs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				start := time.Now()
				_, err := p0.Cluster.Pin(t.Context(), cs[5], api.PinOptions{Name: "loop"})
				if took := time.Since(start); took > 2*time.Second {
					err = errors.New("took " + took.String())
				}
				loopErrs <- err
			})
		}
		for i := range 20 {
			c := cids(t, p0, 1)[0]
			if _, err := p0.Cluster.Pin(t.Context(), c, api.PinOptions{Name: "fine"}); err != nil {
				t.Fatalf("pin %d beside the looping admissions: %v", i, err)
			}
		}
		wg.Wait()
		close(loopErrs)
		for err := range loopErrs {
			if !errors.Is(err, cluster.ErrRefused) || !strings.Contains(err.Error(), "timed out") {
				t.Fatalf("looping admission: %v, want a refusal saying it timed out", err)
			}
		}
	})

	t.Run("retry_priority makes a failure final", func(t *testing.T) {
		// No kubo holds this block and routing is off: the pin stalls.
		missing, _ := api.DecodeCid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
		pin, err := p0.Cluster.Pin(t.Context(), missing, api.PinOptions{Name: "doomed"})
		if err != nil {
			t.Fatal(err)
		}
		holder := peerIndex(peers)[pin.Allocations[0]]
		var info api.PinInfoShort
		waitUntil(t, 30*time.Second, "final pin_error", func() (bool, string) {
			gpi, err := holder.Cluster.Status(t.Context(), missing, true)
			info = gpi.PeerMap[holder.Identity.ID.String()]
			return err == nil && info.Status == api.TrackerStatusPinError && strings.Contains(info.Error, "retry_priority"), info.Error
		})
		attempts := info.AttemptCount
		time.Sleep(3 * time.Second) // retries would run every second or two
		gpi, err := holder.Cluster.Status(t.Context(), missing, true)
		if info = gpi.PeerMap[holder.Identity.ID.String()]; err != nil || info.Status != api.TrackerStatusPinError || info.AttemptCount != attempts {
			t.Fatalf("a final failure was retried: %+v (%v)", info, err)
		}
	})

	t.Run("reload keeps a working policy and /id shows one hash", func(t *testing.T) {
		for _, p := range peers {
			if got := p.Cluster.ID(t.Context()).PolicySHA256; got != hash {
				t.Fatalf("%s runs policy %q, want %q", p.Config.Cluster.Peername, got, hash)
			}
		}
		for _, p := range peers {
			writePolicy(t, p.Config.Cluster.PolicyFile, "function admit(pin)\n  return true\n") // no end
		}
		for _, r := range p0.Cluster.ReloadPolicy(t.Context(), false) {
			if r.Error == "" || r.PolicySHA256 != hash {
				t.Fatalf("broken reload on %s: %+v, want an error and the old hash", r.Peername, r)
			}
		}
		if _, err := p0.Cluster.Pin(t.Context(), cs[6], api.PinOptions{Name: "secret-still"}); !errors.Is(err, cluster.ErrRefused) {
			t.Fatalf("the old policy stopped refusing after a failed reload: %v", err)
		}
		var next string
		for _, p := range peers {
			next = writePolicy(t, p.Config.Cluster.PolicyFile, "function admit(pin)\n  return true\nend\n")
		}
		resp, err := http.Post(p0.APIURL+"/policy/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out []api.PolicyReload
		if err := json.Unmarshal(body, &out); err != nil || len(out) != 3 {
			t.Fatalf("POST /policy/reload: %s (%v)", body, err)
		}
		for _, p := range peers {
			if got := p.Cluster.ID(context.Background()).PolicySHA256; got != next {
				t.Fatalf("%s runs %q after the reload, want %q", p.Config.Cluster.Peername, got, next)
			}
		}
		if _, err := p0.Cluster.Pin(t.Context(), cs[7], api.PinOptions{Name: "secret-now-fine"}); err != nil {
			t.Fatalf("the new policy is not active: %v", err)
		}
	})
}
