package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/crypto/blake2b"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
)

// RPC method names served to other peers.
const (
	rpcID           = "Cluster.ID"
	rpcStatus       = "PinTracker.Status"
	rpcStatusAll    = "PinTracker.StatusAll"
	rpcRecover      = "PinTracker.Recover"
	rpcRecoverAll   = "PinTracker.RecoverAll"
	rpcRepoGCLocal  = "Cluster.RepoGCLocal"
	rpcPolicyReload = "Cluster.PolicyReload"
	rpcForgetPeer   = "Cluster.ForgetPeer"
	rpcPinVersions  = "Cluster.PinVersions"
	peerCallTimeout = 15 * time.Second
	// peerAnswerTimeout bounds the check that a peer is running.
	peerAnswerTimeout = 3 * time.Second
)

// SetNetwork gives the core its libp2p host, its peer RPC and whom it
// trusts, and registers the methods other peers call. It must be called
// before Start.
func (c *Cluster) SetNetwork(h host.Host, r *p2p.RPC, isTrusted func(peer.ID) bool) {
	c.host, c.rpc, c.isTrusted = h, r, isTrusted
	h.SetStreamHandler(blocksProtocol, c.serveBlocks)
	p2p.Handle(r, rpcConnections, p2p.Trusted, func(ctx context.Context, _ peer.ID, _ struct{}) (connections, error) {
		return c.localConnections(ctx), nil
	})
	p2p.Handle(r, rpcID, p2p.Open, func(ctx context.Context, _ peer.ID, _ struct{}) (api.ID, error) {
		return c.localID(ctx), nil
	})
	p2p.Handle(r, rpcStatus, p2p.Trusted, func(ctx context.Context, _ peer.ID, ci api.Cid) (api.PinInfo, error) {
		return c.localStatus(ctx, ci)
	})
	p2p.HandleStream(r, rpcStatusAll, p2p.Trusted, func(ctx context.Context, _ peer.ID, filter api.TrackerStatus, send func(api.PinInfo) error) error {
		return c.localStatusAll(ctx, filter, send)
	})
	p2p.Handle(r, rpcRecover, p2p.Trusted, func(ctx context.Context, _ peer.ID, ci api.Cid) (api.PinInfo, error) {
		pi, err := c.tracker.Recover(ctx, ci)
		return c.withIPFS(pi), err
	})
	p2p.HandleStream(r, rpcRecoverAll, p2p.Trusted, func(ctx context.Context, _ peer.ID, _ struct{}, send func(api.PinInfo) error) error {
		return c.tracker.RecoverAll(ctx, true, func(pi api.PinInfo) error { return send(c.withIPFS(pi)) })
	})
	p2p.Handle(r, rpcPolicyReload, p2p.Trusted, func(context.Context, peer.ID, struct{}) (api.PolicyReload, error) {
		return c.reloadLocal(), nil
	})
	// A follower's kubo holds what its operator keeps too: the trusted
	// peers do not collect its garbage, as in the reference.
	gcLevel := p2p.Trusted
	if c.cfg.FollowerMode {
		gcLevel = p2p.Closed
	}
	p2p.Handle(r, rpcRepoGCLocal, gcLevel, func(ctx context.Context, _ peer.ID, _ struct{}) (api.RepoGC, error) {
		return c.localRepoGC(ctx), nil
	})
	p2p.Handle(r, rpcPinVersions, p2p.Trusted, func(_ context.Context, _ peer.ID, cids []api.Cid) ([]pinVersion, error) {
		if len(cids) > versionBatch {
			return nil, fmt.Errorf("%w: %d pins asked, at most %d", ErrInvalidRequest, len(cids), versionBatch)
		}
		return c.localVersions(cids)
	})
	p2p.Handle(r, rpcForgetPeer, p2p.Trusted, func(_ context.Context, _ peer.ID, p peer.ID) (struct{}, error) {
		c.forget(p)
		return struct{}{}, nil
	})
}

// others returns peers without this one, in a new slice.
func (c *Cluster) others(peers []peer.ID) []peer.ID {
	return slices.DeleteFunc(slices.Clone(peers), func(p peer.ID) bool { return p == c.cfg.Peer })
}

// peerset is this peer and every peer whose ping metric is valid: the
// peers the cluster counts as up.
func (c *Cluster) peerset() []peer.ID {
	peers := []peer.ID{c.cfg.Peer}
	for _, m := range c.monitor.LatestMetrics(pingMetric) {
		if m.Peer != c.cfg.Peer {
			peers = append(peers, m.Peer)
		}
	}
	slices.Sort(peers)
	return peers
}

// peerNames maps every peer that ever sent a ping, up or down, to what
// its last ping announced, so status entries of peers that were not asked
// or did not answer still carry their name and kubo.
func (c *Cluster) peerNames() map[peer.ID]ping {
	names := map[peer.ID]ping{c.cfg.Peer: {PeerName: c.cfg.PeerName}}
	for _, m := range c.monitor.Last(pingMetric) {
		if p, err := decodePing(m.Value); err == nil {
			names[m.Peer] = p
		}
	}
	return names
}

// connectKubos connects this peer's kubo to the kubo daemons of the other
// live peers, at the addresses their pings announced, when it is not connected
// to them: a pin allocated here then finds the content the others hold
// even where kubo cannot discover them itself (a private network, no DHT).
// unreachable holds the kubo daemons the last attempt failed to reach, so
// that a daemon that stays unreachable is reported once; it belongs to the
// one goroutine that calls connectKubos.
func (c *Cluster) connectKubos(unreachable map[peer.ID]bool) {
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	connected, err := c.ipfs.SwarmPeers(ctx)
	if err != nil {
		c.log.Debug().Err(err).Msg("list kubo's connections")
		return
	}
	self := c.kuboID().ID
	// Live peers only: the kubo of a peer whose ping expired is likely
	// down too, and dialing it would wait for the timeout every round.
	for _, m := range c.monitor.LatestMetrics(pingMetric) {
		p := m.Peer
		pg, err := decodePing(m.Value)
		if err != nil {
			continue
		}
		kubo, err := peer.Decode(pg.IPFSID)
		if p == c.cfg.Peer || err != nil || kubo == self || slices.Contains(connected, kubo) {
			continue
		}
		suffix, err := ma.NewMultiaddr("/p2p/" + kubo.String())
		if err != nil {
			continue
		}
		addrs := make([]api.Multiaddr, 0, len(pg.IPFSAddresses))
		for _, a := range pg.IPFSAddresses {
			if a.Multiaddr == nil {
				continue
			}
			if _, err := a.ValueForProtocol(ma.P_P2P); err != nil {
				a = api.Multiaddr{Multiaddr: a.Encapsulate(suffix)}
			}
			addrs = append(addrs, a)
		}
		// One address that works is enough: the others' errors only
		// matter if kubo is still not connected afterwards.
		err = c.ipfs.SwarmConnect(ctx, addrs)
		if now, lerr := c.ipfs.SwarmPeers(ctx); lerr == nil && slices.Contains(now, kubo) {
			delete(unreachable, kubo)
			c.log.Info().Stringer("peer", p).Stringer("kubo", kubo).Msg("connected kubo to the peer's kubo")
			continue
		}
		ev := c.log.Debug()
		if !unreachable[kubo] {
			ev = c.log.Warn()
		}
		unreachable[kubo] = true
		ev.Err(err).Stringer("peer", p).Stringer("kubo", kubo).Int("addresses", len(addrs)).
			Msg("cannot connect kubo to the peer's kubo: pins held only there cannot be fetched")
	}
}

// connectPeerset dials, in the background, every peer that ever sent a
// ping and that this host is not connected to, at the addresses of its last
// ping: RPC then reaches every peer and not only those met at bootstrap, and
// two peers apart for longer than the ping's TTL, each of which no longer
// counts the other as up, find each other again once the network allows.
// A peer is dialed once at a time, at most every ping interval; a dead peer
// costs one failed dial per interval, as the reference's reconnection does.
func (c *Cluster) connectPeerset() {
	if c.host == nil {
		return
	}
	for _, m := range c.monitor.Last(pingMetric) {
		if m.Peer == c.cfg.Peer || c.host.Network().Connectedness(m.Peer) == network.Connected {
			continue
		}
		p, err := decodePing(m.Value)
		if err != nil || len(p.ClusterAddresses) == 0 {
			continue
		}
		info := peer.AddrInfo{ID: m.Peer}
		for _, a := range p.ClusterAddresses {
			if id, err := peer.AddrInfoFromP2pAddr(a.Multiaddr); err == nil && id.ID == m.Peer {
				info.Addrs = append(info.Addrs, id.Addrs...)
			}
		}
		if _, busy := c.dialing.LoadOrStore(info.ID, struct{}{}); busy {
			continue
		}
		live := m.Valid && !m.Expired()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer c.dialing.Delete(info.ID)
			ctx, cancel := context.WithTimeout(c.ctx, peerCallTimeout)
			defer cancel()
			// This loop paces the dials: libp2p's own backoff, which
			// grows to minutes, would hold off the first dial after a
			// long outage.
			ctx = network.WithForceDirectDial(ctx, "cluster peer redial")
			if err := c.host.Connect(ctx, info); err != nil {
				c.log.Debug().Err(err).Stringer("peer", info.ID).Msg("connect to peer")
				return
			}
			if !live {
				c.log.Info().Stringer("peer", info.ID).Msg("reconnected to a peer that was down")
			}
		}()
	}
}

// addrs lists the host's addresses with this peer's /p2p/ suffix.
func (c *Cluster) addrs() []api.Multiaddr {
	out := []api.Multiaddr{}
	if c.host == nil {
		return out
	}
	suffix, err := ma.NewMultiaddr("/p2p/" + c.cfg.Peer.String())
	if err != nil {
		return out
	}
	for _, a := range c.host.Addrs() {
		out = append(out, api.Multiaddr{Multiaddr: a.Encapsulate(suffix)})
	}
	return out
}

// Peers streams the ID of every peer in the peerset, asked in parallel;
// one that does not answer is listed with its error.
func (c *Cluster) Peers(ctx context.Context, fn func(api.ID) error) error {
	for _, r := range p2p.CallAll[api.ID](ctx, c.rpc, c.peerset(), rpcID, struct{}{}, peerCallTimeout) {
		id := r.Value
		if r.Err != nil {
			id = api.ID{ID: r.Peer, Error: r.Err.Error()}
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

// PeerAdd asks peer p for its identity, dialing it through the addresses
// this peer's peerstore holds. Under CRDT consensus there is no peerset to
// change: a peer that holds the secret and runs is a member, so adding one
// is checking that it answers, as the reference does.
func (c *Cluster) PeerAdd(ctx context.Context, p peer.ID) (api.ID, error) {
	ctx, cancel := context.WithTimeout(ctx, peerCallTimeout)
	defer cancel()
	var id api.ID
	if err := c.rpc.Call(ctx, p, rpcID, struct{}{}, &id); err != nil {
		return api.ID{ID: p, Error: err.Error()}, fmt.Errorf("add peer %s: %w", p, err)
	}
	if !slices.Contains(id.ClusterPeers, c.cfg.Peer) {
		id.ClusterPeers = append(id.ClusterPeers, c.cfg.Peer)
	}
	return id, nil
}

// statusFromPeers builds the global status of a pin: every peer of the
// peerset and every allocation is asked (in parallel, each with its own
// timeout), and a peer that cannot be reached shows cluster_error. The
// reference lists the peers outside the allocations as remote without
// asking them; asked, a peer still holding a pin moved away from it (see
// Handoff) says so, as the listing of every pin does. For a pin on every
// peer, the peers whose ping expired show cluster_error without being
// asked, as in the listing.
func (c *Cluster) statusFromPeers(ctx context.Context, ci api.Cid, method string) (api.GlobalPinInfo, error) {
	pin, err := c.state.Get(ci)
	switch {
	case err == nil:
	case isNotFound(err):
		pin = api.Pin{Cid: ci}
	default:
		return api.GlobalPinInfo{}, fmt.Errorf("status %s: %w", ci, err)
	}
	ask := c.peerset()
	for _, p := range pin.Allocations {
		if !slices.Contains(ask, p) {
			ask = append(ask, p)
		}
	}
	names := c.peerNames()
	var gpi api.GlobalPinInfo
	if err == nil && len(pin.Allocations) == 0 {
		// On every peer, so also on those down, which are not asked.
		for _, d := range c.downPeers() {
			gpi.Add(peerInfo(pin, d.peer, names[d.peer], api.TrackerStatusClusterError, time.Now(), d.reason()), nil)
		}
	}
	for _, r := range p2p.CallAll[api.PinInfo](ctx, c.rpc, ask, method, ci, peerCallTimeout) {
		if refused(r.Err) {
			continue
		}
		if r.Err != nil {
			gpi.Add(errorInfo(pin, r.Peer, names[r.Peer], r.Err), nil)
			continue
		}
		gpi.Add(r.Value, nil)
	}
	return gpi, nil
}

// peerInfo is the status entry of a peer that did not answer, named from
// its last ping.
func peerInfo(pin api.Pin, p peer.ID, pg ping, st api.TrackerStatus, ts time.Time, errText string) api.PinInfo {
	ipfsID, _ := peer.Decode(pg.IPFSID)
	return api.PinInfo{
		Cid: pin.Cid, Name: pin.Name, Peer: p, Allocations: pin.Allocations, Origins: pin.Origins,
		Created: pin.Timestamp, Metadata: pin.Metadata,
		PinInfoShort: api.PinInfoShort{PeerName: pg.PeerName, IPFS: ipfsID, IPFSAddresses: pg.IPFSAddresses,
			Status: st, TS: ts, Error: errText},
	}
}

func errorInfo(pin api.Pin, p peer.ID, pg ping, err error) api.PinInfo {
	return peerInfo(pin, p, pg, api.TrackerStatusClusterError, time.Now(), err.Error())
}

// peerDown is a peer whose ping expired, and when its last ping came.
type peerDown struct {
	peer     peer.ID
	lastSeen time.Time
}

// reason is the error of d's entries in status results.
func (d peerDown) reason() string {
	return fmt.Sprintf("peer down: no ping from it for %s", time.Since(d.lastSeen).Round(time.Second))
}

// downPeers lists the peers that sent a ping once but whose ping expired:
// peers down, or cut off from this one.
func (c *Cluster) downPeers() []peerDown {
	live := c.peerset()
	var down []peerDown
	for _, m := range c.monitor.Last(pingMetric) {
		if !slices.Contains(live, m.Peer) {
			down = append(down, peerDown{peer: m.Peer, lastSeen: time.Unix(0, m.ReceivedAt)})
		}
	}
	return down
}

// unanswered emits a cluster_error entry of peer p, with the reason it
// could not be asked, for every pin of this peer's pinset it should hold
// (allocated to it, or to every peer) whose key comes after the key
// after, in CID order: the entries a listing shows for a peer that did
// not answer, where it would have listed those pins.
func (c *Cluster) unanswered(ctx context.Context, p peer.ID, pg ping, reason, after string, emit func(api.PinInfo) error) error {
	now := time.Now()
	return c.state.ListType(ctx, api.DataType, func(pin api.Pin) error {
		if pin.IsRemote(p) || pin.Cid.KeyString() <= after {
			return nil
		}
		return emit(peerInfo(pin, p, pg, api.TrackerStatusClusterError, now, reason))
	})
}

// feedQueue is how many items of one peer's stream may wait for the merge.
const feedQueue = 256

// peerFeed is one peer's stream of PinInfo, read by its own goroutine.
// err is set before items is closed.
type peerFeed struct {
	items chan api.PinInfo
	err   error
	last  string // key of the last item merged in order
	head  *api.PinInfo
}

// listing is what streamFromPeers asks of every peer, and how it reports
// the peers that cannot answer.
type listing struct {
	method string
	in     any
	// down are peers not asked (their ping expired): each adds an entry
	// to the pins it should hold (unanswered).
	down []peerDown
	// unansweredPins: a peer that fails adds an entry to the pins it
	// should hold that it did not list before failing, not only to the
	// pins the others list (a filtered listing, or a recover, where the
	// others may list none).
	unansweredPins bool
}

// streamFromPeers merges what every peer streams for l.method into one
// global status per CID and emits it as soon as every peer has either
// sent that CID or moved past it. Peers stream in CID order (the order of
// the pinset and of each status index), so the merge holds one item per
// peer, not the result: memory does not grow with the pinset, and the
// first items go out while the peers still stream. An item that comes out
// of order (a peer's unpins, which follow its pinset) is merged with its
// kind at the end instead, unless this peer's pinset holds it: then it was
// listed in order already. While pinsets diverge (a peer behind the
// others), such an unpin can thus be left out, or listed a second time
// when only another peer's pinset holds the CID.
//
// A peer that fails adds a cluster_error entry with its error to every
// pin emitted after it failed, as the reference does, and with
// l.unansweredPins to the pins it should hold; the listing itself
// succeeds, as the others answered.
func (c *Cluster) streamFromPeers(ctx context.Context, l listing, fn func(api.GlobalPinInfo) error) error {
	peers := c.peerset()
	names := c.peerNames()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feeds := make([]*peerFeed, 0, len(peers)+len(l.down))
	start := func(run func(emit func(api.PinInfo) error) error) {
		f := &peerFeed{items: make(chan api.PinInfo, feedQueue)}
		feeds = append(feeds, f)
		emit := func(pi api.PinInfo) error {
			select {
			case f.items <- pi:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		go func() {
			defer close(f.items)
			if err := run(emit); !refused(err) {
				f.err = err
			}
		}()
	}
	for _, p := range peers {
		start(func(emit func(api.PinInfo) error) error {
			var last string // the greatest key sent
			err := c.rpc.Stream(ctx, p, l.method, l.in, func(decode p2p.Decoder) error {
				var pi api.PinInfo
				if err := decode(&pi); err != nil {
					return err
				}
				last = max(last, pi.Cid.KeyString())
				return emit(pi)
			})
			if err != nil && l.unansweredPins && !refused(err) && ctx.Err() == nil {
				if uerr := c.unanswered(ctx, p, names[p], err.Error(), last, emit); uerr != nil {
					c.log.Warn().Err(uerr).Stringer("peer", p).Msg("list the pins of a peer that did not answer")
				}
			}
			return err
		})
	}
	for _, d := range l.down {
		peers = append(peers, d.peer)
		start(func(emit func(api.PinInfo) error) error {
			if err := c.unanswered(ctx, d.peer, names[d.peer], d.reason(), "", emit); err != nil {
				c.log.Warn().Err(err).Stringer("peer", d.peer).Msg("list the pins of a peer that is down")
			}
			return nil
		})
	}

	// One goroutine merges: it alone uses text.
	text := api.NewTextCache()
	late := map[string]*api.GlobalPinInfo{}
	var lateOrder []string
	// advance sets f.head to the peer's next item in order, diverting the
	// others to late; nil once the stream ended.
	advance := func(f *peerFeed) {
		for pi := range f.items {
			key := pi.Cid.KeyString()
			if f.last != "" && key <= f.last {
				g, ok := late[key]
				if !ok {
					g = &api.GlobalPinInfo{}
					late[key] = g
					lateOrder = append(lateOrder, key)
				}
				g.Add(pi, text)
				continue
			}
			f.last, f.head = key, &pi
			return
		}
		f.head = nil
	}
	for _, f := range feeds {
		advance(f)
	}
	failed := make([]bool, len(feeds))
	addFailures := func(g *api.GlobalPinInfo) {
		for i, f := range feeds {
			if f.head == nil && f.err != nil {
				pin := api.Pin{Cid: g.Cid, Allocations: g.Allocations}
				pin.Name = g.Name
				g.Add(errorInfo(pin, peers[i], names[peers[i]], f.err), text)
				if !failed[i] {
					failed[i] = true
					c.log.Warn().Err(f.err).Stringer("peer", peers[i]).Str("method", l.method).Msg("peer did not answer")
				}
			}
		}
	}
	for {
		var min string
		found := false
		for _, f := range feeds {
			if f.head != nil && (!found || f.last < min) {
				min, found = f.last, true
			}
		}
		if !found {
			break
		}
		var g api.GlobalPinInfo
		for _, f := range feeds {
			if f.head != nil && f.last == min {
				g.Add(*f.head, text)
				advance(f)
			}
		}
		addFailures(&g)
		if err := fn(g); err != nil {
			return err
		}
	}
	for _, key := range lateOrder {
		g := late[key]
		if _, err := c.state.Get(g.Cid); err == nil {
			// In this peer's pinset, so listed in order already: the late
			// entry is a peer that is behind, unpinning what the others
			// still pin.
			continue
		}
		addFailures(g)
		if err := fn(*g); err != nil {
			return err
		}
	}
	for i, f := range feeds {
		if f.err != nil && !failed[i] {
			c.log.Warn().Err(f.err).Stringer("peer", peers[i]).Str("method", l.method).Msg("peer did not answer")
		}
	}
	return nil
}

// refused reports whether a peer refused a status or recover call because
// it does not trust this one, as followers of a collaborative cluster
// refuse each other: such a peer is left out of the result, as in the
// reference, rather than reported in error on every pin.
func refused(err error) bool { return errors.Is(err, p2p.ErrNotAllowed) }

// closestPeer is the peer of peers whose hash is nearest (XOR) to the
// CID's: the one peer responsible for repinning it, chosen the same way by
// every peer without talking.
func closestPeer(ci api.Cid, peers []peer.ID) peer.ID {
	target := blake(ci.Bytes())
	var best peer.ID
	var bestDist [32]byte
	for i, p := range peers {
		h := blake([]byte(p))
		var d [32]byte
		for j := range d {
			d[j] = h[j] ^ target[j]
		}
		if i == 0 || string(d[:]) < string(bestDist[:]) {
			best, bestDist = p, d
		}
	}
	return best
}

func blake(b []byte) [32]byte { return blake2b.Sum256(b) }

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
