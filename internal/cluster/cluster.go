// Package cluster is the peer core: it takes pin and unpin requests, fills
// in replication defaults, chooses allocations, commits through consensus,
// applies committed changes to the local state and the tracker, and answers
// status, recover and peer questions. The pin flow reads top to bottom in
// pin.go.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/allocator"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
	"ipfs-cluster/internal/state"
	"ipfs-cluster/internal/stripe"
)

// Consensus commits changes to the shared pinset. Implementations apply
// every committed change, their own and other peers', through Applier.
type Consensus interface {
	LogPin(ctx context.Context, pin api.Pin) error
	// LogUnpin's at is when the unpin was asked.
	LogUnpin(ctx context.Context, pin api.Pin, at time.Time) error
}

// State is the shared pinset as applied on this peer.
type State interface {
	// PutApplied and DeleteApplied need not sync: the consensus log that
	// calls ApplyPin and ApplyUnpin is durable and replays what a crash
	// cut short.
	PutApplied(pin api.Pin) error
	// DeleteApplied's askedHere is when this peer asked the unpin (zero
	// for another peer's); OwnUnpins lists those asked since a time.
	DeleteApplied(pin api.Pin, askedHere time.Time) error
	OwnUnpins(since time.Time, fn func(c api.Cid, removed, askedHere time.Time) error) error
	// RemovedAt returns the timestamp of the version of a pin last
	// removed here; ForgetRemoved drops that record.
	RemovedAt(c api.Cid) (time.Time, bool, error)
	ForgetRemoved(c api.Cid) error
	Get(c api.Cid) (api.Pin, error)
	ListType(ctx context.Context, types api.PinType, fn func(api.Pin) error) error
	ListAllocatedTo(ctx context.Context, p peer.ID, fn func(api.Cid) error) error
	AllocatedPeers(ctx context.Context) ([]peer.ID, error)
	Len() int
}

// Tracker drives kubo for the pins allocated here.
type Tracker interface {
	Track(pin api.Pin) error
	Untrack(pin api.Pin) error
	Status(ctx context.Context, c api.Cid) (api.PinInfo, error)
	StatusAll(ctx context.Context, filter api.TrackerStatus, fn func(api.PinInfo) error) error
	Recover(ctx context.Context, c api.Cid) (api.PinInfo, error)
	// RecoverAll requeues what failed; final includes the failures the
	// retry policy made final, which only an operator's recover revives.
	RecoverAll(ctx context.Context, final bool, fn func(api.PinInfo) error) error
	QueueSize() int
}

// IPFS is what the core asks kubo directly.
type IPFS interface {
	ID(ctx context.Context) (api.IPFSID, error)
	SwarmPeers(ctx context.Context) ([]peer.ID, error)
	SwarmConnect(ctx context.Context, addrs []api.Multiaddr) error
	Resolve(ctx context.Context, path string) (api.Cid, error)
	RepoGC(ctx context.Context, fn func(api.IPFSRepoGC) error) error
}

// Config holds the core's settings.
type Config struct {
	Peer                 peer.ID
	PeerName             string
	ReplicationFactorMin int
	ReplicationFactorMax int
	StateSyncInterval    time.Duration
	PinRecoverInterval   time.Duration
	// PingInterval is how often this peer announces it is up; its ping
	// metric lives twice as long.
	PingInterval time.Duration
	// ClusterName is consensus.crdt.cluster_name, announced in the ping
	// (see AcceptMetric).
	ClusterName string
	// CheckInterval is how often expired metrics raise alerts
	// (monitor.pubsubmon.check_interval); 0 means PingInterval.
	CheckInterval time.Duration
	// DisableRepinning leaves the pins of a peer that went down where
	// they are instead of allocating them elsewhere.
	DisableRepinning bool
	// PinOnlyOnTrustedPeers never allocates to peers outside
	// trusted_peers.
	PinOnlyOnTrustedPeers bool
	// PinOnlyOnUntrustedPeers never allocates to peers in trusted_peers.
	PinOnlyOnUntrustedPeers bool
	// FollowerMode makes a peer that pins what the trusted peers decide
	// and changes nothing: pins, unpins and adds are refused, status and
	// recover stay local, and it neither repins, unpins expired pins nor
	// corrects the pinset (see ErrFollowerMode).
	FollowerMode bool
	// OpenBlocks opens a stream that stores blocks in this peer's kubo,
	// for adds.
	OpenBlocks func(ctx context.Context) BlockWriter
	// ConnectSwarmsDelay is how long after start, and then between two
	// checks, this peer connects its kubo to the other peers' kubo
	// daemons it is not connected to (connect_swarms_delay); 0 never.
	ConnectSwarmsDelay time.Duration
	// Bandwidth reports the traffic of this peer's libp2p host; nil
	// reports none.
	Bandwidth BandwidthMeter
}

// BandwidthMeter is the libp2p host's traffic counter.
type BandwidthMeter interface {
	GetBandwidthByProtocol() map[protocol.ID]metrics.Stats
}

// Sentinel errors the APIs map to status codes.
var (
	// ErrNotFound: the CID is not in the pinset (404).
	ErrNotFound = state.ErrNotFound
	// ErrInvalidRequest wraps request errors (400).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotEnoughPeers: allocation could not meet replication_factor_min.
	ErrNotEnoughPeers = allocator.ErrNotEnoughPeers
	// ErrUnknownPeer: the peer is not in the peerset and holds no
	// allocation (404).
	ErrUnknownPeer = errors.New("not a cluster peer, and no pin is allocated to it")
	// ErrHandoffPending: this peer keeps a pin allocated elsewhere until
	// the new allocations hold it (Handoff).
	ErrHandoffPending = errors.New("release pending")
	// ErrFollowerMode: a follower peer refuses to change the pinset
	// (403); the reference's words.
	ErrFollowerMode = errors.New("this peer is configured to be in follower mode. Write operations are disabled")
)

// Cluster is the peer core. Its methods are safe for concurrent use.
type Cluster struct {
	started   time.Time // when New ran (see warmUp)
	cfg       Config
	consensus Consensus
	state     State
	tracker   Tracker
	ipfs      IPFS
	monitor   Monitor
	informers []Informer
	allocator Allocator
	host      host.Host
	rpc       *p2p.RPC
	isTrusted func(peer.ID) bool
	policy    Policy // nil: no policy
	log       zerolog.Logger
	// peerJoined wakes the republishing of metrics (capacity 1).
	peerJoined chan struct{}
	expiry     expiry
	// pinLocks serialise the changes of one CID on this peer: pins,
	// unpins and repins (see stale.go).
	pinLocks stripe.Locks
	// recent holds the unpins and updates this peer committed lately,
	// fixes the corrections of stale repins (see stale.go).
	recent recentOps
	fixes  corrections
	// repinMu serialises the moves away from dead peers.
	repinMu sync.Mutex
	// foreign holds the peers of another cluster_name already logged.
	foreign sync.Map
	// dialing holds the peers connectPeerset is dialing.
	dialing sync.Map

	ipfsMu sync.RWMutex
	ipfsID api.IPFSID

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the core. Consensus and the network are set with
// SetConsensus and SetNetwork, because they need the core themselves.
func New(cfg Config, state State, tracker Tracker, ipfs IPFS, monitor Monitor, informers []Informer, alloc Allocator, log zerolog.Logger) *Cluster {
	c := &Cluster{cfg: cfg, state: state, tracker: tracker, ipfs: ipfs, monitor: monitor, informers: informers, allocator: alloc, log: log, started: time.Now()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.ipfsID = api.IPFSID{Error: "kubo not contacted yet"}
	c.recallUnpins()
	c.peerJoined = make(chan struct{}, 1)
	c.expiry.wake = make(chan struct{}, 1)
	c.fixes.wake = make(chan struct{}, 1)
	return c
}

// SetPolicy installs the operator's policy; it must be called before
// Start. Without it every hook has its built-in behaviour.
func (c *Cluster) SetPolicy(p Policy) { c.policy = p }

// SetConsensus wires the consensus component; it must be called before
// Start.
func (c *Cluster) SetConsensus(cons Consensus) { c.consensus = cons }

// Start launches the periodic tasks: kubo identity refresh, metrics,
// expiry and recover.
func (c *Cluster) Start() {
	c.refreshIPFSID()
	c.every(10*time.Second, c.refreshIPFSID)
	c.startMetrics()
	if c.cfg.ConnectSwarmsDelay > 0 {
		unreachable := map[peer.ID]bool{}
		c.every(c.cfg.ConnectSwarmsDelay, func() { c.connectKubos(unreachable) })
	}
	if !c.cfg.FollowerMode {
		c.wg.Go(c.expiryLoop)
		c.wg.Go(c.correctLoop)
	}
	c.every(c.cfg.PinRecoverInterval, func() {
		n := 0
		err := c.tracker.RecoverAll(c.ctx, false, func(api.PinInfo) error { n++; return nil })
		if err != nil && c.ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("periodic recover")
		}
		if n > 0 {
			c.log.Info().Int("requeued", n).Msg("periodic recover")
		}
	})
}

// Close stops the periodic tasks.
func (c *Cluster) Close() {
	if c.host != nil {
		c.host.RemoveStreamHandler(blocksProtocol)
	}
	c.cancel()
	c.wg.Wait()
}

func (c *Cluster) every(d time.Duration, fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-tick.C:
				fn()
			}
		}
	}()
}

func (c *Cluster) refreshIPFSID() {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	id, err := c.ipfs.ID(ctx)
	if err != nil {
		id = api.IPFSID{Error: err.Error()}
	}
	c.ipfsMu.Lock()
	c.ipfsID = id
	c.ipfsMu.Unlock()
}

func (c *Cluster) kuboID() api.IPFSID {
	c.ipfsMu.RLock()
	defer c.ipfsMu.RUnlock()
	return c.ipfsID
}

// ID describes this peer. The kubo part is the last answer kubo gave (it
// is refreshed in the background), so /id answers at once even when kubo
// is down.
func (c *Cluster) ID(ctx context.Context) api.ID { return c.localID(ctx) }

func (c *Cluster) localID(context.Context) api.ID {
	ipfsID := c.kuboID()
	peers := c.peerset()
	// The other peers' addresses, as their pings announced them.
	others := []api.Multiaddr{}
	pings := c.peerNames()
	for _, p := range peers {
		if p != c.cfg.Peer {
			others = append(others, pings[p].ClusterAddresses...)
		}
	}
	return api.ID{
		ID:                    c.cfg.Peer,
		Addresses:             c.addrs(),
		ClusterPeers:          peers,
		ClusterPeersAddresses: others,
		Version:               api.Version,
		RPCProtocolVersion:    api.RPCProtocol,
		IPFS:                  ipfsID,
		Peername:              c.cfg.PeerName,
		PolicySHA256:          c.PolicyHash(),
	}
}

// PinGet returns the pin of c in the pinset.
func (c *Cluster) PinGet(ctx context.Context, ci api.Cid) (api.Pin, error) {
	pin, err := c.state.Get(ci)
	if err != nil {
		return api.Pin{}, fmt.Errorf("pin %s: %w", ci, err)
	}
	return pin, nil
}

// Pins streams the pinset, keeping pins whose type is in filter.
func (c *Cluster) Pins(ctx context.Context, filter api.PinType, fn func(api.Pin) error) error {
	return c.state.ListType(ctx, filter, fn)
}
