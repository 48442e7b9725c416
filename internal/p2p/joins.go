package p2p

import (
	"context"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// WatchJoins calls joined with each peer that joins the topic of events,
// one call at a time, until ctx is done, and then cancels events. Pubsub
// keeps the events that arrive while joined runs.
func WatchJoins(ctx context.Context, events *pubsub.TopicEventHandler, joined func(peer.ID)) {
	defer events.Cancel()
	for {
		ev, err := events.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			joined(ev.Peer)
		}
	}
}
