package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// appendKey appends prefix and the CID bytes cid to b.
func appendKey(b []byte, prefix byte, cid string) []byte {
	b = append(b, prefix)
	return append(b, cid...)
}

// allocPrefix is the allocation index prefix of peer p: 0x04, the length
// of the peer ID, the peer ID.
func allocPrefix(p peer.ID) []byte {
	b := []byte{prefixAlloc}
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// allocKey is the allocation index key of (p, cid).
func allocKey(p peer.ID, cid string) []byte { return append(allocPrefix(p), cid...) }

// appendIndexKey appends the status index key of (st, cid) to b. st must be
// a single status bit.
func appendIndexKey(b []byte, st api.TrackerStatus, cid string) []byte {
	b = append(b, prefixIndex, statusBit(st))
	return append(b, cid...)
}

// statusBit is the index of the single bit set in st.
func statusBit(st api.TrackerStatus) byte { return byte(bits.TrailingZeros64(uint64(st))) }

// metaKey is the counter key of kind for stripe.
func metaKey(kind byte, stripe int) []byte { return []byte{prefixSys, kind, byte(stripe)} }

// boundsOf returns iterator bounds covering every key starting with prefix.
func boundsOf(prefix ...byte) *pebble.IterOptions {
	return &pebble.IterOptions{LowerBound: prefix, UpperBound: upperBound(prefix)}
}

// upperBound is the smallest key above every key starting with prefix: the
// prefix up to its last byte below 0xff, that byte incremented. The peer ID
// ending an allocation prefix can end in 0xff. Every prefix here starts
// with a key-kind byte below 0xff, so there is always one.
func upperBound(prefix []byte) []byte {
	upper := slices.Clone(prefix)
	i := len(upper) - 1
	for i > 0 && upper[i] == 0xff {
		i--
	}
	upper[i]++
	return upper[:i+1]
}

// cidFromKey decodes the CID that follows a key prefix of n bytes.
func cidFromKey(key []byte, n int) (api.Cid, error) {
	c, err := cid.Cast(key[n:])
	if err != nil {
		return api.CidUndef, fmt.Errorf("key %x: %w", key, err)
	}
	return api.NewCid(c), nil
}

// wrapErr adds the operation and CID to err; nil stays nil.
func wrapErr(op string, c api.Cid, err error) error {
	switch {
	case err == nil:
		return nil
	case !c.Defined():
		return fmt.Errorf("state: %s: %w", op, err)
	}
	return fmt.Errorf("state: %s %s: %w", op, c, err)
}

// decodeUvarint decodes a value that must be exactly one uvarint.
func decodeUvarint(v []byte) (uint64, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || k != len(v) {
		return 0, fmt.Errorf("malformed counter %x", v)
	}
	return n, nil
}

// marshal encodes the non-zero counts as (bit, count) uvarint pairs.
func (c *statusCounts) marshal() []byte {
	var b []byte
	for bit, n := range c {
		if n != 0 {
			b = binary.AppendUvarint(b, uint64(bit))
			b = binary.AppendUvarint(b, n)
		}
	}
	return b
}

func (c *statusCounts) unmarshal(v []byte) error {
	*c = statusCounts{}
	for len(v) > 0 {
		bit, k := binary.Uvarint(v)
		if k <= 0 || bit >= uint64(len(c)) {
			return errors.New("malformed status counts")
		}
		v = v[k:]
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return errors.New("malformed status counts")
		}
		v = v[k:]
		c[bit] = n
	}
	return nil
}

func (c *statusCounts) add(o *statusCounts) {
	for i := range c {
		c[i] += o[i]
	}
}
