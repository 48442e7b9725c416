package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"ipfs-cluster/internal/api"
)

// WaitParams says what WaitFor waits for.
type WaitParams struct {
	Cid    api.Cid
	Target api.TrackerStatus
	// Limit > 0: done when at least Limit peers (or every peer, if fewer)
	// report Target. Otherwise every peer must report it, except that
	// "remote" counts as reached when Target is pinned.
	Limit int
	// CheckFreq is the polling interval; 0 means one second.
	CheckFreq time.Duration
}

// WaitFor polls the status of p.Cid until it reaches p.Target and returns
// the last status seen. It fails as soon as a peer reports undefined,
// cluster_error, pin_error or unpin_error, and when ctx ends. Waiting for
// unpinned also ends when the API no longer knows the CID (404).
func (c *Client) WaitFor(ctx context.Context, p WaitParams) (api.GlobalPinInfo, error) {
	freq := p.CheckFreq
	if freq <= 0 {
		freq = time.Second
	}
	ticker := time.NewTicker(freq)
	defer ticker.Stop()
	var last api.GlobalPinInfo
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-ticker.C:
		}
		gpi, err := c.Status(ctx, p.Cid, false)
		if err != nil {
			var apiErr api.Error
			if p.Target == api.TrackerStatusUnpinned && errors.As(err, &apiErr) && apiErr.Code == http.StatusNotFound {
				return api.GlobalPinInfo{Cid: p.Cid}, nil
			}
			return last, err
		}
		last = gpi
		if done, err := statusReached(gpi, p.Target, p.Limit); done || err != nil {
			return gpi, err
		}
	}
}

// statusReached applies the rules of WaitParams to one status.
func statusReached(gpi api.GlobalPinInfo, target api.TrackerStatus, limit int) (bool, error) {
	for _, id := range gpi.SortedPeers() {
		pi := gpi.PeerMap[id]
		switch pi.Status {
		case api.TrackerStatusUndefined, api.TrackerStatusClusterError,
			api.TrackerStatusPinError, api.TrackerStatusUnpinError:
			name := pi.PeerName
			if name == "" {
				name = id
			}
			msg := fmt.Sprintf("peer %s reports %s for %s while waiting for %s", name, pi.Status, gpi.Cid, target)
			if pi.Error != "" {
				msg += ": " + pi.Error
			}
			return false, errors.New(msg)
		}
	}

	if limit = min(limit, len(gpi.PeerMap)); limit > 0 {
		reached := 0
		for _, pi := range gpi.PeerMap {
			if pi.Status == target {
				reached++
			}
		}
		return reached >= limit, nil
	}
	for _, pi := range gpi.PeerMap {
		if pi.Status != target && (pi.Status != api.TrackerStatusRemote || target != api.TrackerStatusPinned) {
			return false, nil
		}
	}
	return true, nil
}
