// Package daemon assembles a cluster peer from its configuration: the
// state store, the libp2p host and peer RPC, the CRDT consensus, the kubo
// connector, the pin tracker, the monitor, the core and the APIs. The
// daemon command and the tests that need a whole peer both use it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"

	"ipfs-cluster/internal/allocator"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/consensus/crdt"
	"ipfs-cluster/internal/informer"
	"ipfs-cluster/internal/ipfsconn"
	"ipfs-cluster/internal/logging"
	"ipfs-cluster/internal/monitor"
	"ipfs-cluster/internal/observe"
	"ipfs-cluster/internal/p2p"
	"ipfs-cluster/internal/pintracker"
	"ipfs-cluster/internal/policy"
	"ipfs-cluster/internal/restapi"
	"ipfs-cluster/internal/state"
)

// Options are the daemon's command-line choices.
type Options struct {
	// Bootstrap lists multiaddrs (with /p2p/) of peers to join; they are
	// trusted unless NoTrust.
	Bootstrap []string
	NoTrust   bool
}

// Peer is a running cluster peer: every component, started in dependency
// order and stopped in reverse.
type Peer struct {
	DB        *state.DB
	Host      host.Host
	RPC       *p2p.RPC
	Consensus *crdt.Consensus
	Tracker   *pintracker.Tracker
	Cluster   *cluster.Cluster
	REST      *restapi.Server
	// Metrics holds the peer's Prometheus collectors; it is served only
	// with observations.metrics.enable_stats.
	Metrics *prometheus.Registry

	observer *observe.Server
	peerFile *p2p.PeerFile
	gossip   *monitor.Gossip
	cancel   context.CancelFunc
	joined   <-chan struct{} // closed once join's goroutine has ended
}

// Start builds and starts every component of the peer whose configuration
// folder is dir. On error, what was started is stopped again.
func Start(dir string, cfg *config.Config, ident *config.Identity, opts Options) (_ *Peer, err error) {
	// The error returns set the named result to nil: keep our own handle
	// on what was started so that it can be stopped.
	p := &Peer{}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	bootstrap, err := parseBootstrap(opts.Bootstrap)
	if err != nil {
		return nil, err
	}
	p.Metrics = observe.NewRegistry()
	if m := cfg.Observations.Metrics; m.EnableStats {
		if p.observer, err = observe.Start(m.PrometheusEndpoint, p.Metrics, logging.For("observe")); err != nil {
			return nil, err
		}
	}
	if p.DB, err = state.Open(filepath.Join(dir, "pebble"), logging.For("state")); err != nil {
		return nil, err
	}
	cl := cfg.Cluster
	hostCfg := p2p.DefaultHostConfig()
	hostCfg.ListenAddrs = cl.ListenMultiaddress
	hostCfg.AnnounceAddrs = cl.AnnounceMultiaddress
	hostCfg.NoAnnounceAddrs = cl.NoAnnounceMultiaddress
	hostCfg.Secret = cl.Secret
	hostCfg.ConnMgr = p2p.ConnMgrConfig{HighWater: cl.ConnectionManager.HighWater, LowWater: cl.ConnectionManager.LowWater, GracePeriod: cl.ConnectionManager.GracePeriod.D()}
	hostCfg.ResourceMgr = p2p.ResourceMgrConfig{Enabled: cl.ResourceManager.Enabled, MemoryLimitBytes: cl.ResourceManager.MemoryLimitBytes, FileDescriptorsLimit: cl.ResourceManager.FileDescriptorsLimit}
	hostCfg.RelayService = cl.EnableRelayHop
	hostCfg.NATPortMap = cl.EnableNATPortMap
	hostCfg.AutoNAT = cl.EnableAutoNAT
	hostCfg.NATService = cl.EnableNATService
	hostCfg.RelayClient = cl.EnableRelayClient
	hostCfg.HolePunching = cl.EnableHolePunching
	hostCfg.ResolveDNS = cl.ResolveDNS
	hostCfg.Log = logging.For("p2p")
	bandwidth := metrics.NewBandwidthCounter()
	hostCfg.Bandwidth = bandwidth
	if p.Host, err = p2p.NewHost(ctx, hostCfg, ident); err != nil {
		return nil, err
	}
	peerstorePath := cl.PeerstoreFile
	if peerstorePath == "" {
		peerstorePath = p2p.PeerstoreFile
	}
	if !filepath.IsAbs(peerstorePath) {
		peerstorePath = filepath.Join(dir, peerstorePath)
	}
	if p.peerFile, err = p2p.OpenPeerFile(p.Host, peerstorePath, cl.PeerAddresses, p2p.DefaultSaveDelay, logging.For("p2p")); err != nil {
		return nil, err
	}
	ps, err := newPubSub(ctx, p.Host, cl.PubSub)
	if err != nil {
		return nil, fmt.Errorf("pubsub: %w", err)
	}

	ih := cfg.IPFSConnector.IPFSHTTP
	conn, err := ipfsconn.New(ipfsconn.Config{
		NodeMultiaddress:      ih.NodeMultiaddress,
		IPFSRequestTimeout:    ih.IPFSRequestTimeout.D(),
		ConnectSwarmsDelay:    ih.ConnectSwarmsDelay.D(),
		PinTimeout:            ih.PinTimeout.D(),
		UnpinTimeout:          ih.UnpinTimeout.D(),
		RepoGCTimeout:         ih.RepoGCTimeout.D(),
		UnpinDisable:          ih.UnpinDisable,
		MaxConcurrentRequests: ih.MaxConcurrentRequests,
	}, logging.For("ipfsconn"))
	if err != nil {
		return nil, err
	}
	if err := conn.RegisterMetrics(p.Metrics); err != nil {
		return nil, err
	}
	if err := p.Metrics.Register(pinGauges(p.DB)); err != nil {
		return nil, fmt.Errorf("pin metrics: %w", err)
	}
	policyPath := cl.PolicyFile
	if policyPath != "" && !filepath.IsAbs(policyPath) {
		policyPath = filepath.Join(dir, policyPath)
	}
	pol, err := policy.NewHolder(policyPath, policy.Options{Timeout: cl.PolicyTimeout.D(), Registerer: p.Metrics})
	if err != nil {
		return nil, fmt.Errorf("cluster.policy_file: %w", err)
	}
	st := cfg.PinTracker.Stateless
	p.Tracker = pintracker.New(pintracker.Config{
		Peer:               ident.ID,
		PeerName:           cl.Peername,
		ConcurrentPins:     st.ConcurrentPins,
		MaxQueueSize:       st.MaxPinQueueSize,
		PriorityMaxAge:     st.PriorityPinMaxAge.D(),
		PriorityMaxRetries: st.PriorityPinMaxRetries,
		RetryMinDelay:      st.RetryMinDelay.D(),
		RetryMaxDelay:      st.RetryMaxDelay.D(),
		Retry:              retryDecision(pol),
		// p.Cluster is set below, before the tracker starts.
		Handoff: func(ctx context.Context, pin api.Pin) error { return p.Cluster.Handoff(ctx, pin) },
	}, conn, p.DB, p.DB, logging.For("pintracker"))

	if p.gossip, err = monitor.StartGossip(ps, monitor.New(), ident.ID, logging.For("monitor")); err != nil {
		return nil, err
	}
	inf := cfg.Informer
	informers := []cluster.Informer{
		&informer.Disk{IPFS: conn, Peer: ident.ID, MetricTTL: inf.Disk.MetricTTL.D(), MetricType: inf.Disk.MetricType},
		&informer.Tags{Tags: inf.Tags.Tags, Peer: ident.ID, MetricTTL: inf.Tags.MetricTTL.D()},
		&informer.Counter{MetricName: "pinqueue", Count: p.Tracker.QueueSize, Peer: ident.ID,
			MetricTTL: inf.PinQueue.MetricTTL.D(), Bucket: inf.PinQueue.WeightBucketSize, Negative: true},
		// The pins this peer's kubo holds, as the reference counts kubo's
		// pins: the pinset's size is the same on every peer. Allocated by
		// numpin, a pin goes to the peers holding fewest (the
		// reference's weighs every peer the same).
		&informer.Counter{MetricName: "numpin", Count: func() int { return p.DB.CountStatus()[api.TrackerStatusPinned] },
			Peer: ident.ID, MetricTTL: inf.NumPin.MetricTTL.D(), Negative: true},
	}
	warnUnpublished(cfg.Allocator.Balanced.AllocateBy, inf)
	p.Cluster = cluster.New(cluster.Config{
		Peer:                    ident.ID,
		PeerName:                cl.Peername,
		ReplicationFactorMin:    cl.ReplicationFactorMin,
		ReplicationFactorMax:    cl.ReplicationFactorMax,
		StateSyncInterval:       cl.StateSyncInterval.D(),
		PinRecoverInterval:      cl.PinRecoverInterval.D(),
		PingInterval:            cl.MonitorPingInterval.D(),
		CheckInterval:           cfg.Monitor.PubsubMon.CheckInterval.D(),
		ClusterName:             cfg.Consensus.CRDT.ClusterName,
		DisableRepinning:        cl.DisableRepinning,
		FollowerMode:            cl.FollowerMode,
		PinOnlyOnTrustedPeers:   cl.PinOnlyOnTrustedPeers,
		PinOnlyOnUntrustedPeers: cl.PinOnlyOnUntrustedPeers,
		OpenBlocks:              func(ctx context.Context) cluster.BlockWriter { return conn.BlockStream(ctx) },
		ConnectSwarmsDelay:      ih.ConnectSwarmsDelay.D(),
		Bandwidth:               bandwidth,
	}, p.DB, p.Tracker, conn, p.gossip, informers, &allocator.Allocator{
		AllocateBy:   cfg.Allocator.Balanced.AllocateBy,
		MinFreeSpace: freeSpaceFloor(cfg.Allocator.Balanced.MinFreeSpace, inf.Disk.MetricType),
	}, logging.For("cluster"))

	cc := cfg.Consensus.CRDT
	if p.Consensus, err = crdt.New(crdt.Config{
		ClusterName:         cc.ClusterName,
		TrustedPeers:        trusted(cc.TrustedPeers, bootstrap, opts.NoTrust),
		Batching:            crdt.BatchingConfig{MaxBatchSize: cc.Batching.MaxBatchSize, MaxBatchAge: cc.Batching.MaxBatchAge.D(), MaxQueueSize: cc.Batching.MaxQueueSize},
		RepairInterval:      cc.RepairInterval.D(),
		RebroadcastInterval: cc.RebroadcastInterval.D(),
		DatastoreNamespace:  cc.DatastoreNamespace,
		DAGSyncTimeout:      cc.DAGSyncTimeout.D(),
		FsyncAcks:           cc.FsyncAcks,
	}, p.Host, ps, p.DB, p.Cluster, logging.For("crdt")); err != nil {
		return nil, err
	}
	if err := p.Metrics.Register(crdtGauges(p.Consensus.Stats)); err != nil {
		return nil, fmt.Errorf("crdt metrics: %w", err)
	}
	p.Cluster.SetConsensus(p.Consensus)
	if policyPath != "" {
		p.Cluster.SetPolicy(pol)
	}
	p.gossip.OnPeerJoin(p.Cluster.PeerJoined)
	p.gossip.Accept(p.Cluster.AcceptMetric)
	p.RPC = p2p.NewRPC(p.Host, p2p.Config{IsTrusted: p.Consensus.IsTrusted}, logging.For("rpc"))
	p.Cluster.SetNetwork(p.Host, p.RPC, p.Consensus.IsTrusted)

	if err = p.Tracker.Start(); err != nil {
		return nil, err
	}
	p.Cluster.Start()
	p.joined = join(ctx, p.Host, p.peerFile, bootstrap, cl.DialPeerTimeout.D(), cl.MonitorPingInterval.D())

	if r := cfg.API.RestAPI; r != nil {
		inDir := func(f string) string {
			if f != "" && !filepath.IsAbs(f) {
				return filepath.Join(dir, f)
			}
			return f
		}
		p.REST, err = restapi.New(restapi.Config{
			Listen:               r.HTTPListenMultiaddress,
			ReadTimeout:          r.ReadTimeout.D(),
			ReadHeaderTimeout:    r.ReadHeaderTimeout.D(),
			WriteTimeout:         r.WriteTimeout.D(),
			IdleTimeout:          r.IdleTimeout.D(),
			MaxHeaderBytes:       r.MaxHeaderBytes,
			Headers:              r.Headers,
			HTTPLogFile:          inDir(r.HTTPLogFile),
			BasicAuthCredentials: r.BasicAuthCredentials,
			SSLCertFile:          inDir(r.SSLCertFile),
			SSLKeyFile:           inDir(r.SSLKeyFile),
			AddIdleTimeout:       r.AddIdleTimeout.D(),
			CORS: cors.Options{
				AllowedOrigins:   r.CORSAllowedOrigins,
				AllowedMethods:   r.CORSAllowedMethods,
				AllowedHeaders:   r.CORSAllowedHeaders,
				ExposedHeaders:   r.CORSExposedHeaders,
				AllowCredentials: r.CORSAllowCredentials,
				MaxAge:           int(r.CORSMaxAge.D() / time.Second),
			},
		}, p.Cluster, logging.For("restapi"), logging.For("restapilog"))
		if err != nil {
			return nil, err
		}
		if err = p.REST.Listen(); err != nil {
			return nil, err
		}
		p.REST.Serve()
	}
	return p, nil
}

// retryDecision asks the retry_priority hook what to do with a failed
// pin; without an answer (no hook, nil, or a failed call, which the holder
// logs and counts) the tracker's built-in rule applies.
// newPubSub starts GossipSub with cluster.pubsub's settings; the mesh
// degrees are GossipSub's own times d_factor, as in the reference.
func newPubSub(ctx context.Context, h host.Host, cfg config.PubSub) (*pubsub.PubSub, error) {
	params := pubsub.DefaultGossipSubParams()
	params.HeartbeatInterval = cfg.HeartbeatInterval.D()
	params.HistoryGossip = cfg.HistoryGossip
	params.HistoryLength = cfg.HistoryLength
	params.D *= cfg.DFactor
	params.Dlo *= cfg.DFactor
	params.Dhi *= cfg.DFactor
	params.Dscore *= cfg.DFactor
	params.Dout *= cfg.DFactor
	params.Dlazy *= cfg.DFactor
	return pubsub.NewGossipSub(ctx, h,
		pubsub.WithGossipSubParams(params),
		pubsub.WithFloodPublish(cfg.FloodPublish),
		pubsub.WithSeenMessagesTTL(cfg.SeenMessagesTTL.D()),
	)
}

func retryDecision(pol *policy.Holder) func(api.Pin, int, error) (pintracker.Retry, bool) {
	classes := map[policy.RetryClass]pintracker.RetryClass{
		policy.RetryPriority: pintracker.RetryPriority,
		policy.RetryNormal:   pintracker.RetryNormal,
		policy.RetryFailed:   pintracker.RetryFailed,
	}
	return func(pin api.Pin, attempts int, cause error) (pintracker.Retry, bool) {
		if pol.Policy() == nil {
			return pintracker.Retry{}, false
		}
		r, err := pol.RetryPriority(context.Background(), pin, attempts, cause.Error())
		class, ok := classes[r.Class]
		if err != nil || !ok {
			return pintracker.Retry{}, false
		}
		return pintracker.Retry{Class: class, Delay: r.Delay,
			Reason: fmt.Sprintf("retry_priority answered \"failed\" after %d attempts", attempts)}, true
	}
}

// trusted is the trusted_peers list plus the bootstrap peers, which the
// daemon trusts unless told not to, as the reference does.
func trusted(list []string, bootstrap []peer.AddrInfo, noTrust bool) []string {
	out := append([]string(nil), list...)
	if noTrust {
		return out
	}
	for _, b := range bootstrap {
		out = append(out, b.ID.String())
	}
	return out
}

func parseBootstrap(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("--bootstrap %q: %w", a, err)
		}
		info, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return nil, fmt.Errorf("--bootstrap %q: needs /p2p/<peer ID>: %w", a, err)
		}
		out = append(out, *info)
	}
	return out, nil
}

// join connects to the bootstrap peers and to known peers from the
// peerstore, in the background: a peer that is down must not stop this
// one from starting. While the peer is connected to nobody, as when it
// started before the others, it tries again every interval (the ping
// interval); once connected, the cluster's own reconnection takes over. The
// returned channel is closed when the goroutine has ended, after ctx is
// done.
func join(ctx context.Context, h host.Host, pf *p2p.PeerFile, bootstrap []peer.AddrInfo, timeout, interval time.Duration) <-chan struct{} {
	log := logging.For("daemon")
	done := make(chan struct{})
	attempt := func(first bool) {
		for _, b := range bootstrap {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			// join paces its attempts: libp2p's dial backoff would
			// refuse the next ones for up to minutes.
			cctx = network.WithForceDirectDial(cctx, "cluster bootstrap")
			err := h.Connect(cctx, b)
			cancel()
			if err != nil {
				ev := log.Debug()
				if first {
					ev = log.Warn()
				}
				ev.Err(err).Stringer("peer", b.ID).Msg("bootstrap: cannot connect")
				continue
			}
			log.Info().Stringer("peer", b.ID).Msg("bootstrap: connected")
		}
		pf.Bootstrap(ctx, 3, timeout)
	}
	go func() {
		defer close(done)
		attempt(true)
		known := slices.DeleteFunc(h.Peerstore().PeersWithAddrs(), func(p peer.ID) bool { return p == h.ID() })
		if len(h.Network().Peers()) == 0 && (len(bootstrap) > 0 || len(known) > 0) {
			// A peer with another secret fails the handshake silently:
			// its dials only time out.
			log.Warn().Dur("retry_every", interval).Msg("connected to no other peer, retrying; if they are up, check that the cluster secret is the same on every peer")
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if len(h.Network().Peers()) == 0 {
				attempt(false)
			}
		}
	}()
	return done
}

// Stop shuts the components down: the API first so that no request arrives
// during the rest, the state last. It may be called on a peer that did not
// fully start.
func (p *Peer) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p.REST != nil {
		p.REST.Close(ctx)
	}
	if p.observer != nil {
		if err := p.observer.Close(ctx); err != nil {
			log := logging.For("daemon")
			log.Warn().Err(err).Msg("metrics endpoint shutdown")
		}
	}
	if p.Cluster != nil {
		p.Cluster.Close()
	}
	if p.Tracker != nil {
		p.Tracker.Close()
	}
	if p.RPC != nil {
		p.RPC.Close()
	}
	if p.Consensus != nil {
		if err := p.Consensus.Shutdown(ctx); err != nil && !errors.Is(err, crdt.ErrShutdown) {
			log := logging.For("daemon")
			log.Warn().Err(err).Msg("consensus shutdown")
		}
	}
	if p.gossip != nil {
		p.gossip.Close()
	}
	if p.cancel != nil {
		p.cancel()
	}
	if p.joined != nil {
		<-p.joined
	}
	if p.peerFile != nil {
		p.peerFile.Close()
	}
	if p.Host != nil {
		p.Host.Close()
	}
	if p.DB != nil {
		p.DB.Close()
	}
}

// freeSpaceFloor is the allocator's free-space floor: min_free_space when
// the disk informer publishes freespace, none when it publishes reposize
// instead. The floor needs every peer's freespace metric, so with reposize
// (a 1.1.x configuration that knows nothing of our floor) it would refuse
// every allocation.
func freeSpaceFloor(minFree uint64, diskMetric string) uint64 {
	if diskMetric == allocator.FreeSpaceMetric {
		return minFree
	}
	if minFree > 0 {
		log := logging.For("daemon")
		log.Info().Str("metric_type", diskMetric).Uint64("min_free_space", minFree).
			Msg("allocator.balanced.min_free_space does not apply: the disk informer publishes no freespace metric")
	}
	return 0
}

// warnUnpublished warns about allocate_by metrics this peer publishes
// none of: a peer that lacks one of them gets no allocation, so a typo
// there, or a tag no peer has, refuses every pin with a finite
// replication factor. Other peers may publish it (a tag set on some
// peers only), hence a warning, not an error.
func warnUnpublished(allocateBy []string, inf config.Informers) {
	for _, name := range allocateBy {
		tag, isTag := strings.CutPrefix(name, "tag:")
		switch {
		case name == inf.Disk.MetricType, name == "pinqueue", name == "numpin":
		case isTag && inf.Tags.Tags[tag] != "":
		default:
			log := logging.For("daemon")
			log.Warn().Str("metric", name).
				Msg("allocator.balanced.allocate_by names a metric this peer does not publish: peers without it get no allocation")
		}
	}
}
