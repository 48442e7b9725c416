package car

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/ipfs/boxo/verifcid"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// mixedBlocks covers every CID shape and hash family the reader handles.
func mixedBlocks(t testing.TB) []blocks.Block {
	t.Helper()
	v0data := []byte("a dag-pb node would go here")
	v0sum, err := mh.Sum(v0data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	v0, err := blocks.NewBlockWithCid(v0data, cid.NewCidV0(v0sum))
	if err != nil {
		t.Fatal(err)
	}
	return []blocks.Block{
		v0,
		rawBlock(t, []byte("raw sha2-256")),
		rawBlock(t, nil), // an empty block is valid
		block(t, []byte("dag-cbor sha2-512"), cid.DagCBOR, mh.SHA2_512, -1),
		block(t, []byte("blake2b-256"), cid.Raw, mh.BLAKE2B_MIN+31, -1),
		block(t, []byte("blake3"), cid.Raw, mh.BLAKE3, -1),
		block(t, []byte("blake3, 64-byte digest"), cid.Raw, mh.BLAKE3, 64),
		block(t, []byte("sha3-256"), cid.Raw, mh.SHA3_256, -1),
		block(t, []byte("keccak-256"), cid.Raw, mh.KECCAK_256, -1),
		block(t, []byte("sha2-256 truncated to 20 bytes"), cid.Raw, mh.SHA2_256, 20),
		block(t, []byte("dbl-sha2-256"), cid.Raw, mh.DBL_SHA2_256, -1),
		block(t, []byte("identity"), cid.Raw, mh.IDENTITY, -1),
	}
}

func TestReadV1(t *testing.T) {
	blks := mixedBlocks(t)
	root := blks[0].Cid()
	data := carV1(t, []cid.Cid{root}, blks)
	r, got := readAll(t, data, Options{})
	sameBlocks(t, got, blks)
	if r.Version() != 1 {
		t.Errorf("Version() = %d, want 1", r.Version())
	}
	if roots := r.Roots(); len(roots) != 1 || !roots[0].Equals(root) {
		t.Errorf("Roots() = %v, want [%s]", roots, root)
	}
	if r.Offset() != int64(len(data)) {
		t.Errorf("Offset() = %d after the last block, want %d", r.Offset(), len(data))
	}
	// io.EOF is sticky.
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next after EOF = %v, want io.EOF", err)
	}
}

func TestHeaderIsCanonical(t *testing.T) {
	// The header go-car and kubo write for one CIDv0 root, byte for byte.
	root := cid.MustParse("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
	want := append([]byte{0x38, 0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a, 0x58, 0x23, 0x00}, root.Bytes()...)
	want = append(want, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01)
	if got := carV1(t, []cid.Cid{root}, nil); !bytes.Equal(got, want) {
		t.Fatalf("header\n got %x\nwant %x", got, want)
	}
}

func TestReadV2(t *testing.T) {
	blks := randBlocks(t, 1, 5, 3000)
	root := blks[0].Cid()
	v1 := carV1(t, []cid.Cid{root}, blks)
	for _, pad := range []int{0, 1, 100000} {
		t.Run(fmt.Sprintf("pad%d", pad), func(t *testing.T) {
			v2 := carV2(v1, pad, []byte("an index that must be ignored"))
			r, got := readAll(t, v2, Options{})
			sameBlocks(t, got, blks)
			if r.Version() != 2 {
				t.Errorf("Version() = %d, want 2", r.Version())
			}
			// Verify turns it back into the exact CARv1.
			var out bytes.Buffer
			gotRoot, st, err := Verify(t.Context(), bytes.NewReader(v2), &out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !gotRoot.Equals(root) || st.Version != 2 || st.Blocks != int64(len(blks)) {
				t.Errorf("Verify = %s, %+v", gotRoot, st)
			}
			if !bytes.Equal(out.Bytes(), v1) {
				t.Error("Verify output differs from the CARv1 payload")
			}
			if st.BytesWritten != int64(len(v1)) || st.BytesRead != int64(len(v1)+len(v2Pragma)+v2HeaderLen+pad) {
				t.Errorf("stats %+v: want %d bytes written, %d read", st, len(v1), len(v1)+len(v2Pragma)+v2HeaderLen+pad)
			}
		})
	}
}

// endless yields zeros forever.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestV2DoesNotReadPastPayload(t *testing.T) {
	blks := randBlocks(t, 2, 3, 100)
	v2 := carV2(carV1(t, []cid.Cid{blks[0].Cid()}, blks), 8, nil)
	// An index that never ends: the reader must stop at the payload end.
	root, st, err := Verify(t.Context(), io.MultiReader(bytes.NewReader(v2), endless{}), nil, Options{})
	if err != nil || !root.Equals(blks[0].Cid()) || st.Blocks != 3 {
		t.Fatalf("Verify = %s, %+v, %v", root, st, err)
	}
}

func TestVerifyOutputIdenticalV1(t *testing.T) {
	blks := mixedBlocks(t)
	v1 := carV1(t, []cid.Cid{blks[1].Cid()}, blks)
	var out bytes.Buffer
	root, st, err := Verify(t.Context(), bytes.NewReader(v1), &out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !root.Equals(blks[1].Cid()) || !bytes.Equal(out.Bytes(), v1) {
		t.Fatalf("root %s, output equal: %v", root, bytes.Equal(out.Bytes(), v1))
	}
	var data int64
	for _, b := range blks {
		data += int64(len(b.RawData()))
	}
	want := Stats{Version: 1, Blocks: int64(len(blks)), DataBytes: data, BytesRead: int64(len(v1)), BytesWritten: int64(len(v1))}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestRoots(t *testing.T) {
	blks := randBlocks(t, 3, 4, 10)
	c := func(i int) cid.Cid { return blks[i].Cid() }

	// The Reader accepts any number of roots; Verify and SingleRoot do not.
	for _, tc := range []struct {
		roots []cid.Cid
		want  []string
	}{
		{nil, []string{"car: CAR has no roots; import needs exactly one"}},
		{[]cid.Cid{c(0), c(1)}, []string{fmt.Sprintf("car: CAR has 2 roots (%s, %s); import needs exactly one", c(0), c(1))}},
		{[]cid.Cid{c(0), c(1), c(2), c(3)}, []string{"CAR has 4 roots", c(2).String(), "and 1 more"}},
	} {
		data := carV1(t, tc.roots, blks)
		r, got := readAll(t, data, Options{})
		sameBlocks(t, got, blks)
		if len(r.Roots()) != len(tc.roots) {
			t.Errorf("Roots() = %v, want %v", r.Roots(), tc.roots)
		}
		_, err := SingleRoot(r.Roots())
		wantErr(t, err, ErrRoots, tc.want...)
		var out bytes.Buffer
		_, _, err = Verify(t.Context(), bytes.NewReader(data), &out, Options{})
		wantErr(t, err, ErrRoots, tc.want...)
		if out.Len() != 0 {
			t.Errorf("Verify wrote %d bytes for a CAR it refused by its header", out.Len())
		}
	}
}

func TestRootMissing(t *testing.T) {
	blks := randBlocks(t, 4, 3, 10)
	absent := rawBlock(t, []byte("not in the CAR")).Cid()
	data := carV1(t, []cid.Cid{absent}, blks)
	_, _, err := Verify(t.Context(), bytes.NewReader(data), io.Discard, Options{})
	e := wantErr(t, err, ErrRootMissing, absent.String(), "3 blocks")
	if !e.Cid.Equals(absent) {
		t.Errorf("Error.Cid = %s, want %s", e.Cid, absent)
	}
	if root, _, err := Verify(t.Context(), bytes.NewReader(data), io.Discard, Options{AllowMissingRoot: true}); err != nil || !root.Equals(absent) {
		t.Fatalf("with AllowMissingRoot: %s, %v", root, err)
	}

	// Presence is by multihash and codec, not by CID version: a CIDv0 root
	// is satisfied by the same dag-pb block under a CIDv1 ...
	pb := block(t, []byte("dag-pb bytes"), cid.DagProtobuf, mh.SHA2_256, -1)
	v0 := cid.NewCidV0(pb.Cid().Hash())
	data = carV1(t, []cid.Cid{v0}, []blocks.Block{pb})
	if root, _, err := Verify(t.Context(), bytes.NewReader(data), io.Discard, Options{}); err != nil || !root.Equals(v0) {
		t.Fatalf("CIDv0 root of a CIDv1 block: %s, %v", root, err)
	}
	// ... but not by a block of the same multihash under another codec:
	// kubo would decode the root with the wrong codec.
	asRaw := cid.NewCidV1(cid.Raw, pb.Cid().Hash())
	data = carV1(t, []cid.Cid{asRaw}, []blocks.Block{pb})
	_, _, err = Verify(t.Context(), bytes.NewReader(data), io.Discard, Options{})
	wantErr(t, err, ErrRootMissing, asRaw.String())

	// An identity root needs no block.
	id := block(t, []byte("inline"), cid.Raw, mh.IDENTITY, -1).Cid()
	data = carV1(t, []cid.Cid{id}, nil)
	if _, _, err := Verify(t.Context(), bytes.NewReader(data), io.Discard, Options{}); err != nil {
		t.Fatalf("identity root: %v", err)
	}
}

func TestTruncated(t *testing.T) {
	blks := randBlocks(t, 5, 4, 1234)
	v1 := carV1(t, []cid.Cid{blks[0].Cid()}, blks)
	offs := sectionOffsets(t, v1)

	// Inside block 2, 56 bytes after its length varint.
	secLen, n := uvarint(v1[offs[2]:])
	cut := offs[2] + n + 56
	_, _, err := Verify(t.Context(), bytes.NewReader(v1[:cut]), io.Discard, Options{})
	e := wantErr(t, err, ErrTruncated)
	want := fmt.Sprintf("car: truncated at offset %d (block 2: want %d bytes, got 56)", cut, secLen)
	if err.Error() != want {
		t.Fatalf("error\n got %q\nwant %q", err, want)
	}
	if e.Offset != int64(cut) || e.Block != 2 {
		t.Fatalf("Error fields: offset %d block %d", e.Offset, e.Block)
	}

	// Every cut that is not at a section boundary is ErrTruncated. (A cut
	// at a boundary leaves a valid, shorter CARv1: the format has no
	// length. Only the root check, or CARv2's data size, can catch it.)
	boundary := map[int]bool{}
	for _, o := range offs {
		boundary[o] = true
	}
	for cut := 0; cut < len(v1); cut++ {
		_, _, err := Verify(t.Context(), bytes.NewReader(v1[:cut]), io.Discard, Options{})
		if boundary[cut] {
			// The root is block 0: only the cut before it shows.
			if (cut == offs[0]) != errors.Is(err, ErrRootMissing) || (cut != offs[0] && err != nil) {
				t.Fatalf("cut at boundary %d: %v", cut, err)
			}
			continue
		}
		wantErr(t, err, ErrTruncated, fmt.Sprintf("truncated at offset %d", cut))
	}

	// CARv2 knows its payload size: a short payload is truncation even at
	// a section boundary.
	v2 := carV2(v1, 0, nil)
	shortAt := len(v2) - (len(v1) - offs[3])
	_, _, err = Verify(t.Context(), bytes.NewReader(v2[:shortAt]), io.Discard, Options{})
	wantErr(t, err, ErrTruncated, fmt.Sprintf("truncated at offset %d (block 3", shortAt))

	// A CARv2 whose data size ends inside a section.
	v2 = carV2(v1[:len(v1)-10], 0, v1[len(v1)-10:])
	_, _, err = Verify(t.Context(), bytes.NewReader(v2), io.Discard, Options{})
	wantErr(t, err, ErrTruncated, "block 3", "CARv2 data payload ends at offset")
}

func TestFlippedByte(t *testing.T) {
	blks, bad, offs := carWithFlippedByte(t, 6, 20, 17)
	_, _, err := Verify(t.Context(), bytes.NewReader(bad), io.Discard, Options{})
	want := fmt.Sprintf("car: block 17 at offset %d: %s: hash mismatch", offs[17], blks[17].Cid())
	if err == nil || err.Error() != want {
		t.Fatalf("error\n got %v\nwant %s", err, want)
	}
	e := wantErr(t, err, ErrHashMismatch)
	if e.Block != 17 || e.Offset != int64(offs[17]) || !e.Cid.Equals(blks[17].Cid()) {
		t.Fatalf("Error fields: %+v", e)
	}

	// A flipped bit must never let altered data through, nor panic: the
	// CAR is refused, or every block read back has the original data and
	// multihash. (A section CID's codec is not covered by any hash: a flip
	// there yields a valid CID of another codec for the same data. kubo
	// stores blocks by multihash, so that is harmless; for the root the
	// codec matters and Verify checks it.)
	orig := blks[:3]
	small := carV1(t, []cid.Cid{blks[0].Cid()}, orig)
	for i := range small {
		for bit := range 8 {
			mut := bytes.Clone(small)
			mut[i] ^= 1 << bit
			var out bytes.Buffer
			_, _, err := Verify(t.Context(), bytes.NewReader(mut), &out, Options{})
			if err != nil {
				var ce *Error
				if !errors.As(err, &ce) || ce.Kind == nil {
					t.Fatalf("flipping bit %d of byte %d: error without a kind: %v", bit, i, err)
				}
				continue
			}
			_, got := readAll(t, out.Bytes(), Options{})
			if len(got) != len(orig) {
				t.Fatalf("flipping bit %d of byte %d: %d blocks read, want %d", bit, i, len(got), len(orig))
			}
			for j := range got {
				if !bytes.Equal(got[j].Cid().Hash(), orig[j].Cid().Hash()) || !bytes.Equal(got[j].RawData(), orig[j].RawData()) {
					t.Fatalf("flipping bit %d of byte %d altered block %d unnoticed", bit, i, j)
				}
			}
		}
	}
}

// carWithFlippedByte is a CARv1 of n random blocks with the last byte of
// block i (not the last) flipped, with the blocks and section offsets.
func carWithFlippedByte(t testing.TB, seed uint64, n, i int) ([]blocks.Block, []byte, []int) {
	t.Helper()
	blks := randBlocks(t, seed, n, 500)
	v1 := carV1(t, []cid.Cid{blks[0].Cid()}, blks)
	offs := sectionOffsets(t, v1)
	bad := bytes.Clone(v1)
	bad[offs[i+1]-1] ^= 0x01
	return blks, bad, offs
}

// TestUnverified reads a CAR with a corrupt block without hashing: the
// block comes through as it is, for a consumer that checks it itself,
// while a CID the allow-list refuses is still refused.
func TestUnverified(t *testing.T) {
	blks, bad, _ := carWithFlippedByte(t, 7, 3, 1)
	_, got := readAll(t, bad, Options{Unverified: true})
	if len(got) != 3 || bytes.Equal(got[1].RawData(), blks[1].RawData()) || !got[1].Cid().Equals(blks[1].Cid()) {
		t.Fatalf("unverified read of a CAR with a flipped byte: %d blocks, want 3 with the flipped one as sent", len(got))
	}
	md5 := block(t, []byte("m"), cid.Raw, mh.MD5, -1)
	r, err := NewReader(bytes.NewReader(carV1(t, []cid.Cid{md5.Cid()}, []blocks.Block{md5})), Options{Unverified: true})
	if err == nil {
		_, err = r.Next()
	}
	wantErr(t, err, ErrUnsupportedHash)
}

func TestBadHeaders(t *testing.T) {
	root := rawBlock(t, []byte("r")).Cid()
	good := carV1(t, []cid.Cid{root}, nil)
	hdr := func(cbor ...byte) []byte { return append(appendUvarint(nil, uint64(len(cbor))), cbor...) }
	text := func(s string) []byte { return append(appendCBORHead(nil, cborText, uint64(len(s))), s...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	for _, tc := range []struct {
		name  string
		in    []byte
		kind  error
		frags []string
	}{
		{"empty", nil, ErrTruncated, []string{"car: truncated at offset 0 (empty input: no CAR header)"}},
		{"text file", []byte("hello world\n"), ErrTruncated, []string{"header: want 104 bytes, got 11; is this a CAR file?"}},
		{"not cbor", []byte("\x05hello"), ErrMalformed, []string{"malformed header at offset 0", "top level: want a map, got a text string", "is this a CAR file?"}},
		{"cut header", good[:10], ErrTruncated, []string{"truncated at offset 10 (header: want"}},
		{"version 3", hdr(cat([]byte{0xa2}, text("roots"), []byte{0x80}, text("version"), []byte{0x03})...), ErrVersion,
			[]string{"car: unsupported CAR version 3 (this reader handles versions 1 and 2)"}},
		{"no version", hdr(cat([]byte{0xa1}, text("roots"), []byte{0x80})...), ErrMalformed, []string{`no "version" field`}},
		{"no roots", hdr(cat([]byte{0xa1}, text("version"), []byte{0x01})...), ErrMalformed, []string{`no "roots" field`}},
		{"unknown field", hdr(cat([]byte{0xa3}, text("roots"), []byte{0x80}, text("version"), []byte{0x01}, text("extra"), []byte{0x01})...),
			ErrMalformed, []string{`unknown header field "extra"`}},
		{"duplicate", hdr(cat([]byte{0xa2}, text("version"), []byte{0x01}, text("version"), []byte{0x01})...), ErrMalformed, []string{"duplicate"}},
		{"indefinite map", hdr(0xbf, 0xff), ErrMalformed, []string{"indefinite"}},
		{"not a map", hdr(0x83, 0x01, 0x02, 0x03), ErrMalformed, []string{"top level: want a map, got an array"}},
		{"trailing", hdr(cat(good[1:], []byte{0x00})...), ErrMalformed, []string{"1 trailing bytes"}},
		{"root without tag", hdr(cat([]byte{0xa2}, text("roots"), []byte{0x81, 0x41, 0x00}, text("version"), []byte{0x01})...),
			ErrMalformed, []string{"root: want a tag, got a byte string"}},
		{"root bad cid", hdr(cat([]byte{0xa2}, text("roots"), []byte{0x81, 0xd8, 0x2a, 0x43, 0x00, 0x01, 0x55}, text("version"), []byte{0x01})...),
			ErrMalformed, []string{"root 0"}},
		{"huge roots count", hdr(cat([]byte{0xa2}, text("roots"), []byte{0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})...),
			ErrMalformed, []string{"past the end"}},
		{"header too large", appendUvarint(nil, 1<<40), ErrTooLarge, []string{"exceeds the limit of 1048576 bytes"}},
		{"zero header", []byte{0x00}, ErrMalformed, []string{"length 0"}},
		{"non-minimal varint", []byte{0x80, 0x00}, ErrMalformed, []string{"not minimally encoded"}},
		{"10-byte varint", bytes.Repeat([]byte{0xff}, 10), ErrMalformed, []string{"over 9 bytes"}},
		{"v2 pragma only", v2Pragma, ErrTruncated, []string{"CARv2 header: want 40 bytes, got 0"}},
		{"v2 offset inside header", carV2OffsetSize(10, 100), ErrMalformed, []string{"CARv2 data offset 10 points inside the CARv2 header, which ends at 51"}},
		{"v2 offset past any file", carV2OffsetSize(1<<62, 100), ErrMalformed, []string{"is outside the file"}},
		{"v2 zero size", carV2OffsetSize(51, 0), ErrMalformed, []string{"CARv2 data size 0"}},
		{"v2 offset beyond end", carV2OffsetSize(1000, 10), ErrTruncated, []string{"CARv2 data payload announced at offset 1000"}},
		{"v2 inside v2", carV2(carV2(good, 0, nil), 0, nil), ErrMalformed, []string{"CARv2 payload is not a CARv1 (version 2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.in), Options{})
			e := wantErr(t, err, tc.kind, tc.frags...)
			if e.Block != -1 {
				t.Errorf("header error names block %d", e.Block)
			}
		})
	}
}

// carV2OffsetSize is a pragma and CARv2 header with the given data offset
// and size, and nothing else.
func carV2OffsetSize(offset, size uint64) []byte {
	b := carV2(nil, 0, nil)
	b = b[:len(v2Pragma)+v2HeaderLen]
	putLE := func(at int, v uint64) {
		for i := range 8 {
			b[at+i] = byte(v >> (8 * i))
		}
	}
	putLE(len(v2Pragma)+16, offset)
	putLE(len(v2Pragma)+24, size)
	return b
}

func TestBadSections(t *testing.T) {
	blk := rawBlock(t, []byte("hello"))
	root := blk.Cid()
	head := carV1(t, []cid.Cid{root}, nil)
	good := carV1(t, []cid.Cid{root}, []blocks.Block{blk})
	first := len(head)
	section := func(b ...byte) []byte { return append(appendUvarint(bytes.Clone(head), uint64(len(b))), b...) }

	for _, tc := range []struct {
		name  string
		in    []byte
		opts  Options
		kind  error
		frags []string
	}{
		{"huge length", append(bytes.Clone(head), appendUvarint(nil, 1<<62)...), Options{}, ErrTooLarge,
			[]string{fmt.Sprintf("car: block 0 at offset %d: section length 4611686018427387904 exceeds the limit", first)}},
		{"block over limit", good, Options{MaxBlockSize: 4}, ErrTooLarge, []string{"block 0", root.String(), "block of 5 bytes exceeds the limit of 4"}},
		{"zero length", append(bytes.Clone(good), 0x00), Options{}, ErrMalformed, []string{"block 1", "zero-length section"}},
		{"bad cid", section(0x01, 0x55, 0x12, 0x40, 0x00), Options{}, ErrMalformed, []string{"block 0", "invalid CID"}},
		{"cid version 2", section(0x02, 0x55, 0x00, 0x00), Options{}, ErrMalformed, []string{"invalid CID"}},
		{"murmur3", section(block(t, []byte("m"), cid.Raw, mh.MURMUR3X64_64, -1).Cid().Bytes()...), Options{}, ErrUnsupportedHash,
			[]string{"hash function murmur3-x64-64 is not allowed"}},
		{"short digest", section(block(t, []byte("s"), cid.Raw, mh.SHA2_256, 16).Cid().Bytes()...), Options{}, ErrUnsupportedHash,
			[]string{"sha2-256 digest of 16 bytes is shorter than the minimum of 20"}},
		{"md5", section(block(t, []byte("m"), cid.Raw, mh.MD5, -1).Cid().Bytes()...), Options{}, ErrUnsupportedHash,
			[]string{"md5 is not allowed"}},
		{"digest longer than hash", section(cid.NewCidV1(cid.Raw, mustEncode(t, make([]byte, 40), mh.SHA2_256)).Bytes()...), Options{}, ErrUnsupportedHash,
			[]string{"cannot compute sha2-256 with a 40-byte digest"}},
		{"unknown hash", section(cid.NewCidV1(cid.Raw, mustEncode(t, make([]byte, 32), 0x7777)).Bytes()...),
			Options{Allowlist: verifcid.NewAllowlist(map[uint64]bool{0x7777: true})}, ErrUnsupportedHash, []string{"cannot compute multihash 0x7777"}},
		{"identity mismatch", section(append(block(t, []byte("id"), cid.Raw, mh.IDENTITY, -1).Cid().Bytes(), 'x')...), Options{}, ErrHashMismatch,
			[]string{"identity CID does not embed this data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.in), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var last error
			for i := 0; i < 10 && last == nil; i++ {
				_, last = r.Next()
			}
			wantErr(t, last, tc.kind, tc.frags...)
			// Errors are sticky.
			if _, again := r.Next(); again != last {
				t.Errorf("second Next = %v, want the same error %v", again, last)
			}
		})
	}

	// A custom allow-list admits murmur3, which then verifies.
	mm := block(t, []byte("m"), cid.Raw, mh.MURMUR3X64_64, -1)
	data := carV1(t, []cid.Cid{mm.Cid()}, []blocks.Block{mm})
	al := verifcid.NewOverridingAllowlist(verifcid.DefaultAllowlist, map[uint64]bool{mh.MURMUR3X64_64: true})
	if _, _, err := Verify(t.Context(), bytes.NewReader(data), nil, Options{Allowlist: minDigest{al, 8}}); err != nil {
		t.Fatalf("murmur3 with a custom allow-list: %v", err)
	}

	// Zero-length sections as EOF, on request.
	r, got := readAll(t, append(bytes.Clone(good), 0x00, 0x00, 0x00), Options{ZeroLengthSectionAsEOF: true})
	sameBlocks(t, got, []blocks.Block{blk})
	_ = r
}

// minDigest lowers an allow-list's minimum digest size.
type minDigest struct {
	verifcid.Allowlist
	min int
}

func (m minDigest) MinDigestSize(uint64) int { return m.min }

func mustEncode(t testing.TB, digest []byte, code uint64) mh.Multihash {
	t.Helper()
	m, err := mh.Encode(digest, code)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHostileLengthsAllocateLittle checks that a length prefix promising
// much more than the input holds costs memory in proportion to the input,
// not to the promise.
func TestHostileLengthsAllocateLittle(t *testing.T) {
	root := rawBlock(t, []byte("r")).Cid()
	head := carV1(t, []cid.Cid{root}, nil)
	in := append(bytes.Clone(head), appendUvarint(nil, DefaultMaxBlockSize)...)
	in = append(in, root.Bytes()...)
	in = append(in, "only a few bytes follow"...)
	hostileHeader := append(appendUvarint(nil, DefaultMaxHeaderSize), 0xa2)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const runs = 20
	for range runs {
		r, err := NewReader(bytes.NewReader(in), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Next = %v, want ErrTruncated", err)
		}
		if _, err := NewReader(bytes.NewReader(hostileHeader), Options{}); !errors.Is(err, ErrTruncated) {
			t.Fatalf("NewReader = %v, want ErrTruncated", err)
		}
	}
	runtime.ReadMemStats(&after)
	// Per run: two 64 KiB bufio buffers and two 64 KiB first block
	// buffers, plus change; a 4 MiB allocation per run would show.
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 512<<10 {
		t.Fatalf("allocated %d bytes per hostile input", per)
	}
}

func TestNextRawReusesBuffer(t *testing.T) {
	blks := randBlocks(t, 7, 50, 4096)
	data := carV1(t, []cid.Cid{blks[0].Cid()}, blks)
	r, err := NewReader(bytes.NewReader(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(40, func() {
		c, d, err := r.NextRaw()
		if err != nil || len(d) != 4096 || !c.Defined() {
			t.Fatalf("NextRaw: %v", err)
		}
	})
	// The CID string is the only allocation per block.
	if allocs > 1 {
		t.Fatalf("%.1f allocations per NextRaw, want at most 1", allocs)
	}
}

func TestVerifyContext(t *testing.T) {
	blks := randBlocks(t, 8, 3, 10)
	data := carV1(t, []cid.Cid{blks[0].Cid()}, blks)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := Verify(ctx, bytes.NewReader(data), io.Discard, Options{})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "after 0 blocks") {
		t.Fatalf("Verify with a cancelled context = %v", err)
	}
}

// failWriter fails every write after the first n bytes.
type failWriter struct{ n int }

var errWrite = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return len(p), nil
	}
	n := w.n
	w.n = 0
	return n, errWrite
}

func TestVerifyWriteError(t *testing.T) {
	blks := randBlocks(t, 9, 4, 100<<10) // larger than the write buffer
	data := carV1(t, []cid.Cid{blks[0].Cid()}, blks)
	_, _, err := Verify(t.Context(), bytes.NewReader(data), &failWriter{n: 150 << 10}, Options{})
	if !errors.Is(err, errWrite) || !strings.Contains(err.Error(), "car: writing block "+blks[1].Cid().String()) {
		t.Fatalf("Verify to a failing writer = %v", err)
	}

	w, err := NewWriter(&failWriter{}, nil)
	if err != nil {
		t.Fatal(err) // the header is buffered
	}
	if err := w.Flush(); !errors.Is(err, errWrite) {
		t.Fatalf("Flush = %v", err)
	}
	if err := w.Put(blks[0]); !errors.Is(err, errWrite) {
		t.Fatalf("Put after a failed Flush = %v", err)
	}
	if _, err := NewWriter(io.Discard, []cid.Cid{cid.Undef}); err == nil {
		t.Fatal("NewWriter accepted an undefined root")
	}
}

func TestUvarint(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 255, 300, 1<<32 + 5, 1<<63 - 1} {
		b := appendUvarint(nil, v)
		got, n := uvarint(b)
		if got != v || n != len(b) {
			t.Errorf("uvarint(%x) = %d, %d; want %d, %d", b, got, n, v, len(b))
		}
		if _, n := uvarint(b[:len(b)-1]); n != 0 {
			t.Errorf("uvarint of a cut %x: n = %d, want 0", b, n)
		}
		// The stream decoder agrees.
		r := &Reader{br: bufioReader(b), end: -1}
		if got, n, err := r.readUvarint(); err != nil || got != v || n != len(b) {
			t.Errorf("readUvarint(%x) = %d, %d, %v", b, got, n, err)
		}
	}
	for _, bad := range [][]byte{{0x80, 0x00}, {0xff, 0x80, 0x00}, bytes.Repeat([]byte{0xff}, 9), bytes.Repeat([]byte{0xff}, 12)} {
		if _, n := uvarint(bad); n >= 0 {
			t.Errorf("uvarint(%x) accepted: n = %d", bad, n)
		}
		r := &Reader{br: bufioReader(bad), end: -1}
		if _, _, err := r.readUvarint(); err != errBadVarint {
			t.Errorf("readUvarint(%x) = %v, want errBadVarint", bad, err)
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
