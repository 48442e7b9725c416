package kubo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"ipfs-cluster/internal/proc"
)

const (
	defaultStartTimeout = 60 * time.Second
	// stopGrace is how long a daemon may take to shut down after SIGTERM
	// before it is killed.
	stopGrace = 20 * time.Second
	// readyLine is what `ipfs daemon` prints once every service is up.
	readyLine = "Daemon is ready"
)

// Options configure Start.
type Options struct {
	// RepoDir is the kubo repo. Empty means a temporary repo owned by the
	// Daemon and removed by Stop. A directory without a repo is initialised
	// with Init first.
	RepoDir string
	// APIPort and SwarmPort fix the loopback TCP ports of the RPC API and
	// of the swarm. 0 keeps the repo's setting, which for a fresh repo
	// lets the kernel choose.
	APIPort   int
	SwarmPort int
	// Offline runs `ipfs daemon --offline`: no swarm, no block exchange.
	Offline bool
	// StartTimeout bounds the wait for the RPC API to answer (default 60s).
	StartTimeout time.Duration
}

// Daemon is a kubo daemon started by Start. Its exported fields are set by
// Start and never change afterwards (Restart brings the daemon back on the
// same addresses), so they may be read from any goroutine. All methods are
// safe for concurrent use.
type Daemon struct {
	// RepoDir is the daemon's IPFS_PATH.
	RepoDir string
	// APIAddr is the RPC API multiaddress, /ip4/127.0.0.1/tcp/NNNN.
	APIAddr string
	// APIURL is the RPC API base URL, http://127.0.0.1:NNNN.
	APIURL string
	// PeerID is the daemon's libp2p identity.
	PeerID peer.ID
	// SwarmAddrs are the swarm listen addresses without the /p2p suffix
	// (empty when offline).
	SwarmAddrs []string

	bin          string
	offline      bool
	ownsRepo     bool
	startTimeout time.Duration
	client       *http.Client

	mu     sync.Mutex
	proc   *process // nil while not running
	last   *process // most recent process, for Output
	closed bool
}

// Start starts a kubo daemon and waits until its RPC API answers.
func Start(ctx context.Context, opts Options) (*Daemon, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		RepoDir:      opts.RepoDir,
		bin:          bin,
		offline:      opts.Offline,
		startTimeout: opts.StartTimeout,
		client:       &http.Client{},
	}
	if d.startTimeout <= 0 {
		d.startTimeout = defaultStartTimeout
	}
	if d.RepoDir == "" {
		if d.RepoDir, err = os.MkdirTemp("", "kubo-repo-"); err != nil {
			return nil, fmt.Errorf("kubo: %w", err)
		}
		d.ownsRepo = true
	}
	if err := d.prepareRepo(ctx, opts.APIPort, opts.SwarmPort); err != nil {
		d.removeOwnedRepo()
		return nil, err
	}
	proc, id, err := d.launch(ctx)
	if err != nil {
		d.removeOwnedRepo()
		return nil, err
	}
	d.proc, d.last = proc, proc
	d.PeerID = id.peerID
	d.APIAddr = id.apiAddr
	d.APIURL = id.apiURL
	d.SwarmAddrs = id.swarmAddrs
	return d, nil
}

func (d *Daemon) prepareRepo(ctx context.Context, apiPort, swarmPort int) error {
	if _, err := os.Stat(filepath.Join(d.RepoDir, "config")); errors.Is(err, os.ErrNotExist) {
		if err := Init(ctx, d.RepoDir); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("kubo repo %s: %w", d.RepoDir, err)
	}
	if apiPort == 0 && swarmPort == 0 {
		return nil
	}
	return editConfig(d.RepoDir, func(cfg map[string]any) error {
		if apiPort != 0 {
			if err := setKey(cfg, "Addresses.API", tcpAddr(apiPort)); err != nil {
				return err
			}
		}
		if swarmPort != 0 {
			return setKey(cfg, "Addresses.Swarm", []string{tcpAddr(swarmPort)})
		}
		return nil
	})
}

func (d *Daemon) removeOwnedRepo() {
	if d.ownsRepo {
		os.RemoveAll(d.RepoDir)
	}
}

// Stop shuts the daemon down (SIGTERM, then SIGKILL after a grace period)
// and, when the Daemon owns a temporary repo, removes it. Stop is final and
// idempotent: after it, Restart fails.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var err error
	if d.proc != nil {
		err = d.proc.terminate()
		d.proc = nil
	}
	if d.ownsRepo {
		err = errors.Join(err, os.RemoveAll(d.RepoDir))
	}
	return err
}

// Terminate shuts the daemon down like Stop but keeps the repo, so that
// Restart can bring it back. It does nothing when the daemon is not running.
func (d *Daemon) Terminate() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return nil
	}
	err := d.proc.terminate()
	d.proc = nil
	return err
}

// Kill SIGKILLs the daemon, as a crash would, and waits for it to exit. The
// repo is kept for Restart.
func (d *Daemon) Kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return
	}
	d.proc.kill()
	d.proc = nil
}

// Freeze stops the daemon's process with SIGSTOP, so that it keeps its
// connections open but answers and reads nothing, like a hung kubo, and
// returns the function that resumes it (SIGCONT). Resume before Stop:
// a stopped process cannot act on SIGTERM.
func (d *Daemon) Freeze() (resume func(), err error) {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil {
		return nil, errors.New("kubo freeze: daemon not running")
	}
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("kubo freeze: %w", err)
	}
	resume = func() { p.cmd.Process.Signal(syscall.SIGCONT) }
	if err := waitStopped(p.cmd.Process.Pid, 5*time.Second); err != nil {
		resume()
		return nil, fmt.Errorf("kubo freeze: %w", err)
	}
	return resume, nil
}

// waitStopped waits until every thread of the process is stopped. The
// kernel stops a process lazily: the thread chosen to take SIGSTOP may
// wait for a CPU while another thread, woken by a request, still answers
// it. A frozen kubo that answers once makes a test of a hung kubo flaky.
func waitStopped(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		running, err := runningThreads(pid)
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d threads of process %d still run %s after SIGSTOP", running, pid, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// runningThreads counts the threads of pid not in the stopped state, read
// from /proc/PID/task/TID/stat: the state is the field after the
// parenthesised command name.
func runningThreads(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	running := 0
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil {
			return 0, err
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return 0, fmt.Errorf("%s/%s/stat: no state field", dir, task.Name())
		}
		if stat[i+2] != 'T' {
			running++
		}
	}
	return running, nil
}

// Restart stops the daemon if it runs and starts it again on the same repo
// with the same API and swarm addresses, so that clients reconnect where
// they left off.
func (d *Daemon) Restart(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("kubo restart: daemon was stopped")
	}
	if d.proc != nil {
		if err := d.proc.terminate(); err != nil {
			return fmt.Errorf("kubo restart: %w", err)
		}
		d.proc = nil
	}
	// A repo started with port 0 would get new ports: write the ones it
	// was given into the config.
	err := editConfig(d.RepoDir, func(cfg map[string]any) error {
		if err := setKey(cfg, "Addresses.API", d.APIAddr); err != nil {
			return err
		}
		if len(d.SwarmAddrs) > 0 {
			return setKey(cfg, "Addresses.Swarm", d.SwarmAddrs)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kubo restart: %w", err)
	}
	proc, id, err := d.launch(ctx)
	if err != nil {
		return fmt.Errorf("kubo restart: %w", err)
	}
	d.proc, d.last = proc, proc
	if id.apiAddr != d.APIAddr || id.peerID != d.PeerID {
		return fmt.Errorf("kubo restart: came back as %s at %s, was %s at %s", id.peerID, id.apiAddr, d.PeerID, d.APIAddr)
	}
	return nil
}

// Running reports whether the daemon process is up.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return false
	}
	select {
	case <-d.proc.done:
		return false
	default:
		return true
	}
}

// CPUTime returns the CPU time the running daemon process has used since it
// started, for benchmarks that charge kubo its share of the work.
func (d *Daemon) CPUTime() (time.Duration, error) {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil {
		return 0, errors.New("kubo cpu time: daemon not running")
	}
	return proc.CPUTime(p.cmd.Process.Pid)
}

// Output returns the tail of the daemon's stdout and stderr (of the last
// run, when it has stopped).
func (d *Daemon) Output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		return ""
	}
	return d.last.out.String()
}

// ConnectTo swarm-connects d to other so that blocks can move between them.
func (d *Daemon) ConnectTo(ctx context.Context, other *Daemon) error {
	if len(other.SwarmAddrs) == 0 {
		return fmt.Errorf("kubo connect: %s has no swarm address (offline?)", other.PeerID)
	}
	addr := other.SwarmAddrs[0] + "/p2p/" + other.PeerID.String()
	if _, err := d.rpc(ctx, "swarm/connect", addr); err != nil {
		return fmt.Errorf("kubo connect %s to %s: %w", d.PeerID, addr, err)
	}
	return nil
}

// Run runs the ipfs command line against this daemon (`ipfs --api <APIAddr>
// args...`) and returns its standard output.
func (d *Daemon) Run(ctx context.Context, args ...string) (string, error) {
	var out strings.Builder
	err := d.Exec(ctx, nil, &out, args...)
	return out.String(), err
}

// Exec is Run with the command's standard input from stdin (none when nil)
// and its output streamed to stdout: `ipfs add` of a stream, or a `dag
// export` too large to hold in memory. The error carries what the command
// wrote to stderr.
func (d *Daemon) Exec(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, d.bin, append([]string{"--api", d.APIAddr}, args...)...)
	cmd.Env = daemonEnv(d.RepoDir)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ipfs %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// rpc calls an RPC endpoint with positional arguments and returns the body.
func (d *Daemon) rpc(ctx context.Context, endpoint string, args ...string) ([]byte, error) {
	return rpcCall(ctx, d.client, d.APIURL, endpoint, args...)
}

func rpcCall(ctx context.Context, client *http.Client, apiURL, endpoint string, args ...string) ([]byte, error) {
	q := url.Values{"arg": args}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/api/v0/"+endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("%s: %s", endpoint, e.Message)
		}
		return nil, fmt.Errorf("%s: %s: %s", endpoint, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

type identity struct {
	peerID     peer.ID
	apiAddr    string
	apiURL     string
	swarmAddrs []string
}

// launch starts `ipfs daemon` and waits for its API. On failure the process
// is killed and the error carries the tail of its output.
func (d *Daemon) launch(ctx context.Context) (*process, identity, error) {
	args := []string{"daemon", "--migrate=false"}
	if d.offline {
		args = append(args, "--offline")
	}
	p, err := startProcess(d.bin, args, daemonEnv(d.RepoDir))
	if err != nil {
		return nil, identity{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.startTimeout)
	defer cancel()
	id, err := d.waitReady(ctx, p)
	if err != nil {
		p.kill()
		return nil, identity{}, fmt.Errorf("kubo daemon (repo %s): %w\n--- daemon output ---\n%s", d.RepoDir, err, p.out.String())
	}
	return p, id, nil
}

func (d *Daemon) waitReady(ctx context.Context, p *process) (identity, error) {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-p.done:
			return identity{}, fmt.Errorf("exited during start: %v", p.err)
		case <-ctx.Done():
			return identity{}, fmt.Errorf("RPC API not answering: %w (last error: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
		// The api file is only trusted once the daemon says it is ready:
		// before that it may be a stale leftover of a crashed run.
		if !p.out.ready() {
			continue
		}
		var id identity
		if id, lastErr = d.identify(ctx); lastErr == nil {
			return id, nil
		}
	}
}

// identify reads the API address the daemon wrote to $IPFS_PATH/api and asks
// the API who it is.
func (d *Daemon) identify(ctx context.Context) (identity, error) {
	raw, err := os.ReadFile(filepath.Join(d.RepoDir, "api"))
	if err != nil {
		return identity{}, err
	}
	apiAddr := strings.TrimSpace(string(raw))
	m, err := ma.NewMultiaddr(apiAddr)
	if err != nil {
		return identity{}, fmt.Errorf("api file: %w", err)
	}
	network, host, err := manet.DialArgs(m)
	if err != nil || !strings.HasPrefix(network, "tcp") {
		return identity{}, fmt.Errorf("api file: unsupported address %s", apiAddr)
	}
	apiURL := "http://" + host
	body, err := rpcCall(ctx, d.client, apiURL, "id")
	if err != nil {
		return identity{}, err
	}
	var out struct {
		ID        string
		Addresses []string
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return identity{}, fmt.Errorf("id: %w", err)
	}
	pid, err := peer.Decode(out.ID)
	if err != nil {
		return identity{}, fmt.Errorf("id: %w", err)
	}
	id := identity{peerID: pid, apiAddr: apiAddr, apiURL: apiURL}
	for _, a := range out.Addresses {
		id.swarmAddrs = append(id.swarmAddrs, strings.TrimSuffix(a, "/p2p/"+out.ID))
	}
	return id, nil
}

// process is one run of `ipfs daemon`.
type process struct {
	cmd  *exec.Cmd
	out  *tail
	done chan struct{} // closed once the process has exited and err is set
	err  error
}

func startProcess(bin string, args, env []string) (*process, error) {
	p := &process{out: &tail{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	proc.DieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kubo daemon: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// terminate asks the daemon to shut down and kills it if it has not exited
// within stopGrace.
func (p *process) terminate() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.kill()
		return fmt.Errorf("kubo daemon: SIGTERM: %w", err)
	}
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		p.kill()
		return fmt.Errorf("kubo daemon did not exit within %s of SIGTERM and was killed", stopGrace)
	}
}

func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// tail keeps the last tailSize bytes written to it and remembers whether the
// daemon announced it was ready.
type tail struct {
	mu      sync.Mutex
	buf     []byte
	isReady bool
}

const tailSize = 32 << 10

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if !t.isReady && bytes.Contains(t.buf, []byte(readyLine)) {
		t.isReady = true
	}
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(b), nil
}

func (t *tail) ready() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.isReady
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
