package api_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// codecVersion is the version byte the encoding starts with.
const codecVersion = 1

func codecCid(seed string) api.Cid {
	h := sha256.Sum256([]byte(seed))
	c, err := cid.Cast(append([]byte{0x01, 0x71, 0x12, 0x20}, h[:]...))
	if err != nil {
		panic(err)
	}
	return api.NewCid(c)
}

func codecPeer(seed string) peer.ID {
	h := sha256.Sum256([]byte(seed))
	return peer.ID(append([]byte{0x12, 0x20}, h[:]...))
}

func mustMultiaddr(s string) api.Multiaddr {
	m, err := api.NewMultiaddr(s)
	if err != nil {
		panic(err)
	}
	return m
}

// fullPin has every field the encoding stores set to a non-default value.
func fullPin() api.Pin {
	ref := codecCid("reference")
	p := api.PinWithOpts(codecCid("full"), api.PinOptions{
		ReplicationFactorMin: 1,
		ReplicationFactorMax: 4,
		Name:                 "full pin ü",
		ShardSize:            math.MaxUint64,
		ExpireAt:             time.Date(2031, 2, 3, 4, 5, 6, 7, time.UTC),
		Metadata:             map[string]string{"a": "1", "": "empty key", "z": ""},
		PinUpdate:            codecCid("previous"),
		Origins:              []api.Multiaddr{mustMultiaddr("/ip4/192.0.2.1/tcp/4001"), mustMultiaddr("/dns4/example.org/udp/4001/quic-v1")},
	})
	p.Type = api.ShardType
	p.MaxDepth = 3
	p.Allocations = []peer.ID{codecPeer("a"), codecPeer("b")}
	p.Reference = &ref
	p.Timestamp = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	return p
}

// decoded is p as UnmarshalBinary gives it back: user allocations are not
// encoded, empty collections come back nil, times come back in UTC, and the
// mode follows the depth.
func decoded(p api.Pin) api.Pin {
	p.UserAllocations = nil
	if len(p.Metadata) == 0 {
		p.Metadata = nil
	}
	if len(p.Allocations) == 0 {
		p.Allocations = nil
	}
	if len(p.Origins) == 0 {
		p.Origins = nil
	}
	if !p.ExpireAt.IsZero() {
		p.ExpireAt = p.ExpireAt.UTC()
	}
	if !p.Timestamp.IsZero() {
		p.Timestamp = p.Timestamp.UTC()
	}
	p.Mode = api.PinModeRecursive
	if p.MaxDepth == 0 {
		p.Mode = api.PinModeDirect
	}
	return p
}

func roundTrip(t *testing.T, p api.Pin) api.Pin {
	t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got api.Pin
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatalf("decoding %x: %v", b, err)
	}
	return got
}

func TestPinBinaryRoundTrip(t *testing.T) {
	direct := api.PinWithOpts(codecCid("direct"), api.PinOptions{Mode: api.PinModeDirect, ReplicationFactorMin: -1, ReplicationFactorMax: -1})
	withUserAllocs := api.PinWithOpts(codecCid("user"), api.PinOptions{UserAllocations: []peer.ID{codecPeer("u")}, Metadata: map[string]string{}})
	inZone := api.PinWithOpts(codecCid("zone"), api.PinOptions{ExpireAt: time.Date(2030, 1, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))})
	inZone.Timestamp = time.Now()
	v0, err := api.DecodeCid("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]api.Pin{
		"full":            fullPin(),
		"minimal":         {Cid: codecCid("minimal")},
		"direct":          direct,
		"cidv0":           api.PinWithOpts(v0, api.PinOptions{}),
		"user allocs":     withUserAllocs,
		"zone and clock":  inZone,
		"negative values": {Cid: codecCid("neg"), MaxDepth: -1, Type: api.MetaType, PinOptions: api.PinOptions{ReplicationFactorMin: math.MinInt64, ReplicationFactorMax: math.MaxInt64}},
		"ancient":         {Cid: codecCid("old"), Timestamp: time.Date(1700, 1, 1, 0, 0, 0, 1, time.UTC)},
		"moved":           {Cid: codecCid("moved"), Allocations: []peer.ID{codecPeer("m")}, Moved: true},
		"restored":        {Cid: codecCid("restored"), Restored: time.Unix(1700000000, 5).UTC()},
		"moved, restored": {Cid: codecCid("moved2"), Moved: true, Restored: time.Unix(1700000001, 0).UTC()},
		"replaced":        {Cid: codecCid("replaced"), Timestamp: time.Unix(1700000003, 0).UTC(), Replaced: time.Unix(1700000002, 7).UTC()},
		"all trailers":    {Cid: codecCid("trailers"), Moved: true, Restored: time.Unix(1700000001, 0).UTC(), Replaced: time.Unix(1700000000, 0).UTC()},
	} {
		t.Run(name, func(t *testing.T) {
			got := roundTrip(t, p)
			if want := decoded(p); !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			// Encoding is deterministic (metadata is written in key order).
			a, _ := p.MarshalBinary()
			b, _ := got.MarshalBinary()
			if !bytes.Equal(a, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", a, b)
			}
		})
	}
}

func TestPinBinaryCorrupt(t *testing.T) {
	p := fullPin()
	valid, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Every truncation fails cleanly.
	for n := range len(valid) {
		var got api.Pin
		if err := got.UnmarshalBinary(valid[:n]); !errors.Is(err, api.ErrCorruptPin) {
			t.Fatalf("truncated to %d of %d bytes: err = %v, want api.ErrCorruptPin", n, len(valid), err)
		}
	}
	for name, b := range map[string][]byte{
		"empty":        nil,
		"version":      append([]byte{codecVersion + 1}, valid[1:]...),
		"huge length":  {codecVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad cid":      {codecVersion, 3, 1, 2, 3},
		"huge count":   append(bytes.Clone(valid[:len(valid)-1]), 0xff, 0xff, 0xff, 0xff, 0x7f),
		"varint overf": append([]byte{codecVersion, 0}, bytes.Repeat([]byte{0xff}, 11)...),
	} {
		var got api.Pin
		if err := got.UnmarshalBinary(b); !errors.Is(err, api.ErrCorruptPin) {
			t.Errorf("%s: err = %v, want api.ErrCorruptPin", name, err)
		}
	}
}

// FuzzPinUnmarshalBinary feeds arbitrary bytes to the decoder: it must not
// panic, must fail with ErrCorruptPin, and whatever it accepts must encode
// to bytes that decode to the same pin and re-encode identically.
func FuzzPinUnmarshalBinary(f *testing.F) {
	full := fullPin()
	trailers := api.Pin{Cid: codecCid("trailers"), Moved: true, Restored: time.Unix(1700000001, 0).UTC(), Replaced: time.Unix(1700000000, 0).UTC()}
	for _, p := range []api.Pin{full, {Cid: codecCid("seed")}, api.PinWithOpts(codecCid("d"), api.PinOptions{Mode: api.PinModeDirect}), trailers} {
		b, err := p.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{codecVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p api.Pin
		if err := p.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, api.ErrCorruptPin) {
				t.Fatalf("error does not wrap api.ErrCorruptPin: %v", err)
			}
			return
		}
		enc, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var again api.Pin
		if err := again.UnmarshalBinary(enc); err != nil {
			t.Fatalf("re-encoded pin does not decode: %v\n%x", err, enc)
		}
		if !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, p)
		}
		if enc2, _ := again.MarshalBinary(); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not stable:\n%x\n%x", enc, enc2)
		}
	})
}

// FuzzPinRoundTrip builds valid pins from fuzzed fields and checks that
// they survive encoding.
func FuzzPinRoundTrip(f *testing.F) {
	f.Add("seed", "name", "key", "value", int64(-1), int64(2), int64(3), uint64(0), int64(1_700_000_000_000_000_000), int64(0), uint8(2), uint8(1), true)
	f.Add("", "", "", "", int64(0), int64(0), int64(0), uint64(math.MaxUint64), int64(math.MinInt64), int64(math.MaxInt64), uint8(16), uint8(0), false)
	f.Fuzz(func(t *testing.T, seed, name, key, value string, depth, rfMin, rfMax int64, shard uint64, ts, expire int64, typ, allocs uint8, withRef bool) {
		p := api.Pin{
			PinOptions: api.PinOptions{
				ReplicationFactorMin: int(rfMin),
				ReplicationFactorMax: int(rfMax),
				Name:                 name,
				ShardSize:            shard,
				Metadata:             map[string]string{key: value},
				Origins:              []api.Multiaddr{mustMultiaddr("/ip6/::1/tcp/4001")},
			},
			Cid:       codecCid(seed),
			Type:      api.PinType(typ),
			MaxDepth:  api.PinDepth(depth),
			Timestamp: fuzzTime(ts),
		}
		p.ExpireAt = fuzzTime(expire)
		for i := range allocs % 8 {
			p.Allocations = append(p.Allocations, codecPeer(seed+string(rune('a'+i))))
		}
		if withRef {
			ref := codecCid(seed + "ref")
			p.Reference = &ref
			p.PinUpdate = codecCid(seed + "update")
		}
		if got, want := roundTrip(t, p), decoded(p); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	})
}

// fuzzTime maps ns to a time the encoding holds: Unix nanoseconds, with 0
// standing for the zero time.
func fuzzTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
