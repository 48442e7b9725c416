// Command localcluster starts a local cluster on 127.0.0.1 — three kubo
// daemons and three ipfs-cluster peers from bin/, the later peers joining
// the first — adds a file to kubo, pins it through the cluster with
// replication 2 and shows peers and status, then keeps running until
// Ctrl-C (or stops at once with -exit). Everything lives in a temporary folder that
// is removed on exit.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/proc"
)

func main() {
	exitAfter := flag.Bool("exit", false, "stop everything once the file is pinned")
	flag.Parse()
	if err := run(*exitAfter); err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
		os.Exit(1)
	}
}

type peer struct {
	dir     string
	apiAddr string
	cmd     *exec.Cmd
	kubo    *kubo.Daemon
}

func run(exitAfter bool) (err error) {
	kuboBin, err := kubo.Binary()
	if err != nil {
		return err
	}
	// The cluster binary and its links sit beside kubo in bin/.
	bin := filepath.Join(filepath.Dir(kuboBin), "ipfs-cluster")
	ctl := filepath.Join(filepath.Dir(kuboBin), "ipfs-cluster-ctl")
	for _, b := range []string{bin, ctl} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s is missing: run 'make build' first", b)
		}
	}
	work, err := os.MkdirTemp("", "ipfs-cluster-local-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	const n = 3
	step(fmt.Sprintf("starting %d kubo daemons", n))
	peers := make([]*peer, n)
	for i := range peers {
		k, err := kubo.Start(ctx, kubo.Options{RepoDir: filepath.Join(work, fmt.Sprintf("kubo%d", i))})
		if err != nil {
			return err
		}
		defer k.Stop()
		for _, prev := range peers[:i] {
			if err := k.ConnectTo(ctx, prev.kubo); err != nil {
				return err
			}
		}
		peers[i] = &peer{dir: filepath.Join(work, fmt.Sprintf("peer%d", i)), kubo: k}
		fmt.Printf("    kubo%d %s, RPC API at %s\n", i, k.PeerID, k.APIAddr)
	}

	step(fmt.Sprintf("initialising and starting %d cluster peers", n))
	var secret, bootstrap string
	for i, p := range peers {
		env := os.Environ()
		if secret != "" {
			env = append(env, "CLUSTER_SECRET="+secret)
		}
		if err := runShownEnv(env, bin, "--config", p.dir, "init", "--randomports"); err != nil {
			return err
		}
		addr, s, err := loopbackOnly(p.dir)
		if err != nil {
			return err
		}
		if i == 0 {
			secret, bootstrap = s, addr
		}
		var args []string
		if i > 0 {
			args = []string{"--bootstrap", bootstrap}
		}
		if err := p.start(bin, args...); err != nil {
			return err
		}
		defer p.stop()
		fmt.Printf("    peer%d: REST API at %s, cluster address %s (logs: %s)\n", i, p.apiAddr, addr, filepath.Join(p.dir, "daemon.log"))
	}
	if err := waitForPeers(ctx, peers[0], n); err != nil {
		return err
	}
	k := peers[0].kubo
	p := peers[0]

	file := filepath.Join(work, "hello.txt")
	content := fmt.Sprintf("hello from a local IPFS Cluster, %s\n", time.Now().Format(time.RFC3339))
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		return err
	}
	step("adding a file to kubo")
	out, err := k.Run(ctx, "add", "-Q", "--pin=false", file)
	if err != nil {
		return err
	}
	cid := strings.TrimSpace(out)
	fmt.Printf("    %s -> %s\n", filepath.Base(file), cid)

	host := "--host=" + p.apiAddr
	step("pinning it through the cluster")
	if err := runShown(ctl, host, "pin", "add", "--name", "hello.txt", "--replication", "2", "--wait", "--wait-timeout", "1m", cid); err != nil {
		return err
	}
	step("cluster state")
	for _, args := range [][]string{{"peers", "ls"}, {"pin", "ls"}, {"status", cid}} {
		if err := runShown(ctl, append([]string{host}, args...)...); err != nil {
			return err
		}
	}
	if exitAfter {
		step("done; stopping")
		return nil
	}
	step("the cluster is running; press Ctrl-C to stop it")
	fmt.Printf("    try: %s %s status\n", ctl, host)
	<-ctx.Done()
	step("stopping")
	return nil
}

func (p *peer) start(bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(p.dir, "daemon.log"))
	if err != nil {
		return err
	}
	p.cmd = exec.Command(bin, append([]string{"--config", p.dir, "daemon"}, args...)...)
	p.cmd.Env = append(os.Environ(), "CLUSTER_IPFSHTTP_NODEMULTIADDRESS="+p.kubo.APIAddr, "CLUSTER_PEERNAME="+filepath.Base(p.dir))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	proc.DieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	port, err := restPort(p.dir)
	if err != nil {
		return err
	}
	p.apiAddr = "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(p.dir, "daemon.log"))
	return fmt.Errorf("peer did not answer on port %d within 30s; its log:\n%s", port, log)
}

func (p *peer) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// restPort reads the REST API port init chose from service.json.
func restPort(dir string) (int, error) {
	cfg, err := config.Load(dir, os.Getenv)
	if err != nil {
		return 0, err
	}
	addr, err := ma.NewMultiaddr(cfg.API.RestAPI.HTTPListenMultiaddress[0])
	if err != nil {
		return 0, err
	}
	port, err := addr.ValueForProtocol(ma.P_TCP)
	if err != nil {
		return 0, fmt.Errorf("REST API address %s: %w", addr, err)
	}
	return strconv.Atoi(port)
}

func step(msg string) { fmt.Printf("\n==> %s\n", msg) }

// runShown echoes a command line and runs it with its output on ours.
func runShown(name string, args ...string) error { return runShownEnv(nil, name, args...) }

// runShownEnv is runShown with an environment (nil: ours).
func runShownEnv(env []string, name string, args ...string) error {
	fmt.Printf("$ %s %s\n", filepath.Base(name), strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}

// loopbackOnly makes a peer listen on 127.0.0.1 only (init chose the port)
// and returns its cluster address and secret.
func loopbackOnly(dir string) (addr, secret string, err error) {
	cfg, err := config.Load(dir, func(string) string { return "" })
	if err != nil {
		return "", "", err
	}
	m, err := ma.NewMultiaddr(cfg.Cluster.ListenMultiaddress[0])
	if err != nil {
		return "", "", err
	}
	port, err := m.ValueForProtocol(ma.P_TCP)
	if err != nil {
		return "", "", err
	}
	cfg.Cluster.ListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/" + port}
	if err := cfg.Save(dir); err != nil {
		return "", "", err
	}
	ident, err := config.LoadIdentity(dir, func(string) string { return "" })
	if err != nil {
		return "", "", err
	}
	return cfg.Cluster.ListenMultiaddress[0] + "/p2p/" + ident.ID.String(), cfg.Cluster.Secret, nil
}

// waitForPeers waits until p counts n peers and has the free-space metric
// of each, so that a pin can be allocated to any of them.
func waitForPeers(ctx context.Context, p *peer, n int) error {
	base := "http://127.0.0.1:" + strings.TrimPrefix(p.apiAddr, "/ip4/127.0.0.1/tcp/")
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var id struct {
			ClusterPeers []string `json:"cluster_peers"`
		}
		var metrics []json.RawMessage
		if getJSON(base+"/id", &id) == nil && getJSON(base+"/monitor/metrics/freespace", &metrics) == nil &&
			len(id.ClusterPeers) >= n && len(metrics) >= n {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the peers did not all see each other within 60s: see the daemon logs")
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
