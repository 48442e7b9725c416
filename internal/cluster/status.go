package cluster

import (
	"context"
	"fmt"

	"ipfs-cluster/internal/api"
)

// withIPFS fills in the kubo identity of this peer.
func (c *Cluster) withIPFS(pi api.PinInfo) api.PinInfo {
	id := c.kuboID()
	pi.IPFS = id.ID
	pi.IPFSAddresses = id.Addresses
	return pi
}

func (c *Cluster) global(pi api.PinInfo) api.GlobalPinInfo {
	var gpi api.GlobalPinInfo
	gpi.Add(c.withIPFS(pi))
	return gpi
}

// Status returns the status of c on the peers that track it.
func (c *Cluster) Status(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	pi, err := c.tracker.Status(ctx, ci)
	if err != nil {
		return api.GlobalPinInfo{}, err
	}
	return c.global(pi), nil
}

// StatusAll streams the status of every pin whose status on some peer
// matches filter (undefined = all).
func (c *Cluster) StatusAll(ctx context.Context, filter api.TrackerStatus, local bool, fn func(api.GlobalPinInfo) error) error {
	return c.tracker.StatusAll(ctx, filter, func(pi api.PinInfo) error {
		return fn(c.global(pi))
	})
}

// Recover requeues c where it failed and returns its status.
func (c *Cluster) Recover(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	pi, err := c.tracker.Recover(ctx, ci)
	if err != nil {
		return api.GlobalPinInfo{}, err
	}
	return c.global(pi), nil
}

// RecoverAll requeues every failed item and streams those it requeued.
func (c *Cluster) RecoverAll(ctx context.Context, local bool, fn func(api.GlobalPinInfo) error) error {
	return c.tracker.RecoverAll(ctx, func(pi api.PinInfo) error {
		return fn(c.global(pi))
	})
}

// RepoGC runs kubo's garbage collection.
func (c *Cluster) RepoGC(ctx context.Context, local bool) (api.GlobalRepoGC, error) {
	gc := api.RepoGC{Peer: c.cfg.Peer, Peername: c.cfg.PeerName, Keys: []api.IPFSRepoGC{}}
	err := c.ipfs.RepoGC(ctx, func(k api.IPFSRepoGC) error {
		gc.Keys = append(gc.Keys, k)
		return nil
	})
	if err != nil {
		gc.Error = fmt.Sprintf("repo gc: %v", err)
	}
	return api.GlobalRepoGC{PeerMap: map[string]api.RepoGC{c.cfg.Peer.String(): gc}}, nil
}
