package car

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// block makes a block of data under a CIDv1 with the given codec and hash
// function (length -1: the function's default digest length).
func block(t testing.TB, data []byte, codec, code uint64, length int) blocks.Block {
	t.Helper()
	sum, err := mh.Sum(data, code, length)
	if err != nil {
		t.Fatalf("mh.Sum(%s): %v", hashName(code), err)
	}
	b, err := blocks.NewBlockWithCid(data, cid.NewCidV1(codec, sum))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawBlock makes a raw sha2-256 block.
func rawBlock(t testing.TB, data []byte) blocks.Block {
	return block(t, data, cid.Raw, mh.SHA2_256, -1)
}

// randBlocks makes n raw blocks of pseudo-random data of the given size,
// deterministic for a seed.
func randBlocks(t testing.TB, seed uint64, n, size int) []blocks.Block {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]blocks.Block, n)
	for i := range out {
		data := make([]byte, size)
		for j := 0; j < size; j += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rng.Uint64())
			copy(data[j:], w[:])
		}
		out[i] = rawBlock(t, data)
	}
	return out
}

// carV1 writes a CARv1 with the given roots and blocks using Writer.
func carV1(t testing.TB, roots []cid.Cid, blks []blocks.Block) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, roots)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blks {
		if err := w.Put(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Written() != int64(buf.Len()) {
		t.Fatalf("Written() = %d, wrote %d bytes", w.Written(), buf.Len())
	}
	return buf.Bytes()
}

// carV2 wraps a CARv1 payload as a CARv2 by hand: pragma, header, pad bytes
// of padding, the payload, then trailer standing in for the index.
func carV2(v1 []byte, pad int, trailer []byte) []byte {
	var b []byte
	b = append(b, v2Pragma...)
	var hdr [v2HeaderLen]byte
	dataOffset := uint64(len(v2Pragma) + v2HeaderLen + pad)
	binary.LittleEndian.PutUint64(hdr[16:], dataOffset)
	binary.LittleEndian.PutUint64(hdr[24:], uint64(len(v1)))
	if len(trailer) > 0 {
		binary.LittleEndian.PutUint64(hdr[32:], dataOffset+uint64(len(v1)))
	}
	b = append(b, hdr[:]...)
	b = append(b, make([]byte, pad)...)
	b = append(b, v1...)
	return append(b, trailer...)
}

// readAll reads every block of a CAR, failing the test on any error.
func readAll(t testing.TB, data []byte, opts Options) (*Reader, []blocks.Block) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []blocks.Block
	for i := 0; ; i++ {
		if i > len(data) {
			t.Fatal("more blocks than bytes: reader does not progress")
		}
		b, err := r.Next()
		if err == io.EOF {
			return r, out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

// sameBlocks fails unless got and want hold the same CIDs and data in the
// same order.
func sameBlocks(t testing.TB, got, want []blocks.Block) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d blocks, want %d", len(got), len(want))
	}
	for i := range got {
		if !got[i].Cid().Equals(want[i].Cid()) || !bytes.Equal(got[i].RawData(), want[i].RawData()) {
			t.Fatalf("block %d: got %s (%d bytes), want %s (%d bytes)", i,
				got[i].Cid(), len(got[i].RawData()), want[i].Cid(), len(want[i].RawData()))
		}
	}
}

// wantErr fails unless err is an *Error of the given kind whose message
// contains every fragment.
func wantErr(t testing.TB, err error, kind error, fragments ...string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is not a *car.Error", err)
	}
	for _, f := range fragments {
		if !bytes.Contains([]byte(err.Error()), []byte(f)) {
			t.Fatalf("error %q does not mention %q", err, f)
		}
	}
	return e
}

// sectionOffsets returns the offset of every section of a CARv1 (the
// header excluded).
func sectionOffsets(t testing.TB, v1 []byte) []int {
	t.Helper()
	var offs []int
	l, n := uvarint(v1)
	if n <= 0 {
		t.Fatal("bad header varint")
	}
	for off := n + int(l); off < len(v1); {
		offs = append(offs, off)
		l, n := uvarint(v1[off:])
		if n <= 0 {
			t.Fatalf("bad section varint at %d", off)
		}
		off += n + int(l)
	}
	return offs
}

func ExampleSingleRoot() {
	a := cid.MustParse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	b := cid.MustParse("bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su")
	_, err := SingleRoot([]cid.Cid{a, b})
	fmt.Println(err)
	// Output: car: CAR has 2 roots (bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy, bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su); import needs exactly one
}
