package api

import (
	"sync"
	"sync/atomic"

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

// parsedAddrs remembers the multiaddresses decoded from binary PinInfos
// and pins: every PinInfo of a peer carries the same kubo addresses, and
// checking them again encodes their peer IDs in base58 each time.
// Multiaddresses are immutable, so one value serves every decoder. It is
// looked up by the raw bytes, which costs no allocation.
var parsedAddrs = struct {
	sync.Mutex
	m map[string]ma.Multiaddr
}{m: map[string]ma.Multiaddr{}}

// parseAddr is ma.NewMultiaddrBytes(raw), remembered.
func parseAddr(raw []byte) (ma.Multiaddr, error) {
	parsedAddrs.Lock()
	m, ok := parsedAddrs.m[string(raw)]
	parsedAddrs.Unlock()
	if ok {
		return m, nil
	}
	m, err := ma.NewMultiaddrBytes(raw)
	if err != nil {
		return nil, err
	}
	parsedAddrs.Lock()
	if len(parsedAddrs.m) >= textCacheSize {
		clear(parsedAddrs.m)
	}
	parsedAddrs.m[string(raw)] = m
	parsedAddrs.Unlock()
	return m, nil
}

// sharedPeers is the text of peer IDs for the callers without a TextCache:
// single replies and statuses name the same few peers again and again,
// from many goroutines, so reads take no lock. sharedCount bounds it.
var (
	sharedPeers sync.Map // peer.ID -> string
	sharedCount atomic.Int64
)

// sharedPeer is p.String(), remembered.
func sharedPeer(p peer.ID) string {
	if s, ok := sharedPeers.Load(p); ok {
		return s.(string)
	}
	s := p.String()
	if sharedCount.Add(1) > textCacheSize {
		sharedPeers.Clear()
		sharedCount.Store(1)
	}
	sharedPeers.Store(p, s)
	return s
}
