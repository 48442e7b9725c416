package adder

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ipfs/boxo/verifcid"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// Errors callers may branch on. Every error the package returns for these
// conditions wraps one of them.
var (
	// ErrInvalidOption: an option is malformed or not supported, such as
	// an unknown hash function or chunker, or a CID version other than 0
	// or 1. Reported before any data is read.
	ErrInvalidOption = errors.New("invalid add option")
	// ErrInvalidInput: the input cannot be added as given: a path that
	// does not exist or cannot be read, a directory without Recursive, a
	// special file (device, socket, FIFO inside a directory), an empty or
	// overlong name, two entries of one directory with the same name, or
	// nothing to add at all.
	ErrInvalidInput = errors.New("invalid add input")
	// ErrAdderUsed: an Adder performs one add; it was asked for another.
	ErrAdderUsed = errors.New("adder already used")
)

// BlockSink receives the blocks of the DAG being built.
//
// The Adder calls Put from one goroutine at a time, in the order blocks are
// made: a block always comes after every block it links to. The same block
// may be put more than once (files sharing content), although the Adder
// skips recent repeats. Blocks are immutable and Put may keep them. An
// error from Put aborts the add and is returned by the Adder, wrapped.
//
// The Adder never reads blocks back, so a sink may forward them and forget
// them: memory stays independent of the size of the content.
type BlockSink interface {
	Put(ctx context.Context, b blocks.Block) error
}

// DiscardSink drops every block: adding into it computes CIDs only, like
// `ipfs add --only-hash`. It is safe for concurrent use.
type DiscardSink struct{}

// Put implements BlockSink.
func (DiscardSink) Put(context.Context, blocks.Block) error { return nil }

// recentWindow is how many recently put CIDs the Adder remembers to skip
// repeats: 1024 blocks cover 256MiB of default-sized chunks (a sparse or
// repetitive file) for about 100KiB of memory.
const recentWindow = 1024

// sinkDAG is the ipld.DAGService the importers write to. Add forwards to
// the sink; nothing is stored, so Get never finds anything: the importers
// and the HAMT code used here only write. It is used by one goroutine.
type sinkDAG struct {
	// ctx is the add's context: boxo's HAMT code adds nodes with a
	// placeholder background context, so the one passed to Add cannot be
	// relied upon.
	ctx  context.Context
	sink BlockSink

	recent    map[string]struct{}
	ring      []string
	next      int
	blocks    uint64
	blockSize uint64
}

func newSinkDAG(ctx context.Context, sink BlockSink) *sinkDAG {
	return &sinkDAG{
		ctx:    ctx,
		sink:   sink,
		recent: make(map[string]struct{}, recentWindow),
		ring:   make([]string, 0, recentWindow),
	}
}

var _ ipld.DAGService = (*sinkDAG)(nil)

// Add hands the node to the sink as a plain block, unless it was put
// recently.
func (d *sinkDAG) Add(_ context.Context, n ipld.Node) error {
	if err := context.Cause(d.ctx); err != nil {
		return err
	}
	c := n.Cid()
	key := c.KeyString()
	if _, ok := d.recent[key]; ok {
		return nil
	}
	// Identity "hashes" embed the block in its CID, which kubo allows up
	// to 128 bytes: a larger block fails as it does in kubo's own add.
	if c.Prefix().MhType == mh.IDENTITY {
		if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, c); err != nil {
			return fmt.Errorf("%w: block of %d bytes: %w", ErrInvalidInput, len(n.RawData()), err)
		}
	}
	// A plain block: sinks keeping blocks must not pin whole node
	// objects (with their decoded links) in memory.
	b, err := blocks.NewBlockWithCid(n.RawData(), c)
	if err != nil {
		return fmt.Errorf("block %s: %w", c, err)
	}
	if err := d.sink.Put(d.ctx, b); err != nil {
		return fmt.Errorf("block sink: %w", err)
	}
	d.blocks++
	d.blockSize += uint64(len(b.RawData()))
	if len(d.ring) < recentWindow {
		d.ring = append(d.ring, key)
	} else {
		delete(d.recent, d.ring[d.next])
		d.ring[d.next] = key
		d.next = (d.next + 1) % recentWindow
	}
	d.recent[key] = struct{}{}
	return nil
}

// AddMany adds the nodes in order.
func (d *sinkDAG) AddMany(ctx context.Context, nodes []ipld.Node) error {
	for _, n := range nodes {
		if err := d.Add(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// Get finds nothing: blocks are not kept.
func (d *sinkDAG) Get(_ context.Context, c cid.Cid) (ipld.Node, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}

// GetMany finds nothing either.
func (d *sinkDAG) GetMany(_ context.Context, cids []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cids))
	for _, c := range cids {
		out <- &ipld.NodeOption{Err: ipld.ErrNotFound{Cid: c}}
	}
	close(out)
	return out
}

// Remove and RemoveMany do nothing: a sink cannot take blocks back.
func (d *sinkDAG) Remove(context.Context, cid.Cid) error       { return nil }
func (d *sinkDAG) RemoveMany(context.Context, []cid.Cid) error { return nil }

// FanOut puts every block to several sinks, such as one stream per
// allocated peer. A sink whose Put fails is dropped and its error kept;
// Put fails only once every sink has failed, so an add survives losing
// some of its destinations, as the reference's does. It is used like any
// sink: from one goroutine at a time.
type FanOut struct {
	sinks []BlockSink
	errs  []error
	alive int
}

// NewFanOut returns a FanOut over sinks.
func NewFanOut(sinks ...BlockSink) *FanOut {
	return &FanOut{sinks: sinks, errs: make([]error, len(sinks)), alive: len(sinks)}
}

// Put implements BlockSink.
func (f *FanOut) Put(ctx context.Context, b blocks.Block) error {
	for i, s := range f.sinks {
		if f.errs[i] != nil {
			continue
		}
		if err := s.Put(ctx, b); err != nil {
			f.errs[i] = err
			f.alive--
		}
	}
	if f.alive == 0 {
		return fmt.Errorf("every destination failed: %w", errors.Join(f.errs...))
	}
	return nil
}

// Errors returns, for each sink in the order given, the error that made
// the FanOut drop it, or nil if it is still in use.
func (f *FanOut) Errors() []error { return append([]error(nil), f.errs...) }

// MemorySink keeps every block in memory, in the order put. Meant for tests
// and small adds. It is safe for concurrent use.
type MemorySink struct {
	mu     sync.Mutex
	blocks []blocks.Block
	index  map[string]int
}

// Put implements BlockSink.
func (m *MemorySink) Put(_ context.Context, b blocks.Block) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.index == nil {
		m.index = map[string]int{}
	}
	if _, ok := m.index[b.Cid().KeyString()]; ok {
		return nil
	}
	m.index[b.Cid().KeyString()] = len(m.blocks)
	m.blocks = append(m.blocks, b)
	return nil
}

// Blocks returns the distinct blocks put so far, in the order first put.
func (m *MemorySink) Blocks() []blocks.Block {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]blocks.Block(nil), m.blocks...)
}

// Get returns the block with CID c, if it was put.
func (m *MemorySink) Get(c cid.Cid) (blocks.Block, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.index[c.KeyString()]
	if !ok {
		return nil, false
	}
	return m.blocks[i], true
}
