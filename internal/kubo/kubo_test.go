package kubo_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
)

// post calls an RPC endpoint of d and decodes the JSON reply into out.
func post(t *testing.T, d *kubo.Daemon, endpoint string, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.APIURL+"/api/v0/"+endpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", endpoint, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func TestStartKillRestart(t *testing.T) {
	d := kubotest.Start(t)
	if !strings.HasPrefix(d.APIAddr, "/ip4/127.0.0.1/tcp/") || strings.HasSuffix(d.APIAddr, "/tcp/0") {
		t.Fatalf("APIAddr = %q, want a loopback address with a real port", d.APIAddr)
	}
	if !strings.HasPrefix(d.APIURL, "http://127.0.0.1:") {
		t.Fatalf("APIURL = %q", d.APIURL)
	}
	if len(d.SwarmAddrs) != 1 || !strings.HasPrefix(d.SwarmAddrs[0], "/ip4/127.0.0.1/tcp/") {
		t.Fatalf("SwarmAddrs = %q, want one loopback TCP address", d.SwarmAddrs)
	}
	var id struct{ ID string }
	if err := post(t, d, "id", &id); err != nil {
		t.Fatal(err)
	}
	if id.ID != d.PeerID.String() {
		t.Fatalf("id says %s, Daemon says %s", id.ID, d.PeerID)
	}

	apiAddr, swarm := d.APIAddr, d.SwarmAddrs[0]
	d.Kill()
	if d.Running() {
		t.Fatal("Running after Kill")
	}
	if err := post(t, d, "id", &id); err == nil {
		t.Fatal("API still answers after Kill")
	}
	if err := d.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d.APIAddr != apiAddr || d.SwarmAddrs[0] != swarm {
		t.Fatalf("restarted at %s %s, want %s %s", d.APIAddr, d.SwarmAddrs[0], apiAddr, swarm)
	}
	var swarmAddrs struct{ Addresses []string }
	if err := post(t, d, "id", &swarmAddrs); err != nil {
		t.Fatalf("API not answering after restart: %v", err)
	}
	if len(swarmAddrs.Addresses) == 0 || !strings.HasPrefix(swarmAddrs.Addresses[0], swarm+"/p2p/") {
		t.Fatalf("swarm addresses after restart = %q, want %s", swarmAddrs.Addresses, swarm)
	}

	if err := d.Terminate(); err != nil {
		t.Fatal(err)
	}
	if err := post(t, d, "id", &id); err == nil {
		t.Fatal("API still answers after Terminate")
	}
	if err := d.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := post(t, d, "id", &id); err != nil {
		t.Fatalf("API not answering after restart: %v", err)
	}
}

func TestConnectMovesBlocks(t *testing.T) {
	a, b := kubotest.Start(t), kubotest.Start(t)
	if err := a.ConnectTo(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	var peers struct{ Peers []struct{ Peer string } }
	if err := post(t, b, "swarm/peers", &peers); err != nil {
		t.Fatal(err)
	}
	if len(peers.Peers) != 1 || peers.Peers[0].Peer != a.PeerID.String() {
		t.Fatalf("b's peers = %+v, want only %s", peers.Peers, a.PeerID)
	}

	f := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(f, []byte("moved between daemons "+t.Name()+time.Now().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := a.Run(t.Context(), "block", "put", f)
	if err != nil {
		t.Fatal(err)
	}
	c := strings.TrimSpace(out)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got, err := b.Run(ctx, "block", "get", c)
	if err != nil {
		t.Fatalf("b could not fetch %s from a: %v", c, err)
	}
	if !strings.HasPrefix(got, "moved between daemons") {
		t.Fatalf("block get = %q", got)
	}
}

func TestFixedPortsAndOffline(t *testing.T) {
	first := kubotest.Start(t, kubo.Options{Offline: true})
	port := strings.TrimPrefix(first.APIAddr, "/ip4/127.0.0.1/tcp/")
	repo := first.RepoDir
	if err := first.Terminate(); err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	d := kubotest.Start(t, kubo.Options{RepoDir: repo, APIPort: p, Offline: true})
	if d.APIAddr != first.APIAddr || d.PeerID != first.PeerID {
		t.Fatalf("started as %s at %s, want %s at %s", d.PeerID, d.APIAddr, first.PeerID, first.APIAddr)
	}
	if len(d.SwarmAddrs) != 0 {
		t.Fatalf("offline daemon has swarm addresses %q", d.SwarmAddrs)
	}
}

func TestTemporaryRepo(t *testing.T) {
	d, err := kubo.Start(t.Context(), kubo.Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.RepoDir, "config")); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(d.RepoDir); !os.IsNotExist(err) {
		t.Fatalf("temporary repo still there after Stop: %v", err)
	}
	if err := d.Restart(t.Context()); err == nil {
		t.Fatal("Restart after Stop succeeded")
	}
}

func TestInitConfigIsLoopbackOnly(t *testing.T) {
	repo := t.TempDir()
	if err := kubo.Init(t.Context(), repo); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(repo, "config"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Addresses struct {
			API, Gateway string
			Swarm        []string
		}
		Bootstrap []string
		Routing   struct{ Type string }
		Discovery struct{ MDNS struct{ Enabled bool } }
		Swarm     struct {
			RelayClient, RelayService struct{ Enabled bool }
		}
		Provide struct{ Enabled bool }
		Plugins struct {
			Plugins struct {
				Telemetry struct{ Config struct{ Mode string } } `json:"telemetry"`
			}
		}
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, a := range append([]string{cfg.Addresses.API, cfg.Addresses.Gateway}, cfg.Addresses.Swarm...) {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			t.Errorf("listen address %s is not loopback TCP", a)
		}
	}
	if len(cfg.Bootstrap) != 0 || cfg.Routing.Type != "none" || cfg.Discovery.MDNS.Enabled ||
		cfg.Swarm.RelayClient.Enabled || cfg.Swarm.RelayService.Enabled || cfg.Provide.Enabled ||
		cfg.Plugins.Plugins.Telemetry.Config.Mode != "off" {
		t.Errorf("config is not isolated: %s", raw)
	}
	if err := kubo.Init(t.Context(), repo); err == nil {
		t.Error("Init over an existing repo succeeded")
	}
}

func TestBinaryNotFound(t *testing.T) {
	t.Setenv(kubo.BinEnv, filepath.Join(t.TempDir(), "no-ipfs"))
	_, err := kubo.Start(t.Context(), kubo.Options{})
	if err == nil || !strings.Contains(err.Error(), "no-ipfs") {
		t.Fatalf("err = %v, want one naming the missing binary", err)
	}
}
