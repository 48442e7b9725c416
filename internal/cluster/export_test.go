package cluster

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// RepinAway runs the repin of ci away from gone, as a sweep does.
func (c *Cluster) RepinAway(ctx context.Context, ci api.Cid, gone peer.ID) error {
	return c.repin(ctx, ci, gone, c.peerset(), false)
}
