package car

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// fuzzOptions keep the fuzzer's inputs and allocations small; the limits
// are exercised, not the defaults.
var fuzzOptions = Options{MaxBlockSize: 64 << 10, MaxHeaderSize: 4 << 10}

// fuzzSeeds are valid and broken CARs of every shape the reader handles.
// testdata/fuzz/FuzzReader holds the same seeds as files (written by
// TestWriteFuzzSeeds) plus anything the fuzzer found worth keeping.
func fuzzSeeds(t testing.TB) map[string][]byte {
	blks := mixedBlocks(t)
	root := blks[0].Cid()
	v1 := carV1(t, []cid.Cid{root}, blks)
	offs := sectionOffsets(t, v1)
	flipped := bytes.Clone(v1)
	flipped[offs[2]-1] ^= 0x20
	return map[string][]byte{
		"v1-mixed-hashes":    v1,
		"v2-padded-indexed":  carV2(v1, 5, []byte{0x80, 0x01, 0x02}),
		"two-roots":          carV1(t, []cid.Cid{root, blks[1].Cid()}, blks[:2]),
		"zero-roots":         carV1(t, nil, blks[:2]),
		"truncated-section":  v1[:offs[3]+7],
		"flipped-data-byte":  flipped,
		"huge-section-len":   append(carV1(t, []cid.Cid{root}, nil), appendUvarint(nil, 1<<62)...),
		"huge-header-len":    appendUvarint(nil, 1<<40),
		"zero-length":        append(bytes.Clone(v1[:offs[1]]), 0x00),
		"v2-pragma-only":     bytes.Clone(v2Pragma),
		"v2-huge-offset":     carV2OffsetSize(1<<62, 1<<20),
		"non-minimal-varint": append(bytes.Clone(v1[:offs[0]]), 0x85, 0x80, 0x00),
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var roots []cid.Cid
		var blks []blocks.Block
		readErr := func() error {
			r, err := NewReader(bytes.NewReader(in), fuzzOptions)
			if err != nil {
				return err
			}
			roots = r.Roots()
			// Every block takes at least one byte: the loop is bounded.
			for range len(in) + 1 {
				b, err := r.Next()
				if err != nil {
					return err
				}
				// Whatever the reader hands out verifies on its own.
				want, err := b.Cid().Prefix().Sum(b.RawData())
				if err != nil || !want.Equals(b.Cid()) {
					t.Fatalf("block %s does not verify independently (%v)", b.Cid(), err)
				}
				blks = append(blks, b)
			}
			t.Fatal("reader did not end")
			return nil
		}()
		if readErr != io.EOF {
			checkKind(t, readErr)
		}

		// Verify agrees with the Reader, and what it writes reads back as
		// the same blocks.
		var out bytes.Buffer
		root, st, err := Verify(t.Context(), bytes.NewReader(in), &out, fuzzOptions)
		if err != nil {
			checkKind(t, err)
			if readErr == io.EOF && len(roots) == 1 && !errors.Is(err, ErrRootMissing) {
				t.Fatalf("Reader read the CAR, Verify failed: %v", err)
			}
			return
		}
		if readErr != io.EOF || len(roots) != 1 || !root.Equals(roots[0]) || st.Blocks != int64(len(blks)) {
			t.Fatalf("Verify succeeded (%s, %+v) where the Reader ended with %v, %d roots, %d blocks", root, st, readErr, len(roots), len(blks))
		}
		r2, again := readAll(t, out.Bytes(), fuzzOptions)
		sameBlocks(t, again, blks)
		if r2.Version() != 1 || !r2.Roots()[0].Equals(root) {
			t.Fatalf("re-read: version %d, roots %v", r2.Version(), r2.Roots())
		}
	})
}

// checkKind fails unless err is an *Error with a kind: on in-memory input
// there is no I/O error, so every failure must be classified.
func checkKind(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind == nil {
		t.Fatalf("unclassified error: %v", err)
	}
}

// TestWriteFuzzSeeds rewrites testdata/fuzz/FuzzReader from fuzzSeeds when
// CAR_WRITE_FUZZ_SEEDS is set; otherwise it checks the files are current.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	for name, data := range fuzzSeeds(t) {
		file := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		path := filepath.Join(dir, "seed-"+name)
		if os.Getenv("CAR_WRITE_FUZZ_SEEDS") != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, []byte(file)) {
			t.Errorf("%s is missing or stale (sha256 %x); regenerate with CAR_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds", path, sha256.Sum256(got))
		}
	}
}
