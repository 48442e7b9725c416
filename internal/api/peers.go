package api

import (
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ParsePeerList parses a comma list of peer IDs. Empty items (a trailing
// comma) are skipped; an item that is not a peer ID is an error naming it.
func ParsePeerList(s string) ([]peer.ID, error) {
	var peers []peer.ID
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := peer.Decode(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a peer ID: %w", part, err)
		}
		peers = append(peers, p)
	}
	return peers, nil
}
