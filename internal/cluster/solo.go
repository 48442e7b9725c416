package cluster

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// Solo is the consensus of a cluster of one peer: a change is committed
// when it is durably written to the local state, which ApplyPin does.
type Solo struct {
	self    peer.ID
	applier *Cluster
}

// NewSolo returns the single-peer consensus for c.
func NewSolo(self peer.ID, c *Cluster) *Solo { return &Solo{self: self, applier: c} }

// LogPin commits and applies a pin.
func (s *Solo) LogPin(_ context.Context, pin api.Pin) error { return s.applier.ApplyPin(pin) }

// LogUnpin commits and applies an unpin.
func (s *Solo) LogUnpin(_ context.Context, pin api.Pin) error { return s.applier.ApplyUnpin(pin) }

// Peers is this peer alone.
func (s *Solo) Peers(context.Context) ([]peer.ID, error) { return []peer.ID{s.self}, nil }
