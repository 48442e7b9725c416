package cluster

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// RepinAway runs the repin of ci away from gone, as a sweep does: it
// asks the other live peers what they know of the pin first.
func (c *Cluster) RepinAway(ctx context.Context, ci api.Cid, gone peer.ID) error {
	live := c.peerset()
	seen := c.peerVersions(ctx, []api.Cid{ci}, c.others(live))
	return c.repin(ctx, ci, gone, live, seen[ci.KeyString()], false)
}

// ErrBehind is returned by RepinAway when another peer knows a newer
// change of the pin.
var ErrBehind = errBehind
