package car

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
)

// Benchmarks run on a synthetic CARv1 of 256 KiB raw sha2-256 blocks (the
// shape `ipfs add --raw-leaves` produces), CAR_BENCH_MB in size (default
// 256). Example:
//
//	go test -run '^$' -bench . -benchtime 5x ./internal/car/
const benchBlockSize = 256 << 10

func benchMB() int {
	if v, err := strconv.Atoi(os.Getenv("CAR_BENCH_MB")); err == nil && v > 0 {
		return v
	}
	return 256
}

// genCAR builds a CARv1 of n pseudo-random raw blocks of size bytes, rooted
// at its first block, without holding the blocks separately.
func genCAR(tb testing.TB, seed uint64, n, size int) []byte {
	tb.Helper()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'c', 'a', 'r'})
	data := make([]byte, size)
	next := func() cid.Cid {
		rng.Read(data)
		sum, err := mh.Sum(data, mh.SHA2_256, -1)
		if err != nil {
			tb.Fatal(err)
		}
		return cid.NewCidV1(cid.Raw, sum)
	}
	first := next()
	var buf bytes.Buffer
	buf.Grow(n*(size+40) + 100)
	w, err := NewWriter(&buf, []cid.Cid{first})
	if err != nil {
		tb.Fatal(err)
	}
	for i, c := 0, first; i < n; i, c = i+1, next() {
		if err := w.PutRaw(c, data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

var (
	benchOnce sync.Once
	benchData []byte
)

// benchCAR returns the shared benchmark CAR, built on first use.
func benchCAR(b *testing.B) []byte {
	benchOnce.Do(func() { benchData = genCAR(b, 0, benchMB()<<20/benchBlockSize, benchBlockSize) })
	return benchData
}

func BenchmarkVerify(b *testing.B) {
	data := benchCAR(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Verify(b.Context(), bytes.NewReader(data), io.Discard, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyPipe forwards through an io.Pipe drained by another
// goroutine, as the import path does towards the HTTP request to kubo.
func BenchmarkVerifyPipe(b *testing.B) {
	data := benchCAR(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		pr, pw := io.Pipe()
		drained := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, pr)
			drained <- err
		}()
		_, _, err := Verify(b.Context(), bytes.NewReader(data), pw, Options{})
		pw.CloseWithError(err)
		if err := <-drained; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderNextRaw is reading and verifying alone, no forwarding.
func BenchmarkReaderNextRaw(b *testing.B) {
	data := benchCAR(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), Options{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, _, err := r.NextRaw(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSHA256 is the floor: hashing the same bytes with crypto/sha256
// (which uses the SHA-NI instructions where the CPU has them; compare with
// GODEBUG=cpu.sha=off).
func BenchmarkSHA256(b *testing.B) {
	data := benchCAR(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for off := 0; off < len(data); off += benchBlockSize {
			sha256.Sum256(data[off:min(off+benchBlockSize, len(data))])
		}
	}
}

// BenchmarkKuboImport measures the whole import path into a real kubo
// daemon (offline, fresh repo): Verify piped into dag/import, and for
// comparison the same CAR posted to dag/import directly. Every iteration
// imports a CAR of new blocks so that kubo really stores them. Run with a
// fixed iteration count, e.g. -bench KuboImport -benchtime 3x.
func BenchmarkKuboImport(b *testing.B) {
	n := benchMB() << 20 / benchBlockSize
	for _, verify := range []bool{true, false} {
		b.Run(fmt.Sprintf("verify=%v", verify), func(b *testing.B) {
			d := kubotest.Start(b, kubo.Options{Offline: true})
			seed := uint64(1000)
			if !verify {
				seed = 2000
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				seed++
				data := genCAR(b, seed, n, benchBlockSize)
				b.SetBytes(int64(len(data)))
				b.StartTimer()
				if _, _, err := importCAR(b.Context(), d, bytes.NewReader(data), verify); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
