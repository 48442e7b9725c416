package crdt

import (
	"context"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// trustSet is the set of peers whose head announcements are accepted. It is
// safe for concurrent use: the pubsub validator reads it while Trust adds
// to it.
type trustSet struct {
	mu    sync.RWMutex
	all   bool
	peers map[peer.ID]struct{}
	told  sync.Map // the untrusted peers whose changes were logged as dropped
}

func newTrustSet() *trustSet { return &trustSet{peers: map[peer.ID]struct{}{}} }

func (t *trustSet) has(id peer.ID) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.all {
		return true
	}
	_, ok := t.peers[id]
	return ok
}

func (t *trustSet) add(id peer.ID) {
	t.mu.Lock()
	t.peers[id] = struct{}{}
	t.mu.Unlock()
}

// IsTrusted reports whether changes committed by id are merged here. This
// peer always trusts itself.
func (c *Consensus) IsTrusted(id peer.ID) bool {
	return id == c.self || c.trust.has(id)
}

// Trust adds id to the trusted peers until shutdown (the daemon trusts its
// bootstrap peers this way). Heads that id announced before are accepted
// from its next rebroadcast on.
func (c *Consensus) Trust(id peer.ID) { c.trust.add(id) }

// validate is the topic validator: a head announcement is accepted only when
// its signer (not the peer that relayed it) is trusted. Pubsub verifies the
// signature before validators run, as long as it signs and verifies messages
// (the gossipsub default).
func (c *Consensus) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	from := msg.GetFrom()
	if c.IsTrusted(from) {
		return pubsub.ValidationAccept
	}
	// Said once per peer: an operator whose peer is left out of
	// trusted_peers by mistake sees why its changes never arrive.
	if _, told := c.trust.told.LoadOrStore(from, true); !told {
		c.log.Info().Stringer("signer", from).Msg("ignoring the changes of a peer not in consensus.crdt.trusted_peers")
	}
	return pubsub.ValidationReject
}
