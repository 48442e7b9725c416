// Command localcluster starts a local cluster on 127.0.0.1 — kubo daemons
// and ipfs-cluster peers from bin/ — adds a file to kubo, pins it through
// the cluster and shows its status, then keeps running until Ctrl-C (or
// stops at once with -exit). Everything lives in a temporary folder that
// is removed on exit.
package main

import (
	"context"
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

	step("starting kubo")
	k, err := kubo.Start(ctx, kubo.Options{RepoDir: filepath.Join(work, "kubo0")})
	if err != nil {
		return err
	}
	defer k.Stop()
	fmt.Printf("    kubo %s, RPC API at %s\n", k.PeerID, k.APIAddr)

	p := &peer{dir: filepath.Join(work, "peer0"), kubo: k}
	step("initialising and starting the cluster peer")
	if err := runShown(bin, "--config", p.dir, "init", "--randomports"); err != nil {
		return err
	}
	if err := p.start(bin); err != nil {
		return err
	}
	defer p.stop()
	fmt.Printf("    REST API at %s (logs: %s)\n", p.apiAddr, filepath.Join(p.dir, "daemon.log"))

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
	if err := runShown(ctl, host, "pin", "add", "--name", "hello.txt", "--wait", "--wait-timeout", "1m", cid); err != nil {
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

func (p *peer) start(bin string) error {
	logf, err := os.Create(filepath.Join(p.dir, "daemon.log"))
	if err != nil {
		return err
	}
	p.cmd = exec.Command(bin, "--config", p.dir, "daemon")
	p.cmd.Env = append(os.Environ(), "CLUSTER_IPFSHTTP_NODEMULTIADDRESS="+p.kubo.APIAddr, "CLUSTER_PEERNAME="+filepath.Base(p.dir))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
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
func runShown(name string, args ...string) error {
	fmt.Printf("$ %s %s\n", filepath.Base(name), strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}
