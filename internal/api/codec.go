package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The binary pin encoding is what the state stores and what peers exchange:
// compact, versioned, and decoded without reflection. Times keep nanosecond
// precision over the whole range of time.Time; empty origins are dropped;
// user_allocations are not part of it (they only steer the allocation of a
// request).
const pinCodecVersion = 1

// ErrCorruptPin is returned when bytes do not decode as a pin.
var ErrCorruptPin = errors.New("corrupt pin encoding")

// ErrBadPath: an IPFS path that does not resolve to a CID, through no
// fault of kubo's (a malformed CID, a missing link).
var ErrBadPath = errors.New("invalid IPFS path")

// AppendBinary appends the binary encoding of p to b.
func (p *Pin) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, pinCodecVersion)
	b = appendBytes(b, p.Cid.Bytes())
	b = binary.AppendUvarint(b, uint64(p.Type))
	b = binary.AppendVarint(b, int64(p.MaxDepth))
	b = binary.AppendVarint(b, int64(p.ReplicationFactorMin))
	b = binary.AppendVarint(b, int64(p.ReplicationFactorMax))
	b = appendBytes(b, []byte(p.Name))
	b = binary.AppendUvarint(b, p.ShardSize)
	b = appendTime(b, p.ExpireAt)
	b = appendTime(b, p.Timestamp)
	b = appendPeerList(b, p.Allocations)
	b = appendMetadata(b, p.Metadata)
	if p.Reference != nil {
		b = appendBytes(b, p.Reference.Bytes())
	} else {
		b = appendBytes(b, nil)
	}
	b = appendBytes(b, p.PinUpdate.Bytes())
	b = appendAddrs(b, p.Origins)
	// Optional trailers, in this order, so that every other pin encodes
	// as before.
	if p.Moved {
		b = append(b, movedFlag)
	}
	if !p.Restored.IsZero() {
		b = appendTime(append(b, restoredTag), p.Restored)
	}
	if !p.Replaced.IsZero() {
		b = appendTime(append(b, replacedTag), p.Replaced)
	}
	return b, nil
}

// The optional trailers: movedFlag marks a pin the cluster moved,
// restoredTag precedes the time a state import restored it, replacedTag
// the timestamp of the version it updated.
const (
	movedFlag   = 1
	restoredTag = 2
	replacedTag = 3
)

// MarshalBinary encodes p.
func (p *Pin) MarshalBinary() ([]byte, error) { return p.AppendBinary(make([]byte, 0, 128)) }

// UnmarshalBinary decodes p from data. It never panics on bad input.
func (p *Pin) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data}
	if v := d.byte(); v != pinCodecVersion {
		if d.err != nil {
			return d.err
		}
		return fmt.Errorf("%w: unknown version %d", ErrCorruptPin, v)
	}
	var out Pin
	out.Cid = d.cid()
	out.Type = PinType(d.uvarint())
	out.MaxDepth = PinDepth(d.varint())
	out.ReplicationFactorMin = int(d.varint())
	out.ReplicationFactorMax = int(d.varint())
	out.Name = string(d.bytes())
	out.ShardSize = d.uvarint()
	out.ExpireAt = d.time()
	out.Timestamp = d.time()
	out.Allocations = d.peers()
	out.Metadata = d.metadata()
	if ref := d.cid(); ref.Defined() {
		out.Reference = &ref
	}
	out.PinUpdate = d.cid()
	out.Origins = d.addrs()
	if d.err != nil {
		return d.err
	}
	if len(d.buf) > 0 && d.buf[0] == movedFlag {
		out.Moved, d.buf = true, d.buf[1:]
	}
	if len(d.buf) > 0 && d.buf[0] == restoredTag {
		d.buf = d.buf[1:]
		if out.Restored = d.time(); d.err != nil {
			return d.err
		}
	}
	if len(d.buf) > 0 && d.buf[0] == replacedTag {
		d.buf = d.buf[1:]
		if out.Replaced = d.time(); d.err != nil {
			return d.err
		}
	}
	if len(d.buf) > 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorruptPin, len(d.buf))
	}
	if out.Mode = PinModeRecursive; out.MaxDepth == 0 {
		out.Mode = PinModeDirect
	}
	*p = out
	return nil
}

func appendPeerList(b []byte, peers []peer.ID) []byte {
	b = binary.AppendUvarint(b, uint64(len(peers)))
	for _, p := range peers {
		b = appendBytes(b, []byte(p))
	}
	return b
}

func appendMetadata(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, []byte(m[k]))
	}
	return b
}

// appendAddrs writes the multiaddresses that are set, dropping empty ones.
func appendAddrs(b []byte, addrs []Multiaddr) []byte {
	n := 0
	for _, a := range addrs {
		if a.Multiaddr != nil && len(a.Bytes()) > 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, a := range addrs {
		if a.Multiaddr != nil && len(a.Bytes()) > 0 {
			b = appendBytes(b, a.Bytes())
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendTime writes a presence byte, then Unix seconds and nanoseconds, so
// that every time.Time survives (UnixNano alone overflows outside
// 1678–2262).
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads the binary encoding, remembering the first error so that
// callers check once at the end.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrCorruptPin, what)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.buf) == 0 {
		d.fail("header")
		return 0
	}
	v := d.buf[0]
	d.buf = d.buf[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// count reads a length that must fit in what is left of the buffer, so a
// corrupt length cannot make the decoder allocate without bound.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail("length")
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	v := d.buf[:n:n]
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) peers() []peer.ID {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]peer.ID, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, peer.ID(d.bytes()))
	}
	return out
}

func (d *decoder) metadata() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := string(d.bytes())
		out[k] = string(d.bytes())
	}
	return out
}

func (d *decoder) addrs() []Multiaddr {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]Multiaddr, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		raw := d.bytes()
		if d.err != nil {
			break
		}
		m, err := parseAddr(raw)
		if err != nil {
			d.err = fmt.Errorf("%w: multiaddress: %v", ErrCorruptPin, err)
			return nil
		}
		out = append(out, Multiaddr{m})
	}
	return out
}

func (d *decoder) cid() Cid {
	raw := d.bytes()
	if d.err != nil || len(raw) == 0 {
		return CidUndef
	}
	c, err := cid.Cast(raw)
	if err != nil {
		d.err = fmt.Errorf("%w: cid: %v", ErrCorruptPin, err)
		return CidUndef
	}
	return Cid{c}
}

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec, nsec := d.varint(), d.uvarint()
		if nsec >= 1e9 {
			d.fail("time")
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	}
	d.fail("time")
	return time.Time{}
}

// pinInfoCodecVersion versions the binary PinInfo encoding, which peers
// exchange when they stream status (it is much cheaper than JSON there).
const pinInfoCodecVersion = 1

// AppendBinary appends the binary encoding of pi to b.
func (pi *PinInfo) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, pinInfoCodecVersion)
	b = appendBytes(b, pi.Cid.Bytes())
	b = appendBytes(b, []byte(pi.Name))
	b = appendBytes(b, []byte(pi.Peer))
	b = appendPeerList(b, pi.Allocations)
	b = appendAddrs(b, pi.Origins)
	b = appendTime(b, pi.Created)
	b = appendMetadata(b, pi.Metadata)
	b = appendBytes(b, []byte(pi.PeerName))
	b = appendBytes(b, []byte(pi.IPFS))
	b = appendAddrs(b, pi.IPFSAddresses)
	b = binary.AppendUvarint(b, uint64(pi.Status))
	b = appendTime(b, pi.TS)
	b = appendBytes(b, []byte(pi.Error))
	b = binary.AppendUvarint(b, uint64(pi.AttemptCount))
	if pi.PriorityPin {
		return append(b, 1), nil
	}
	return append(b, 0), nil
}

// UnmarshalBinary decodes pi from data. It never panics on bad input.
func (pi *PinInfo) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data}
	if v := d.byte(); v != pinInfoCodecVersion {
		if d.err != nil {
			return d.err
		}
		return fmt.Errorf("%w: unknown pin info version %d", ErrCorruptPin, v)
	}
	var out PinInfo
	out.Cid = d.cid()
	out.Name = string(d.bytes())
	out.Peer = peer.ID(d.bytes())
	out.Allocations = d.peers()
	out.Origins = d.addrs()
	out.Created = d.time()
	out.Metadata = d.metadata()
	out.PeerName = string(d.bytes())
	out.IPFS = peer.ID(d.bytes())
	out.IPFSAddresses = d.addrs()
	out.Status = TrackerStatus(d.uvarint())
	out.TS = d.time()
	out.Error = string(d.bytes())
	out.AttemptCount = int(d.uvarint())
	out.PriorityPin = d.byte() == 1
	if d.err != nil {
		return d.err
	}
	if len(d.buf) > 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorruptPin, len(d.buf))
	}
	*pi = out
	return nil
}
