// Package localcluster starts a cluster on 127.0.0.1: kubo daemons and
// ipfs-cluster peer processes from bin/, the later peers joining the first.
// make run and both bench programs use it.
package localcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/proc"
)

const (
	// startTimeout bounds a peer's start until /id answers, and the wait
	// for the peers to see each other.
	startTimeout = 60 * time.Second
	// stopGrace is how long a peer may take to exit after SIGTERM.
	stopGrace = 30 * time.Second
	// requestTimeout bounds one plain request.
	requestTimeout = 30 * time.Second
)

// Options describe the cluster to start.
type Options struct {
	// Work is the folder that holds every repo, config and log.
	Work string
	// Peers is the number of kubo daemons and peers.
	Peers int
	// LogLevel is the peers' --loglevel ("" for the default).
	LogLevel string
	// Out receives the output of `ipfs-cluster init` (nil discards it).
	Out io.Writer
	// Stats turns on each peer's metrics and profiling endpoint
	// (observations.metrics) on a free loopback port: see Peer.StatsURL.
	Stats bool
	// Configure, when set, edits peer i's service.json after init.
	Configure func(i int, c *config.Config)
}

// Peer is one ipfs-cluster daemon process beside its kubo daemon. Its
// methods are not safe for concurrent use.
type Peer struct {
	Name        string
	Dir         string
	Kubo        *kubo.Daemon
	ID          string
	APIURL      string // http://127.0.0.1:N
	APIAddr     string // /ip4/127.0.0.1/tcp/N, as ctl --host takes it
	ClusterAddr string // with /p2p/<ID>, as --bootstrap takes it
	StatsURL    string // http://127.0.0.1:N serving /metrics and /debug/pprof/, with Options.Stats

	bin, logLevel string
	args          []string // after "daemon"
	cmd           *exec.Cmd
	exited        chan struct{}
	started       time.Time
}

// Bin is the path of bin/ipfs-cluster, which sits beside the kubo binary.
func Bin() (string, error) {
	kuboBin, err := kubo.Binary()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(filepath.Dir(kuboBin), "ipfs-cluster")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s is missing: run 'make build' first", bin)
	}
	return bin, nil
}

// Start starts the kubo daemons (each connected to the previous ones) and
// the peers (sharing the first one's secret and joining it), and waits
// until every peer counts all of them and holds their free-space metric.
// On error, what was started is stopped.
func Start(ctx context.Context, o Options) (peers []*Peer, err error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			Stop(peers)
		}
	}()
	for range o.Peers {
		p, err := startPeer(ctx, bin, o, peers)
		if p != nil {
			peers = append(peers, p)
		}
		if err != nil {
			return peers, err
		}
	}
	return peers, waitJoined(ctx, peers)
}

// Join starts one more kubo daemon and peer, as Start starts the others,
// and returns once the new peer answers; it does not wait for the other
// peers to count it. The caller stops the new peer with the rest; on error,
// what was started is stopped.
func Join(ctx context.Context, o Options, peers []*Peer) (*Peer, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	p, err := startPeer(ctx, bin, o, peers)
	if err != nil {
		if p != nil {
			Stop([]*Peer{p})
		}
		return nil, err
	}
	return p, nil
}

// startPeer starts the kubo daemon of the peer after peers, connected to
// theirs, and the peer itself, which shares the first peer's secret and
// joins it. On error the peer returned, if any, is to be stopped.
func startPeer(ctx context.Context, bin string, o Options, peers []*Peer) (*Peer, error) {
	i := len(peers)
	k, err := kubo.Start(ctx, kubo.Options{RepoDir: filepath.Join(o.Work, fmt.Sprintf("kubo%d", i))})
	if err != nil {
		return nil, err
	}
	var secret string
	var bootstrap []string
	if i > 0 {
		cfg, err := config.Load(peers[0].Dir, noEnv)
		if err != nil {
			k.Stop()
			return nil, err
		}
		secret, bootstrap = cfg.Cluster.Secret, []string{"--bootstrap", peers[0].ClusterAddr}
	}
	p := &Peer{Name: fmt.Sprintf("peer%d", i), Dir: filepath.Join(o.Work, fmt.Sprintf("peer%d", i)), Kubo: k, bin: bin, logLevel: o.LogLevel, args: bootstrap}
	for _, prev := range peers {
		if err := k.ConnectTo(ctx, prev.Kubo); err != nil {
			return p, err
		}
	}
	var configure func(*config.Config)
	if o.Configure != nil {
		configure = func(c *config.Config) { o.Configure(i, c) }
	}
	if err := p.init(ctx, secret, o.Stats, configure, o.Out); err != nil {
		return p, err
	}
	_, err = p.Start(ctx)
	return p, err
}

// Stop stops the peers, then their kubo daemons.
func Stop(peers []*Peer) {
	for _, p := range peers {
		p.Stop()
	}
	for _, p := range peers {
		p.Kubo.Stop()
	}
}

func noEnv(string) string { return "" }

// init runs `ipfs-cluster init --randomports` (with the cluster's secret
// when one is given), then makes the peer listen on 127.0.0.1 only and
// learns its addresses.
func (p *Peer) init(ctx context.Context, secret string, stats bool, configure func(*config.Config), out io.Writer) error {
	args := []string{"--config", p.Dir, "init", "--randomports"}
	if out != nil {
		fmt.Fprintf(out, "$ ipfs-cluster %s\n", strings.Join(args, " "))
	}
	cmd := exec.CommandContext(ctx, p.bin, args...)
	if secret != "" {
		cmd.Env = append(os.Environ(), "CLUSTER_SECRET="+secret)
	}
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s init: %w", p.Name, err)
	}
	cfg, err := config.Load(p.Dir, noEnv)
	if err != nil {
		return err
	}
	swarmPort, err := tcpPort(cfg.Cluster.ListenMultiaddress[0])
	if err != nil {
		return err
	}
	cfg.Cluster.ListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/" + swarmPort}
	if stats {
		port, err := freePort()
		if err != nil {
			return err
		}
		cfg.Observations.Metrics.EnableStats = true
		cfg.Observations.Metrics.PrometheusEndpoint = "/ip4/127.0.0.1/tcp/" + port
		p.StatsURL = "http://127.0.0.1:" + port
	}
	if configure != nil {
		configure(cfg)
	}
	if err := cfg.Save(p.Dir); err != nil {
		return err
	}
	apiPort, err := tcpPort(cfg.API.RestAPI.HTTPListenMultiaddress[0])
	if err != nil {
		return err
	}
	ident, err := config.LoadIdentity(p.Dir, noEnv)
	if err != nil {
		return err
	}
	p.ID = ident.ID.String()
	p.APIURL = "http://127.0.0.1:" + apiPort
	p.APIAddr = "/ip4/127.0.0.1/tcp/" + apiPort
	p.ClusterAddr = cfg.Cluster.ListenMultiaddress[0] + "/p2p/" + p.ID
	return nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

func tcpPort(addr string) (string, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", err
	}
	port, err := m.ValueForProtocol(ma.P_TCP)
	if err != nil {
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	return port, nil
}

// Start runs the daemon (its log in Dir/daemon.log) and returns how long
// it took until /id answered.
func (p *Peer) Start(ctx context.Context) (time.Duration, error) {
	logf, err := os.OpenFile(filepath.Join(p.Dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	args := []string{"--config", p.Dir}
	if p.logLevel != "" {
		args = append(args, "--loglevel", p.logLevel)
	}
	cmd := exec.Command(p.bin, append(append(args, "daemon"), p.args...)...)
	cmd.Env = append(os.Environ(), "CLUSTER_IPFSHTTP_NODEMULTIADDRESS="+p.Kubo.APIAddr, "CLUSTER_PEERNAME="+p.Name)
	cmd.Stdout, cmd.Stderr = logf, logf
	proc.DieWithParent(cmd)
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return 0, fmt.Errorf("start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	for {
		if err := GetJSON(ctx, p.APIURL+"/id", nil); err == nil {
			return time.Since(p.started), nil
		}
		select {
		case <-exited:
			return 0, fmt.Errorf("%s exited while starting (%v); see %s", p.Name, cmd.ProcessState, filepath.Join(p.Dir, "daemon.log"))
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(p.started) > startTimeout {
			return 0, fmt.Errorf("%s did not answer /id within %s", p.Name, startTimeout)
		}
	}
}

// Started is when the last Start began.
func (p *Peer) Started() time.Time { return p.started }

// Stop sends SIGTERM and waits for the exit, killing the daemon after a
// grace period.
func (p *Peer) Stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// Kill sends SIGKILL, as a crash would, and waits for the exit.
func (p *Peer) Kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// RSSMB reads the resident set of the daemon process (0 when stopped).
func (p *Peer) RSSMB() float64 { return p.statusMB("VmRSS:") }

// PeakRSSMB reads the largest resident set the daemon process has had
// (0 when stopped).
func (p *Peer) PeakRSSMB() float64 { return p.statusMB("VmHWM:") }

// CPUTime reads the CPU time the daemon process has used since it started
// (0 when stopped).
func (p *Peer) CPUTime() time.Duration {
	if p.cmd == nil {
		return 0
	}
	t, _ := proc.CPUTime(p.cmd.Process.Pid)
	return t
}

// statusMB reads a kB field of /proc/<pid>/status in MB.
func (p *Peer) statusMB(field string) float64 {
	if p.cmd == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// waitJoined waits until every peer counts all peers and has the free-space
// metric of each, so that a pin can be allocated to any of them.
func waitJoined(ctx context.Context, peers []*Peer) error {
	deadline := time.Now().Add(startTimeout)
	for _, p := range peers {
		for {
			var id struct {
				ClusterPeers []string `json:"cluster_peers"`
			}
			var metrics []json.RawMessage
			if GetJSON(ctx, p.APIURL+"/id", &id) == nil && GetJSON(ctx, p.APIURL+"/monitor/metrics/freespace", &metrics) == nil &&
				len(id.ClusterPeers) >= len(peers) && len(metrics) >= len(peers) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not see %d peers and their free-space metrics within %s; see the daemon logs", p.Name, len(peers), startTimeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// client is shared by every request; connections to the peers are reused.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// GetJSON GETs url and decodes its JSON reply into v (nil: discard); a
// status other than 200 is an error.
func GetJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if v == nil {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// IdentityCid is a CIDv1 (raw) whose multihash is IDENTITY of a small
// unique payload: the block is the CID itself, so kubo pins it at once
// without fetching anything.
func IdentityCid(prefix string, i int) string {
	h, _ := mh.Sum([]byte(prefix+strconv.Itoa(i)), mh.IDENTITY, -1)
	return cid.NewCidV1(cid.Raw, h).String()
}

// Report prints one figure of a bench program as a JSON line on stdout:
// {"figure", "value" (to three decimals), "unit"} plus the extra key,
// value pairs.
func Report(figure string, value float64, unit string, extra ...any) {
	m := map[string]any{"figure": figure, "value": math.Round(value*1000) / 1000, "unit": unit}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	fmt.Println(string(b))
}
