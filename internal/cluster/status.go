package cluster

import (
	"context"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
)

// withIPFS fills in the kubo identity of this peer.
func (c *Cluster) withIPFS(pi api.PinInfo) api.PinInfo {
	id := c.kuboID()
	pi.IPFS = id.ID
	pi.IPFSAddresses = id.Addresses
	return pi
}

func global(pi api.PinInfo) api.GlobalPinInfo {
	var gpi api.GlobalPinInfo
	gpi.Add(pi, nil)
	return gpi
}

// localStatus is this peer's status of c.
func (c *Cluster) localStatus(ctx context.Context, ci api.Cid) (api.PinInfo, error) {
	pi, err := c.tracker.Status(ctx, ci)
	return c.withIPFS(pi), err
}

// Status returns the status of c on this peer (local) or on the peers that
// track it. A follower answers for itself only, as the reference's does:
// the trusted peers' status calls are closed to it.
func (c *Cluster) Status(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	if !local && !c.cfg.FollowerMode {
		return c.statusFromPeers(ctx, ci, rpcStatus)
	}
	pi, err := c.localStatus(ctx, ci)
	if err != nil {
		return api.GlobalPinInfo{}, err
	}
	return global(pi), nil
}

// StatusAll streams the status of every pin whose status on some peer
// matches filter (undefined = all), from this peer (local) or from all.
func (c *Cluster) StatusAll(ctx context.Context, filter api.TrackerStatus, local bool, fn func(api.GlobalPinInfo) error) error {
	if !local && !c.cfg.FollowerMode {
		l := listing{method: rpcStatusAll, in: filter}
		if api.TrackerStatusClusterError.Match(filter) {
			l.down = c.downPeers()
			// Unfiltered, the others list every pin, and a peer that
			// fails is in error on each.
			l.unansweredPins = filter != api.TrackerStatusUndefined
		}
		return c.streamFromPeers(ctx, l, fn)
	}
	return c.localStatusAll(ctx, filter, func(pi api.PinInfo) error { return fn(global(pi)) })
}

// localStatusAll streams this peer's status of every pin matching filter,
// with this peer's kubo identity.
func (c *Cluster) localStatusAll(ctx context.Context, filter api.TrackerStatus, fn func(api.PinInfo) error) error {
	return c.tracker.StatusAll(ctx, filter, func(pi api.PinInfo) error { return fn(c.withIPFS(pi)) })
}

// Recover requeues c where it failed and returns its status.
func (c *Cluster) Recover(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	if !local && !c.cfg.FollowerMode {
		return c.statusFromPeers(ctx, ci, rpcRecover)
	}
	pi, err := c.tracker.Recover(ctx, ci)
	if err != nil {
		return api.GlobalPinInfo{}, err
	}
	return global(c.withIPFS(pi)), nil
}

// RecoverAll requeues every failed item (here, or on every peer) and
// streams those it requeued.
func (c *Cluster) RecoverAll(ctx context.Context, local bool, fn func(api.GlobalPinInfo) error) error {
	if !local && !c.cfg.FollowerMode {
		return c.streamFromPeers(ctx, listing{method: rpcRecoverAll, in: struct{}{}, unansweredPins: true}, fn)
	}
	return c.tracker.RecoverAll(ctx, true, func(pi api.PinInfo) error {
		return fn(global(c.withIPFS(pi)))
	})
}

func (c *Cluster) localRepoGC(ctx context.Context) api.RepoGC {
	gc := api.RepoGC{Peer: c.cfg.Peer, Peername: c.cfg.PeerName, Keys: []api.IPFSRepoGC{}}
	err := c.ipfs.RepoGC(ctx, func(k api.IPFSRepoGC) error {
		gc.Keys = append(gc.Keys, k)
		return nil
	})
	if err != nil {
		gc.Error = err.Error() // it names repo gc already
	}
	return gc
}

// RepoGC runs kubo's garbage collection here (local) or on every peer.
func (c *Cluster) RepoGC(ctx context.Context, local bool) (api.GlobalRepoGC, error) {
	out := api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{}}
	if local {
		out.PeerMap[c.cfg.Peer.String()] = c.localRepoGC(ctx)
		return out, nil
	}
	names := c.peerNames()
	for _, r := range p2p.CallAll[api.RepoGC](ctx, c.rpc, c.peerset(), rpcRepoGCLocal, struct{}{}, 0) {
		gc := r.Value
		if r.Err != nil {
			gc = api.RepoGC{Peer: r.Peer, Peername: names[r.Peer].PeerName, Error: r.Err.Error()}
		}
		out.PeerMap[r.Peer.String()] = gc
	}
	return out, nil
}
