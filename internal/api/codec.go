package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// The binary pin encoding is what the state stores and what peers exchange:
// compact, versioned, and decoded without reflection. Times keep nanosecond
// precision over the whole range of time.Time; empty origins are dropped;
// user_allocations are not part of it (they only steer the allocation of a
// request).
const pinCodecVersion = 1

// ErrCorruptPin is returned when bytes do not decode as a pin.
var ErrCorruptPin = errors.New("corrupt pin encoding")

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
	b = binary.AppendUvarint(b, uint64(len(p.Allocations)))
	for _, a := range p.Allocations {
		b = appendBytes(b, []byte(a))
	}
	keys := p.SortedMetadataKeys()
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, []byte(p.Metadata[k]))
	}
	if p.Reference != nil {
		b = appendBytes(b, p.Reference.Bytes())
	} else {
		b = appendBytes(b, nil)
	}
	b = appendBytes(b, p.PinUpdate.Bytes())
	n := 0
	for _, o := range p.Origins {
		if o.Multiaddr != nil && len(o.Bytes()) > 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, o := range p.Origins {
		if o.Multiaddr != nil && len(o.Bytes()) > 0 {
			b = appendBytes(b, o.Bytes())
		}
	}
	return b, nil
}

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
	if n := d.count(); n > 0 {
		out.Allocations = make([]peer.ID, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			out.Allocations = append(out.Allocations, peer.ID(d.bytes()))
		}
	}
	if n := d.count(); n > 0 {
		out.Metadata = make(map[string]string, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := string(d.bytes())
			out.Metadata[k] = string(d.bytes())
		}
	}
	if ref := d.cid(); ref.Defined() {
		out.Reference = &ref
	}
	out.PinUpdate = d.cid()
	if n := d.count(); n > 0 {
		out.Origins = make([]Multiaddr, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			raw := d.bytes()
			if d.err != nil {
				break
			}
			m, err := ma.NewMultiaddrBytes(raw)
			if err != nil {
				return fmt.Errorf("%w: origin: %v", ErrCorruptPin, err)
			}
			out.Origins = append(out.Origins, Multiaddr{m})
		}
	}
	if d.err != nil {
		return d.err
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
