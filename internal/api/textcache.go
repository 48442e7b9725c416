package api

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// textCacheSize bounds each map of a TextCache: a stream repeats the same
// few peers and kubo addresses, while origins given by users may all
// differ.
const textCacheSize = 4096

// TextCache keeps the text forms of the peer IDs and multiaddresses that a
// stream of items repeats: their base58 encoding is most of the cost of
// listing statuses otherwise. A nil *TextCache uses a shared cache of peer
// IDs and caches no address. A TextCache is not safe for concurrent use.
type TextCache struct {
	peers map[peer.ID]string
	addrs map[string]string // by binary form
}

// NewTextCache returns an empty cache.
func NewTextCache() *TextCache {
	return &TextCache{peers: map[peer.ID]string{}, addrs: map[string]string{}}
}

// Peer is p.String().
func (c *TextCache) Peer(p peer.ID) string {
	if c == nil {
		return sharedPeer(p)
	}
	s, ok := c.peers[p]
	if !ok {
		s = p.String()
		if len(c.peers) >= textCacheSize {
			clear(c.peers)
		}
		c.peers[p] = s
	}
	return s
}

// Addr is a.String().
func (c *TextCache) Addr(a ma.Multiaddr) string {
	if c == nil {
		return a.String()
	}
	s, ok := c.addrs[string(a.Bytes())]
	if !ok {
		s = a.String()
		if len(c.addrs) >= textCacheSize {
			clear(c.addrs)
		}
		c.addrs[string(a.Bytes())] = s
	}
	return s
}

// boundedCache is a map shared by every goroutine, emptied when it grows
// past textCacheSize. It is safe for concurrent use.
type boundedCache[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// get returns the value of k, made by fill (and remembered) the first time.
func (c *boundedCache[K, V]) get(k K, fill func() (V, error)) (V, error) {
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := fill()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= textCacheSize {
		c.m = map[K]V{}
	}
	c.m[k] = v
	c.mu.Unlock()
	return v, nil
}

func (c *boundedCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// parsedAddrs remembers the multiaddresses decoded from binary PinInfos
// and pins: every PinInfo of a peer carries the same kubo addresses, and
// checking them again encodes their peer IDs in base58 each time.
// Multiaddresses are immutable, so one value serves every decoder.
var parsedAddrs boundedCache[string, ma.Multiaddr]

// parseAddr is ma.NewMultiaddrBytes(raw), remembered.
func parseAddr(raw []byte) (ma.Multiaddr, error) {
	return parsedAddrs.get(string(raw), func() (ma.Multiaddr, error) { return ma.NewMultiaddrBytes(raw) })
}

// sharedPeers is the text of peer IDs for the callers without a TextCache:
// single replies and statuses name the same few peers again and again.
var sharedPeers boundedCache[peer.ID, string]

// sharedPeer is p.String(), remembered.
func sharedPeer(p peer.ID) string {
	s, _ := sharedPeers.get(p, func() (string, error) { return p.String(), nil })
	return s
}
