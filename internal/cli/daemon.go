package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/logging"
	"ipfs-cluster/internal/memory"
)

func daemonCommand() *Command {
	return &Command{
		Name:  "daemon",
		Usage: "run the cluster peer",
		Description: `
Runs the peer until SIGINT or SIGTERM: the pinset store, the libp2p host,
the CRDT consensus, the pin tracker driving kubo, and the REST API. The first signal shuts down cleanly, a
third exits at once.`,
		Flags: []Flag{
			{Name: "bootstrap", Aliases: []string{"j"}, Kind: StringFlag, Usage: "comma-separated multiaddrs (with /p2p/<peer ID>) of cluster peers to join"},
			{Name: "no-trust", Kind: BoolFlag, Usage: "do not add the bootstrap peers to trusted_peers"},
			{Name: "stats", Kind: BoolFlag, Usage: "serve /metrics and /debug/pprof/ (observations.metrics.enable_stats)"},
			// The reference's: --upgrade has done nothing since 0.x,
			// --leave (leave_on_shutdown) is for raft, and tracing is
			// not built in. Accepted so that their scripts run.
			{Name: "upgrade", Aliases: []string{"u"}, Kind: BoolFlag, Usage: "does nothing (kept for the reference's scripts)"},
			{Name: "leave", Aliases: []string{"x"}, Kind: BoolFlag, Hidden: true},
			{Name: "tracing", Kind: BoolFlag, Usage: "not supported: ignored with a warning"},
		},
		Action: runDaemon,
	}
}

func runDaemon(c *Context) error {
	if err := setupLogging(c); err != nil {
		return err
	}
	tuneGC(c.Getenv)
	log := logging.For("daemon")
	dir, err := configDir(c)
	if err != nil {
		return err
	}
	cfg, err := config.Load(dir, c.Getenv)
	if err != nil {
		return err
	}
	if c.Bool("stats") {
		cfg.Observations.Metrics.EnableStats = true
		if err := cfg.Validate(); err != nil { // its endpoint counts now
			return err
		}
	}
	if c.Bool("leave") {
		log.Warn().Msg("--leave ignored: leaving the peerset on shutdown is for raft consensus")
	}
	if c.Bool("tracing") {
		log.Warn().Msg("--tracing ignored: this version has no tracing")
	}
	var bootstrap []string
	for _, a := range strings.Split(c.String("bootstrap"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			bootstrap = append(bootstrap, a)
		}
	}
	return runPeer(c, dir, cfg, daemon.Options{Bootstrap: bootstrap, NoTrust: c.Bool("no-trust")})
}

// runPeer runs the peer configured in dir with cfg until a signal stops
// it: the daemon's and the follower's.
func runPeer(c *Context, dir string, cfg *config.Config, opts daemon.Options) error {
	log := logging.For("daemon")
	for _, w := range cfg.Warnings {
		log.Warn().Msg(w)
	}
	ident, err := config.LoadIdentity(dir, c.Getenv)
	if err != nil {
		return err
	}
	lock, err := lockFolder(dir)
	if err != nil {
		return err
	}
	defer lock.release()

	// Signals are caught from before the start: one that arrives once the
	// API answers, before the peer is ready, must still shut it down
	// cleanly, not kill it.
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	peer, err := daemon.Start(dir, cfg, ident, opts)
	if err != nil {
		return err
	}
	log.Info().Str("peer", ident.ID.String()).Str("peername", cfg.Cluster.Peername).
		Int("pins", peer.DB.Len()).Msg("IPFS Cluster peer is ready")

	// Freed heap goes back to the OS once the peer is quiet; see tuneGC.
	memCtx, stopMem := context.WithCancel(context.Background())
	defer stopMem()
	go memory.Default(logging.For("memory")).Run(memCtx)

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			// The outcome is logged by the core.
			peer.Cluster.ReloadPolicy(context.Background(), true)
			continue
		}
		break
	}
	log.Info().Msg("shutting down")
	done := make(chan struct{})
	go func() {
		peer.Stop()
		close(done)
	}()
	for n := 2; ; n++ {
		select {
		case <-done:
			log.Info().Msg("shutdown complete")
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				continue
			}
			if n >= 3 {
				return Exit(1, fmt.Errorf("exiting at once on the third signal"))
			}
			log.Warn().Msg("shutdown in progress; send the signal once more to exit at once")
		}
	}
}

// tuneGC trades some memory for CPU unless GOGC or GOMEMLIMIT say
// otherwise: on a 2-core peer beside kubo, garbage collection at the
// default pace took about a tenth of ingest throughput. The soft limit
// makes the collector work harder again before the heap grows past what a
// peer with a million pins needs. The heap this leaves free after a burst
// is returned to the OS by memory.Releaser.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(192 << 20)
	}
}
