package api

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AppendJSON appends the JSON encoding of p to b: byte for byte what
// encoding/json produces for it, without reflection. Listing a million pins
// spends most of its time here, so it matters. names, when not nil, keeps
// the text of peer IDs and multiaddresses across the calls of a stream.
func (p *Pin) AppendJSON(b []byte, names *TextCache) []byte {
	b = append(b, `{"replication_factor_min":`...)
	b = strconv.AppendInt(b, int64(p.ReplicationFactorMin), 10)
	b = append(b, `,"replication_factor_max":`...)
	b = strconv.AppendInt(b, int64(p.ReplicationFactorMax), 10)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, p.Name)
	b = append(b, `,"mode":"`...)
	b = append(b, p.Mode.String()...)
	b = append(b, `","shard_size":`...)
	b = strconv.AppendUint(b, p.ShardSize, 10)
	b = append(b, `,"user_allocations":`...)
	b = appendPeers(b, p.UserAllocations, names)
	b = append(b, `,"expire_at":`...)
	b = appendJSONTime(b, p.ExpireAt)
	b = append(b, `,"metadata":`...)
	b = appendStringMap(b, p.Metadata)
	b = append(b, `,"pin_update":`...)
	b = appendCid(b, p.PinUpdate)
	b = append(b, `,"origins":`...)
	b = appendMultiaddrs(b, orEmpty(p.Origins), names)
	b = append(b, `,"cid":`...)
	b = appendCid(b, p.Cid)
	b = append(b, `,"type":"`...)
	b = append(b, p.Type.String()...)
	b = append(b, `","allocations":`...)
	b = appendPeers(b, orEmpty(p.Allocations), names)
	b = append(b, `,"max_depth":`...)
	b = strconv.AppendInt(b, int64(p.MaxDepth), 10)
	b = append(b, `,"reference":`...)
	if p.Reference == nil {
		b = append(b, "null"...)
	} else {
		b = appendCid(b, *p.Reference)
	}
	b = append(b, `,"timestamp":`...)
	b = appendJSONTime(b, p.Timestamp)
	return append(b, '}')
}

// MarshalJSON encodes the pin (see AppendJSON).
func (p Pin) MarshalJSON() ([]byte, error) { return p.AppendJSON(make([]byte, 0, 512), nil), nil }

func appendCid(b []byte, c Cid) []byte {
	if !c.Defined() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = append(b, c.String()...)
	return append(b, '"')
}

// orEmpty turns nil into an empty slice: allocations and origins are
// always arrays on the wire, as the reference writes every pin it reads
// from its state, so clients need not handle null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func appendPeers(b []byte, peers []peer.ID, names *TextCache) []byte {
	if peers == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, p := range peers {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendPeer(b, p, names)
	}
	return append(b, ']')
}

// appendPeer writes a peer ID as a JSON string, through the cache.
func appendPeer(b []byte, p peer.ID, names *TextCache) []byte {
	b = append(b, '"')
	b = append(b, names.Peer(p)...)
	return append(b, '"')
}

func appendMultiaddrs(b []byte, addrs []Multiaddr, names *TextCache) []byte {
	if addrs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, a := range addrs {
		if i > 0 {
			b = append(b, ',')
		}
		if a.Multiaddr == nil {
			b = append(b, `""`...)
		} else {
			b = appendJSONString(b, names.Addr(a.Multiaddr))
		}
	}
	return append(b, ']')
}

func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// appendJSONTime writes t as time.Time.MarshalJSON does.
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONString quotes s as encoding/json does, HTML-safe escapes and
// invalid UTF-8 included; plain strings take the fast path.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendJSON appends the JSON encoding of gpi to b: byte for byte what
// encoding/json produces, without reflection (cluster-wide status lists
// every pin with one entry per peer). names is as for Pin.AppendJSON.
func (gpi *GlobalPinInfo) AppendJSON(b []byte, names *TextCache) []byte {
	b = append(b, `{"cid":`...)
	b = appendCid(b, gpi.Cid)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, gpi.Name)
	b = append(b, `,"allocations":`...)
	b = appendPeers(b, orEmpty(gpi.Allocations), names)
	b = append(b, `,"origins":`...)
	b = appendMultiaddrs(b, orEmpty(gpi.Origins), names)
	b = append(b, `,"created":`...)
	b = appendJSONTime(b, gpi.Created)
	b = append(b, `,"metadata":`...)
	b = appendStringMap(b, gpi.Metadata)
	b = append(b, `,"peer_map":`...)
	if gpi.PeerMap == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		for i, id := range gpi.SortedPeers() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, id)
			b = append(b, ':')
			b = gpi.PeerMap[id].appendJSON(b, names)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func (s PinInfoShort) appendJSON(b []byte, names *TextCache) []byte {
	b = append(b, `{"peername":`...)
	b = appendJSONString(b, s.PeerName)
	if s.IPFS != "" {
		b = append(b, `,"ipfs_peer_id":`...)
		b = appendPeer(b, s.IPFS, names)
	}
	if len(s.IPFSAddresses) > 0 {
		b = append(b, `,"ipfs_peer_addresses":`...)
		b = appendMultiaddrs(b, s.IPFSAddresses, names)
	}
	b = append(b, `,"status":"`...)
	b = append(b, s.Status.String()...)
	b = append(b, `","timestamp":`...)
	b = appendJSONTime(b, s.TS)
	b = append(b, `,"error":`...)
	b = appendJSONString(b, s.Error)
	b = append(b, `,"attempt_count":`...)
	b = strconv.AppendInt(b, int64(s.AttemptCount), 10)
	b = append(b, `,"priority_pin":`...)
	b = strconv.AppendBool(b, s.PriorityPin)
	return append(b, '}')
}

// MarshalJSON encodes the global status (see AppendJSON).
func (gpi GlobalPinInfo) MarshalJSON() ([]byte, error) {
	return gpi.AppendJSON(make([]byte, 0, 512), nil), nil
}
