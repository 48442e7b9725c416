package ipfsconn

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
)

// The streams are what the adder writes into.
var _ adder.BlockSink = (*BlockStream)(nil)

// testDAG is a small UnixFS file: raw leaves under a dag-pb root, hashed
// with hash, so that pinning the root needs every block.
func testDAG(t testing.TB, leaves, size int, hash uint64) (root cid.Cid, all []blocks.Block) {
	t.Helper()
	prefix := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: hash, MhLength: -1}
	fsn := unixfs.NewFSNode(unixfs.TFile)
	nd := merkledag.NodeWithData(nil)
	if err := nd.SetCidBuilder(cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: hash, MhLength: -1}); err != nil {
		t.Fatal(err)
	}
	for range leaves {
		data := make([]byte, size)
		rand.Read(data)
		c, err := prefix.Sum(data)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := blocks.NewBlockWithCid(data, c)
		all = append(all, b)
		fsn.AddBlockSize(uint64(size))
		if err := nd.AddRawLink("", &ipld.Link{Cid: c, Size: uint64(size)}); err != nil {
			t.Fatal(err)
		}
	}
	data, err := fsn.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	nd.SetData(data)
	all = append(all, nd)
	return nd.Cid(), all
}

func putAll(ctx context.Context, s *BlockStream, all []blocks.Block) error {
	for _, b := range all {
		if err := s.Put(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// TestBlockStreams stores a DAG through each kind of stream, then pins
// its root in the offline daemon, which succeeds only if every block is
// there.
func TestBlockStreams(t *testing.T) {
	d := kubotest.Start(t, kubotestOffline())
	c := newConnector(t, d.APIAddr)
	ctx := ctxTimeout(t, time.Minute)
	for _, kind := range []struct {
		name string
		open func(context.Context) *BlockStream
		hash uint64
	}{
		{"dag/import", c.DagImportStream, mh.SHA2_256},
		{"dag/import sha3-512", c.DagImportStream, mh.SHA3_512},
		{"block/put", c.BlockPutStream, mh.SHA2_256},
		{"block/put blake2b-256", c.BlockPutStream, mh.BLAKE2B_MIN + 31},
		{"default", c.BlockStream, mh.SHA2_256},
	} {
		t.Run(kind.name, func(t *testing.T) {
			root, all := testDAG(t, 40, 100<<10, kind.hash)
			s := kind.open(ctx)
			if err := putAll(ctx, s, all); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if n, _ := s.Sent(); n != uint64(len(all)) {
				t.Fatalf("Sent = %d, want %d", n, len(all))
			}
			if err := c.Pin(ctx, recursivePin(api.NewCid(root)), nil); err != nil {
				t.Fatalf("pinning the streamed DAG: %v", err)
			}
		})
	}
}

// kubotestOffline starts kubo without networking: a missing block makes
// a pin fail at once instead of waiting for the network.
func kubotestOffline() kubo.Options { return kubo.Options{Offline: true} }

// TestBlockStreamErrors covers the ways a stream fails.
func TestBlockStreamErrors(t *testing.T) {
	d := kubotest.Start(t, kubotestOffline())
	ctx := ctxTimeout(t, time.Minute)

	t.Run("dead kubo", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
		l.Close()
		c := newConnector(t, addr)
		for _, open := range []func(context.Context) *BlockStream{c.DagImportStream, c.BlockPutStream} {
			_, all := testDAG(t, 3, 1024, mh.SHA2_256)
			s := open(ctx)
			err := putAll(ctx, s, all)
			if err == nil {
				err = s.Close()
			}
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
				t.Fatalf("error = %v, want ErrUnreachable naming %s", err, addr)
			}
			if err := s.Close(); !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Close after failure = %v, want the same failure", err)
			}
		}
	})

	t.Run("kubo dies midway", func(t *testing.T) {
		dying := kubotest.Start(t, kubotestOffline())
		c := newConnector(t, dying.APIAddr)
		_, all := testDAG(t, 400, 256<<10, mh.SHA2_256)
		s := c.DagImportStream(ctx)
		err := putAll(ctx, s, all[:50])
		dying.Kill()
		if err == nil {
			err = putAll(ctx, s, all[50:])
		}
		if err == nil {
			err = s.Close()
		}
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), dying.APIAddr) {
			t.Fatalf("error = %v, want ErrUnreachable naming %s", err, dying.APIAddr)
		}
	})

	t.Run("kubo hangs", func(t *testing.T) {
		// A kubo that keeps its connection but reads nothing: the stream
		// fails once it has waited ipfs_request_timeout for kubo, both
		// while blocks flow and while waiting for the answer.
		const limit = 500 * time.Millisecond
		for _, name := range []string{"midway", "at the answer"} {
			hung := kubotest.Start(t, kubotestOffline())
			c := newConnector(t, hung.APIAddr, func(cfg *Config) { cfg.IPFSRequestTimeout = limit })
			_, all := testDAG(t, 400, 256<<10, mh.SHA2_256)
			if name == "at the answer" {
				all = all[:2]
			}
			s := c.DagImportStream(ctx)
			err := putAll(ctx, s, all[:1])
			resume, ferr := hung.Freeze()
			if ferr != nil {
				t.Fatal(ferr)
			}
			t.Cleanup(resume)
			start := time.Now()
			if err == nil {
				err = putAll(ctx, s, all[1:])
			}
			if err == nil {
				err = s.Close()
			}
			if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "ipfs_request_timeout") {
				t.Fatalf("%s: error = %v, want ErrStalled", name, err)
			}
			if took := time.Since(start); took > limit+10*time.Second {
				t.Fatalf("%s: took %v to notice", name, took)
			}
		}
	})

	t.Run("block not matching its CID", func(t *testing.T) {
		// kubo hashes every block of a dag/import itself: a peer that
		// stores the blocks of another's add relies on it.
		c := newConnector(t, d.APIAddr)
		_, all := testDAG(t, 3, 1024, mh.SHA2_256)
		bad, _ := blocks.NewBlockWithCid([]byte("not the data of this CID"), all[1].Cid())
		s := c.DagImportStream(ctx)
		err := putAll(ctx, s, []blocks.Block{all[0], bad, all[2]})
		if err == nil {
			err = s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "mismatch") {
			t.Fatalf("error = %v, want kubo's refusal of a block that does not match its CID", err)
		}
		if _, err := d.Run(ctx, "block", "stat", "--offline", all[1].Cid().String()); err == nil {
			t.Fatal("kubo stored the block that does not match its CID")
		}
	})

	t.Run("kubo refuses", func(t *testing.T) {
		p := startProxy(t, d.APIURL, nil)
		p.set("dag/import", fail500)
		c := newConnector(t, p.addr())
		_, all := testDAG(t, 3, 1024, mh.SHA2_256)
		s := c.DagImportStream(ctx)
		err := putAll(ctx, s, all)
		if err == nil {
			err = s.Close()
		}
		var rpcErr *RPCError
		if !errors.As(err, &rpcErr) || rpcErr.Endpoint != "dag/import" {
			t.Fatalf("error = %v, want an RPCError from dag/import", err)
		}
	})

	t.Run("mixed hashes on block/put", func(t *testing.T) {
		c := newConnector(t, d.APIAddr)
		_, a := testDAG(t, 2, 1024, mh.SHA2_256)
		_, b := testDAG(t, 2, 1024, mh.SHA3_256)
		s := c.BlockPutStream(ctx)
		err := putAll(ctx, s, append(a, b...))
		if err == nil {
			err = s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "dag/import") {
			t.Fatalf("error = %v, want a refusal pointing to dag/import", err)
		}
	})

	t.Run("close without blocks sends nothing", func(t *testing.T) {
		p := startProxy(t, d.APIURL, nil)
		c := newConnector(t, p.addr())
		for _, open := range []func(context.Context) *BlockStream{c.DagImportStream, c.BlockPutStream} {
			if err := open(ctx).Close(); err != nil {
				t.Fatal(err)
			}
		}
		if calls := p.seen(); len(calls) != 0 {
			t.Fatalf("kubo was called: %v", calls)
		}
	})

	t.Run("abort", func(t *testing.T) {
		before := runtime.NumGoroutine()
		c, err := New(Config{NodeMultiaddress: d.APIAddr}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		for _, open := range []func(context.Context) *BlockStream{c.DagImportStream, c.BlockPutStream} {
			root, all := testDAG(t, 20, 64<<10, mh.SHA2_256)
			s := open(ctx)
			if err := putAll(ctx, s, all[:10]); err != nil {
				t.Fatal(err)
			}
			cause := errors.New("client went away")
			if err := s.CloseWithError(cause); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ctx, all[10]); !errors.Is(err, cause) {
				t.Fatalf("Put after abort = %v, want the cause", err)
			}
			if err := s.Close(); !errors.Is(err, cause) {
				t.Fatalf("Close after abort = %v, want the cause", err)
			}
			// The root never reached kubo: pinning it fails (offline).
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := c.Pin(pctx, recursivePin(api.NewCid(root)), nil); err == nil {
				t.Fatal("pinned a DAG whose stream was aborted")
			}
			cancel()
		}
		c.Close()
		waitFor(t, "goroutines to wind down", func() bool { return runtime.NumGoroutine() <= before })
	})

	t.Run("abort unblocks a blocked put", func(t *testing.T) {
		p := startProxy(t, d.APIURL, nil)
		p.set("dag/import", stall)
		c := newConnector(t, p.addr())
		_, all := testDAG(t, 400, 64<<10, mh.SHA2_256)
		s := c.DagImportStream(ctx)
		errc := make(chan error, 1)
		go func() { errc <- putAll(ctx, s, all) }()
		time.Sleep(200 * time.Millisecond)
		cause := errors.New("stop")
		s.CloseWithError(cause)
		select {
		case err := <-errc:
			if !errors.Is(err, cause) {
				t.Fatalf("blocked Put returned %v, want the cause", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Put still blocked 10s after CloseWithError")
		}
	})
}

// benchBlocks makes size bytes of fresh random raw blocks of 256KiB.
func benchBlocks(b testing.TB, size int) []blocks.Block {
	b.Helper()
	const blockSize = 256 << 10
	var all []blocks.Block
	for range size / blockSize {
		data := make([]byte, blockSize)
		rand.Read(data)
		c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
		if err != nil {
			b.Fatal(err)
		}
		blk, _ := blocks.NewBlockWithCid(data, c)
		all = append(all, blk)
	}
	return all
}

// benchStream streams 64MiB of new 256KiB blocks per iteration into a
// real kubo and reports the throughput.
func benchStream(b *testing.B, open func(*Connector) func(context.Context) *BlockStream) {
	d := kubotest.Start(b, kubotestOffline())
	c := newConnector(b, d.APIAddr)
	ctx := ctxTimeout(b, 30*time.Minute)
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		all := benchBlocks(b, size) // new content: kubo skips blocks it has
		b.StartTimer()
		s := open(c)(ctx)
		if err := putAll(ctx, s, all); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlockPut streams blocks as one multipart block/put request.
func BenchmarkBlockPut(b *testing.B) {
	benchStream(b, func(c *Connector) func(context.Context) *BlockStream { return c.BlockPutStream })
}

// BenchmarkDagImport streams blocks as one CAR into dag/import.
func BenchmarkDagImport(b *testing.B) {
	benchStream(b, func(c *Connector) func(context.Context) *BlockStream { return c.DagImportStream })
}
