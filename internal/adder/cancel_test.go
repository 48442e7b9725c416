package adder_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"go.uber.org/goleak"

	"ipfs-cluster/internal/adder"
)

// endless is a reader that never ends.
type endless struct{ r *rand.ChaCha8 }

func (e endless) Read(p []byte) (int, error) { return e.r.Read(p) }

// TestCancel stops adds promptly when their context ends, whether the add
// is reading a file or waiting on the sink, and leaves no goroutine.
func TestCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	t.Run("endless reader", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		sink := &countingSink{hook: func(n int) {
			if n == 100 {
				cancel()
			}
		}}
		a, err := adder.New(adder.Options{}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := a.AddReader(ctx, "endless", endless{rand.NewChaCha8([32]byte{})})
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error = %v, want context.Canceled", err)
			}
			if sink.n > 101 {
				t.Fatalf("%d blocks put, the add went on after the cancel at 100", sink.n)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("add still running 20s after cancel")
		}
	})

	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		for i := range 50 {
			writeFile(t, filepath.Join(dir, "d", string(rune('a'+i%26))+string(rune('a'+i/26))), randomBytes(uint64(i), 300<<10))
		}
		ctx, cancel := context.WithCancelCause(t.Context())
		cause := errors.New("client went away")
		sink := &countingSink{hook: func(n int) {
			if n == 30 {
				cancel(cause)
			}
		}}
		a, err := adder.New(adder.Options{Recursive: true}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.AddPaths(ctx, filepath.Join(dir, "d"))
		if !errors.Is(err, cause) {
			t.Fatalf("error = %v, want the cancel cause", err)
		}
		if sink.n > 31 {
			t.Fatalf("%d blocks put after the cancel at 30", sink.n)
		}
	})

	t.Run("cancelled before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		sink := &countingSink{}
		a, err := adder.New(adder.Options{}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.AddReader(ctx, "f", io.LimitReader(endless{rand.NewChaCha8([32]byte{1})}, 1<<20)); !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
		if sink.n != 0 {
			t.Fatalf("%d blocks put by a cancelled add", sink.n)
		}
	})
}

// heapSink samples the heap every 64 blocks.
type heapSink struct {
	n    int
	peak uint64
}

func (s *heapSink) Put(context.Context, blocks.Block) error {
	s.n++
	if s.n%64 == 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s.peak = max(s.peak, ms.HeapInuse)
	}
	return nil
}

// TestMemoryIndependentOfSize adds 128MiB from a stream and checks that
// the heap stays far below the content's size: blocks are not kept.
func TestMemoryIndependentOfSize(t *testing.T) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sink := &heapSink{}
	a, err := adder.New(adder.Options{}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	const size = 128 << 20
	if _, err := a.AddReader(ctxTimeout(t, 2*time.Minute), "big", io.LimitReader(endless{rand.NewChaCha8([32]byte{2})}, size)); err != nil {
		t.Fatal(err)
	}
	grown := int64(sink.peak) - int64(before.HeapInuse)
	t.Logf("heap in use: %d MiB before, %d MiB at peak, for %d MiB added in %d blocks", before.HeapInuse>>20, sink.peak>>20, size>>20, sink.n)
	if grown > 32<<20 {
		t.Fatalf("heap grew by %d MiB while adding %d MiB", grown>>20, size>>20)
	}
}
