package car

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// The header is DAG-CBOR: {"roots": [CID...], "version": 1} for CARv1 and
// the fixed pragma {"version": 2} for CARv2. A general CBOR library would
// accept far more than this (and allocate for it), so the header is parsed
// by hand, strictly, with every length checked against the bytes actually
// present before anything is allocated.

const (
	cborUint   = 0
	cborBytes  = 2
	cborText   = 3
	cborArray  = 4
	cborMap    = 5
	cborTag    = 6
	cborTagCID = 42 // DAG-CBOR's tag for a CID link
)

// v2Pragma is the CARv2 pragma: varint length 10, then {"version": 2}.
var v2Pragma = []byte{0x0a, 0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x02}

// v2HeaderLen is the size of the fixed CARv2 header following the pragma:
// 16 bytes of characteristics, then data offset, data size and index
// offset as little-endian uint64s.
const v2HeaderLen = 40

// header is a decoded CAR header.
type header struct {
	version  uint64
	roots    []cid.Cid
	hasRoots bool
}

var errShortCBOR = errors.New("CBOR item runs past the end of the header")

type cborDecoder struct {
	b []byte
	i int
}

// head reads a CBOR item head. Indefinite lengths are refused: DAG-CBOR
// forbids them.
func (d *cborDecoder) head() (major byte, arg uint64, err error) {
	if d.i >= len(d.b) {
		return 0, 0, errShortCBOR
	}
	ib := d.b[d.i]
	d.i++
	major, ai := ib>>5, ib&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(d.b)-d.i < n {
			return 0, 0, errShortCBOR
		}
		for _, c := range d.b[d.i : d.i+n] {
			arg = arg<<8 | uint64(c)
		}
		d.i += n
		return major, arg, nil
	default:
		return 0, 0, fmt.Errorf("unsupported CBOR additional info %d (indefinite length?)", ai)
	}
}

// expect reads a head of the given major type.
func (d *cborDecoder) expect(major byte, what string) (uint64, error) {
	at := d.i
	m, arg, err := d.head()
	if err != nil {
		return 0, err
	}
	if m != major {
		return 0, fmt.Errorf("%s: want %s, got %s (byte 0x%02x at header byte %d)", what, cborTypeNames[major], cborTypeNames[m], d.b[at], at)
	}
	return arg, nil
}

var cborTypeNames = [8]string{"an unsigned integer", "a negative integer", "a byte string", "a text string", "an array", "a map", "a tag", "a simple value or float"}

// bytes reads the payload of a byte or text string whose head said n bytes.
func (d *cborDecoder) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.i) {
		return nil, errShortCBOR
	}
	b := d.b[d.i : d.i+int(n)]
	d.i += int(n)
	return b, nil
}

// decodeHeader parses a header block (without its length prefix). The
// returned error describes the defect; the caller classifies it.
func decodeHeader(b []byte) (header, error) {
	var h header
	d := cborDecoder{b: b}
	n, err := d.expect(cborMap, "top level")
	if err != nil {
		return h, err
	}
	// Every entry takes at least two bytes: bound n before looping on it.
	if n > uint64(len(b)) {
		return h, errShortCBOR
	}
	hasVersion := false
	for range n {
		kl, err := d.expect(cborText, "header key")
		if err != nil {
			return h, err
		}
		key, err := d.bytes(kl)
		if err != nil {
			return h, err
		}
		switch string(key) {
		case "version":
			if hasVersion {
				return h, errors.New(`duplicate "version" field`)
			}
			hasVersion = true
			if h.version, err = d.expect(cborUint, `"version"`); err != nil {
				return h, err
			}
		case "roots":
			if h.hasRoots {
				return h, errors.New(`duplicate "roots" field`)
			}
			h.hasRoots = true
			if h.roots, err = d.roots(); err != nil {
				return h, err
			}
		default:
			return h, fmt.Errorf("unknown header field %q", key)
		}
	}
	if d.i != len(b) {
		return h, fmt.Errorf("%d trailing bytes after the header map", len(b)-d.i)
	}
	if !hasVersion {
		return h, errors.New(`no "version" field`)
	}
	return h, nil
}

func (d *cborDecoder) roots() ([]cid.Cid, error) {
	n, err := d.expect(cborArray, `"roots"`)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.b)-d.i) {
		return nil, errShortCBOR
	}
	roots := make([]cid.Cid, 0, min(n, 16))
	for i := range n {
		tag, err := d.expect(cborTag, "root")
		if err != nil {
			return nil, err
		}
		if tag != cborTagCID {
			return nil, fmt.Errorf("root %d: CBOR tag %d, want %d (CID)", i, tag, cborTagCID)
		}
		bl, err := d.expect(cborBytes, "root")
		if err != nil {
			return nil, err
		}
		raw, err := d.bytes(bl)
		if err != nil {
			return nil, err
		}
		// DAG-CBOR prefixes CID bytes with the identity multibase 0x00.
		if len(raw) == 0 || raw[0] != 0 {
			return nil, fmt.Errorf("root %d: CID bytes lack the 0x00 multibase prefix", i)
		}
		c, err := cid.Cast(raw[1:])
		if err != nil {
			return nil, fmt.Errorf("root %d: %w", i, err)
		}
		roots = append(roots, c)
	}
	return roots, nil
}

func appendCBORHead(b []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(b, m|byte(arg))
	case arg <= 0xff:
		return append(b, m|24, byte(arg))
	case arg <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(arg))
	case arg <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(arg))
	default:
		return binary.BigEndian.AppendUint64(append(b, m|27), arg)
	}
}

// appendHeader appends the canonical DAG-CBOR CARv1 header (without length
// prefix) for roots. Keys are in DAG-CBOR order (shorter first), so the
// output is byte-identical to what go-car and kubo write.
func appendHeader(b []byte, roots []cid.Cid) []byte {
	b = appendCBORHead(b, cborMap, 2)
	b = appendCBORHead(b, cborText, 5)
	b = append(b, "roots"...)
	b = appendCBORHead(b, cborArray, uint64(len(roots)))
	for _, c := range roots {
		b = appendCBORHead(b, cborTag, cborTagCID)
		b = appendCBORHead(b, cborBytes, uint64(c.ByteLen()+1))
		b = append(b, 0)
		b = append(b, c.KeyString()...)
	}
	b = appendCBORHead(b, cborText, 7)
	b = append(b, "version"...)
	return appendCBORHead(b, cborUint, 1)
}

// maxVarintLen is the longest multiformats unsigned varint: 9 bytes, 63
// bits.
const maxVarintLen = 9

// uvarint decodes a multiformats unsigned varint at the start of b. n > 0 is
// its length; n == 0 means b ends inside the varint; n < 0 means it is
// invalid (longer than 9 bytes or not minimally encoded).
func uvarint(b []byte) (v uint64, n int) {
	for i, c := range b {
		if i == maxVarintLen-1 && c >= 0x80 {
			return 0, -1 // would need a 10th byte
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, -1 // a trailing zero group: not minimal
			}
			return v, i + 1
		}
	}
	return 0, 0
}

func appendUvarint(b []byte, v uint64) []byte {
	return binary.AppendUvarint(b, v)
}
