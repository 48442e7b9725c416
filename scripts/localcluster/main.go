// Command localcluster starts a local cluster on 127.0.0.1 — three kubo
// daemons and three ipfs-cluster peers from bin/, the later peers joining
// the first — adds a file through the cluster with replication 2 (its
// blocks go to the two allocated kubo daemons, then it is pinned) and
// shows peers and status, then keeps running until
// Ctrl-C (or stops at once with -exit). Everything lives in a temporary
// folder that is removed on exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"ipfs-cluster/internal/localcluster"
)

func main() {
	exitAfter := flag.Bool("exit", false, "stop everything once the file is pinned")
	flag.Parse()
	if err := run(*exitAfter); err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(exitAfter bool) error {
	bin, err := localcluster.Bin()
	if err != nil {
		return err
	}
	ctl := filepath.Join(filepath.Dir(bin), "ipfs-cluster-ctl")
	work, err := os.MkdirTemp("", "ipfs-cluster-local-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	const n = 3
	step(fmt.Sprintf("starting %d kubo daemons and %d cluster peers; peer1 and peer2 join peer0", n, n))
	peers, err := localcluster.Start(ctx, localcluster.Options{Work: work, Peers: n, Out: os.Stdout})
	defer localcluster.Stop(peers)
	if err != nil {
		return err
	}
	for _, p := range peers {
		fmt.Printf("    %s: REST API %s, cluster address %s, kubo %s (logs: %s)\n",
			p.Name, p.APIAddr, p.ClusterAddr, p.Kubo.APIAddr, filepath.Join(p.Dir, "daemon.log"))
	}

	file := filepath.Join(work, "hello.txt")
	content := fmt.Sprintf("hello from a local IPFS Cluster, %s\n", time.Now().Format(time.RFC3339))
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		return err
	}
	host := "--host=" + peers[0].APIAddr
	step("adding a file through the cluster, replication 2")
	args := []string{host, "add", "--name", "hello.txt", "--rmin", "2", "--rmax", "2", "--wait", "--wait-timeout", "1m", "-Q", file}
	fmt.Printf("$ %s %s\n", filepath.Base(ctl), strings.Join(args, " "))
	out, err := exec.CommandContext(ctx, ctl, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("add: %w: %s", err, out)
	}
	cid := strings.TrimSpace(string(out))
	fmt.Printf("%s\n", cid)
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
