// Package daemon assembles a cluster peer from its configuration: the
// state store, the kubo connector, the pin tracker, the core and the APIs.
// The daemon command and the tests that need a whole peer both use it.
package daemon

import (
	"context"
	"path/filepath"
	"time"

	"ipfs-cluster/internal/allocator"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/informer"
	"ipfs-cluster/internal/ipfsconn"
	"ipfs-cluster/internal/logging"
	"ipfs-cluster/internal/monitor"
	"ipfs-cluster/internal/pintracker"
	"ipfs-cluster/internal/restapi"
	"ipfs-cluster/internal/state"
)

// Peer is a running cluster peer: every component, started in dependency
// order and stopped in reverse.
type Peer struct {
	DB      *state.DB
	Tracker *pintracker.Tracker
	Cluster *cluster.Cluster
	REST    *restapi.Server
}

// Start builds and starts every component of the peer whose configuration
// folder is dir. On error, what was started is stopped again.
func Start(dir string, cfg *config.Config, ident *config.Identity) (p *Peer, err error) {
	p = &Peer{}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	if p.DB, err = state.Open(filepath.Join(dir, "pebble"), logging.For("state")); err != nil {
		return nil, err
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
	st := cfg.PinTracker.Stateless
	p.Tracker = pintracker.New(pintracker.Config{
		Peer:               ident.ID,
		PeerName:           cfg.Cluster.Peername,
		ConcurrentPins:     st.ConcurrentPins,
		MaxQueueSize:       st.MaxPinQueueSize,
		PriorityMaxAge:     st.PriorityPinMaxAge.D(),
		PriorityMaxRetries: st.PriorityPinMaxRetries,
		RetryMinDelay:      st.RetryMinDelay.D(),
		RetryMaxDelay:      st.RetryMaxDelay.D(),
	}, conn, p.DB, p.DB, logging.For("pintracker"))

	inf := cfg.Informer
	informers := []cluster.Informer{
		&informer.Disk{IPFS: conn, Peer: ident.ID, MetricTTL: inf.Disk.MetricTTL.D(), MetricType: inf.Disk.MetricType},
		&informer.Tags{Tags: inf.Tags.Tags, Peer: ident.ID, MetricTTL: inf.Tags.MetricTTL.D()},
		&informer.Counter{MetricName: "pinqueue", Count: p.Tracker.QueueSize, Peer: ident.ID,
			MetricTTL: inf.PinQueue.MetricTTL.D(), Bucket: inf.PinQueue.WeightBucketSize, Negative: true},
		&informer.Counter{MetricName: "numpin", Count: p.DB.Len, Peer: ident.ID, MetricTTL: inf.NumPin.MetricTTL.D()},
	}
	p.Cluster = cluster.New(cluster.Config{
		Peer:                 ident.ID,
		PeerName:             cfg.Cluster.Peername,
		ReplicationFactorMin: cfg.Cluster.ReplicationFactorMin,
		ReplicationFactorMax: cfg.Cluster.ReplicationFactorMax,
		StateSyncInterval:    cfg.Cluster.StateSyncInterval.D(),
		PinRecoverInterval:   cfg.Cluster.PinRecoverInterval.D(),
	}, p.DB, p.Tracker, conn, monitor.New(), informers, &allocator.Allocator{
		AllocateBy:   cfg.Allocator.Balanced.AllocateBy,
		MinFreeSpace: cfg.Allocator.Balanced.MinFreeSpace,
	}, logging.For("cluster"))
	p.Cluster.SetConsensus(cluster.NewSolo(ident.ID, p.Cluster))

	if err = p.Tracker.Start(); err != nil {
		return nil, err
	}
	p.Cluster.Start()

	if r := cfg.API.RestAPI; r != nil {
		logFile := r.HTTPLogFile
		if logFile != "" && !filepath.IsAbs(logFile) {
			logFile = filepath.Join(dir, logFile)
		}
		p.REST, err = restapi.New(restapi.Config{
			Listen:            r.HTTPListenMultiaddress,
			ReadTimeout:       r.ReadTimeout.D(),
			ReadHeaderTimeout: r.ReadHeaderTimeout.D(),
			WriteTimeout:      r.WriteTimeout.D(),
			IdleTimeout:       r.IdleTimeout.D(),
			MaxHeaderBytes:    r.MaxHeaderBytes,
			Headers:           r.Headers,
			HTTPLogFile:       logFile,
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

// Stop shuts the components down: the API first so that no request arrives
// during the rest, the state last. It may be called on a peer that did not
// fully start.
func (p *Peer) Stop() {
	if p.REST != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p.REST.Close(ctx)
		cancel()
	}
	if p.Cluster != nil {
		p.Cluster.Close()
	}
	if p.Tracker != nil {
		p.Tracker.Close()
	}
	if p.DB != nil {
		p.DB.Close()
	}
}
