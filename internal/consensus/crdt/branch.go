package crdt

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/verifcid"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/rs/zerolog"
)

// A peer that catches up (one that joins late, or comes back) walks the DAG
// from the heads down, one node after the other, because only a node names
// its parents. Through bitswap each node costs a round trip, and bitswap
// waits at least 20 ms between two messages to one peer: about 50 nodes a
// second, so minutes for a long history. The branch protocol asks a peer
// for a node and, in the same reply, for the nodes below it, breadth first:
// a walk of thousands of nodes takes a few round trips.
//
// A request also names the asking peer's heads: the server sends nothing
// at or below them, so a peer that missed one announcement gets the few
// nodes it lacks, not the history behind them.
//
// Request: uvarint max blocks, uvarint len, CID bytes; then, optionally,
// uvarint n and n times uvarint len, CID bytes (the heads). Reply: the
// blocks the server holds, starting with the requested one, each as uvarint
// len, CID bytes, uvarint len, data; then a zero length. An empty reply
// means the server lacks the requested block.
const (
	branchProtocol = protocol.ID("/ipfs-cluster/crdt-branch/1.0.0")
	// branchMinBlocks is what a fetch asks for first; each fetch that
	// comes back full doubles it, up to branchMaxBlocks. A peer missing
	// one node of a history it mostly has so gets little it already holds.
	branchMinBlocks = 64
	branchMaxBlocks = 4096
	// branchMaxBytes bounds one reply.
	branchMaxBytes = 8 << 20
	// branchAttemptTimeout bounds the reply of one peer; the blocks read
	// by then are kept.
	branchAttemptTimeout = 10 * time.Second
	// branchServeTimeout bounds the serving of one request.
	branchServeTimeout = time.Minute
	// branchServers bounds the requests served at once; more are refused
	// (the asking peer tries another, or bitswap), so that requests cannot
	// pile up reads of the block store.
	branchServers = 4
	// branchMaxKnown bounds the heads a request names, and
	// branchMaxRequest its size.
	branchMaxKnown   = 64
	branchMaxRequest = 64 << 10
	// maxCidLen bounds a CID on the wire.
	maxCidLen = 256
)

// errBranchReply marks a reply that breaks the protocol: a block that does
// not match its CID or that the requested node does not lead to.
var errBranchReply = errors.New("malformed branch reply")

// errBadCid marks a CID on the wire that is empty, too long or does not
// decode.
var errBadCid = errors.New("malformed CID")

// branchExchange is the exchange of the CRDT block service: it fetches a
// missing node, and the branch below it, from one of the topic peers with
// the branch protocol, and falls back to bitswap (the embedded exchange)
// when none of them can. Every block it stores is checked against its CID
// and is reachable from the requested one. It is safe for concurrent use.
type branchExchange struct {
	exchange.Interface
	bstore blockstore.Blockstore
	h      host.Host
	peers  func() []peer.ID // candidates, asked in random order
	log    zerolog.Logger
	// heads, once set, returns the CRDT heads, which requests name. It is
	// set after the CRDT store, which fetches blocks as soon as it opens.
	heads atomic.Pointer[func() []cid.Cid]

	want atomic.Int64 // blocks the next fetch asks for

	mu      sync.Mutex
	serving map[network.Stream]struct{} // requests being served
	closed  bool
	served  sync.WaitGroup
}

func newBranchExchange(fallback exchange.Interface, bstore blockstore.Blockstore, h host.Host, peers func() []peer.ID, log zerolog.Logger) *branchExchange {
	x := &branchExchange{Interface: fallback, bstore: bstore, h: h, peers: peers, log: log, serving: map[network.Stream]struct{}{}}
	x.want.Store(branchMinBlocks)
	h.SetStreamHandler(branchProtocol, x.serveBranch)
	return x
}

// setHeads makes requests name the heads fn returns.
func (x *branchExchange) setHeads(fn func() []cid.Cid) { x.heads.Store(&fn) }

// known returns up to branchMaxKnown of the CRDT heads.
func (x *branchExchange) known() []cid.Cid {
	fn := x.heads.Load()
	if fn == nil {
		return nil
	}
	h := (*fn)()
	return h[:min(len(h), branchMaxKnown)]
}

// close stops serving branches: it ends the requests being served and
// waits for them, so that none reads the block store once it is closed.
func (x *branchExchange) close() {
	x.h.RemoveStreamHandler(branchProtocol)
	x.mu.Lock()
	x.closed = true
	for s := range x.serving {
		s.Reset()
	}
	x.mu.Unlock()
	x.served.Wait()
}

// admit registers s as served, unless branchServers requests are being
// served already or the exchange is closed.
func (x *branchExchange) admit(s network.Stream) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed || len(x.serving) >= branchServers {
		return false
	}
	x.serving[s] = struct{}{}
	x.served.Add(1)
	return true
}

func (x *branchExchange) release(s network.Stream) {
	x.mu.Lock()
	delete(x.serving, s)
	x.mu.Unlock()
	x.served.Done()
}

// GetBlock returns c's block, fetched with the branch below it if a peer
// has it, or else from bitswap.
func (x *branchExchange) GetBlock(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if b := x.fetchBranch(ctx, c); b != nil {
		return b, nil
	}
	return x.Interface.GetBlock(ctx, c)
}

// GetBlocks fetches each block of cids that an earlier branch of this call
// did not bring, with the branch protocol first and bitswap for the rest.
func (x *branchExchange) GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error) {
	var found []blocks.Block
	var rest []cid.Cid
	for _, c := range cids {
		if b, err := x.bstore.Get(ctx, c); err == nil {
			found = append(found, b)
		} else if b := x.fetchBranch(ctx, c); b != nil {
			found = append(found, b)
		} else {
			rest = append(rest, c)
		}
	}
	var more <-chan blocks.Block
	if len(rest) > 0 {
		var err error
		if more, err = x.Interface.GetBlocks(ctx, rest); err != nil {
			return nil, err
		}
	}
	out := make(chan blocks.Block)
	go func() {
		defer close(out)
		for _, b := range found {
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
		if more == nil {
			return
		}
		for b := range more {
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// fetchBranch asks the candidate peers in turn for c and the branch below
// it, stores what the first one that has c sends, and returns c's block:
// nil when no peer could give it.
func (x *branchExchange) fetchBranch(ctx context.Context, c cid.Cid) blocks.Block {
	if verifcid.ValidateCid(verifcid.DefaultAllowlist, c) != nil {
		return nil
	}
	peers := x.peers()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	known := x.known()
	for _, p := range peers {
		if ctx.Err() != nil {
			return nil
		}
		want := int(x.want.Load())
		got, err := x.askBranch(ctx, p, c, want, known)
		if err != nil {
			x.log.Debug().Err(err).Stringer("peer", p).Stringer("cid", c).Msg("branch fetch")
		}
		if len(got) == 0 {
			continue
		}
		if err := x.bstore.PutMany(ctx, got); err != nil {
			x.log.Warn().Err(err).Int("blocks", len(got)).Msg("storing a fetched branch")
			return nil
		}
		if len(got) >= want {
			x.want.Store(int64(min(2*want, branchMaxBlocks)))
		} else {
			x.want.Store(branchMinBlocks)
		}
		return got[0]
	}
	return nil
}

// askBranch requests c and up to limit blocks below it from p, none at or
// below known. It returns the valid blocks read before any error, c's
// first.
func (x *branchExchange) askBranch(ctx context.Context, p peer.ID, c cid.Cid, limit int, known []cid.Cid) ([]blocks.Block, error) {
	ctx, cancel := attemptContext(ctx)
	defer cancel()
	s, err := x.h.NewStream(ctx, p, branchProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	}
	// Closing the stream is what stops a read blocked past ctx.
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()

	if _, err := s.Write(appendBranchRequest(nil, limit, c, known)); err != nil {
		s.Reset()
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return nil, err
	}
	got, err := readBranch(bufio.NewReaderSize(s, 64<<10), c, limit)
	if err != nil {
		s.Reset()
	}
	return got, err
}

// readBranch reads a reply to a request for c and up to limit blocks below
// it. It returns the valid blocks read before any error, c's first: each
// matches its CID and is linked from one read before it.
func readBranch(r *bufio.Reader, c cid.Cid, limit int) ([]blocks.Block, error) {
	var got []blocks.Block
	wanted := map[cid.Cid]bool{c: true} // c, then what the blocks read link to
	for len(got) <= limit {
		bc, data, err := readBranchBlock(r)
		if err != nil || !bc.Defined() {
			return got, err
		}
		if !wanted[bc] {
			return got, fmt.Errorf("%w: %s is not below %s", errBranchReply, bc, c)
		}
		b, err := verifiedBlock(bc, data)
		if err != nil {
			return got, err
		}
		delete(wanted, bc)
		for _, l := range links(b) {
			wanted[l] = true
		}
		got = append(got, b)
	}
	return got, fmt.Errorf("%w: more than the %d blocks asked for", errBranchReply, limit)
}

// serveBranch answers one branch request from the local block store.
func (x *branchExchange) serveBranch(s network.Stream) {
	if !x.admit(s) {
		s.Reset()
		return
	}
	defer x.release(s)
	defer s.Close()
	s.SetDeadline(time.Now().Add(branchServeTimeout))
	limit, root, known, err := readBranchRequest(bufio.NewReader(io.LimitReader(s, branchMaxRequest)))
	if err != nil {
		x.log.Debug().Err(err).Stringer("peer", s.Conn().RemotePeer()).Msg("bad branch request")
		s.Reset()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), branchServeTimeout)
	defer cancel()
	w := bufio.NewWriterSize(s, 64<<10)
	queue := []cid.Cid{root}
	// The asker holds its heads and everything below them.
	seen := map[cid.Cid]bool{root: true}
	for _, k := range known {
		seen[k] = true
	}
	sent, size := 0, 0
	for len(queue) > 0 && sent < int(min(limit, branchMaxBlocks)) && size < branchMaxBytes {
		c := queue[0]
		queue = queue[1:]
		b, err := x.bstore.Get(ctx, c)
		if err != nil {
			if sent == 0 {
				break // the requested block is not here
			}
			continue
		}
		if err := writeBranchBlock(w, b); err != nil {
			s.Reset()
			return
		}
		sent++
		size += len(b.RawData())
		for _, l := range links(b) {
			if !seen[l] {
				seen[l] = true
				queue = append(queue, l)
			}
		}
	}
	w.WriteByte(0)
	if err := w.Flush(); err != nil {
		s.Reset()
	}
}

func appendBranchRequest(req []byte, limit int, c cid.Cid, known []cid.Cid) []byte {
	req = binary.AppendUvarint(req, uint64(limit))
	req = appendCid(req, c)
	req = binary.AppendUvarint(req, uint64(len(known)))
	for _, k := range known {
		req = appendCid(req, k)
	}
	return req
}

func appendCid(b []byte, c cid.Cid) []byte {
	b = binary.AppendUvarint(b, uint64(c.ByteLen()))
	return append(b, c.Bytes()...)
}

// readBranchRequest decodes a request. A request that ends after the
// requested CID names no heads.
func readBranchRequest(r *bufio.Reader) (limit uint64, root cid.Cid, known []cid.Cid, err error) {
	if limit, err = binary.ReadUvarint(r); err != nil {
		return 0, cid.Undef, nil, fmt.Errorf("branch request: limit: %w", err)
	}
	if root, err = readCid(r); err != nil {
		return 0, cid.Undef, nil, fmt.Errorf("branch request: %w", err)
	}
	n, err := binary.ReadUvarint(r)
	switch {
	case errors.Is(err, io.EOF):
		return limit, root, nil, nil
	case err != nil:
		return 0, cid.Undef, nil, fmt.Errorf("branch request: heads: %w", err)
	case n > branchMaxKnown:
		return 0, cid.Undef, nil, fmt.Errorf("branch request: %d heads, at most %d", n, branchMaxKnown)
	}
	known = make([]cid.Cid, 0, n)
	for range n {
		k, err := readCid(r)
		if err != nil {
			return 0, cid.Undef, nil, fmt.Errorf("branch request: head: %w", err)
		}
		known = append(known, k)
	}
	return limit, root, known, nil
}

// readCid reads a uvarint-prefixed CID.
func readCid(r *bufio.Reader) (cid.Cid, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return cid.Undef, err
	}
	return readCidBytes(r, n)
}

// readCidBytes reads a CID of n bytes, which must be 1 to maxCidLen.
// Errors other than the reader's wrap errBadCid.
func readCidBytes(r *bufio.Reader, n uint64) (cid.Cid, error) {
	if n == 0 || n > maxCidLen {
		return cid.Undef, fmt.Errorf("%w: %d bytes", errBadCid, n)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return cid.Undef, err
	}
	c, err := cid.Cast(raw)
	if err != nil {
		return cid.Undef, fmt.Errorf("%w: %w", errBadCid, err)
	}
	return c, nil
}

func writeBranchBlock(w *bufio.Writer, b blocks.Block) error {
	c := b.Cid().Bytes()
	w.Write(binary.AppendUvarint(nil, uint64(len(c))))
	w.Write(c)
	w.Write(binary.AppendUvarint(nil, uint64(len(b.RawData()))))
	_, err := w.Write(b.RawData())
	return err
}

// readBranchBlock reads one block of a reply; an undefined CID and no
// error mark the end.
func readBranchBlock(r *bufio.Reader) (cid.Cid, []byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil || n == 0 {
		return cid.Undef, nil, err
	}
	c, err := readCidBytes(r, n)
	if errors.Is(err, errBadCid) {
		return cid.Undef, nil, fmt.Errorf("%w: %w", errBranchReply, err)
	}
	if err != nil {
		return cid.Undef, nil, err
	}
	if n, err = binary.ReadUvarint(r); err != nil {
		return cid.Undef, nil, err
	}
	if n > branchMaxBytes {
		return cid.Undef, nil, fmt.Errorf("%w: block of %d bytes", errBranchReply, n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return cid.Undef, nil, err
	}
	return c, data, nil
}

// verifiedBlock is data as the block of c, if it hashes to c.
func verifiedBlock(c cid.Cid, data []byte) (blocks.Block, error) {
	if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, c); err != nil {
		return nil, fmt.Errorf("%w: %w", errBranchReply, err)
	}
	sum, err := c.Prefix().Sum(data)
	if err != nil || !sum.Equals(c) {
		return nil, fmt.Errorf("%w: the data of %s does not match it", errBranchReply, c)
	}
	return blocks.NewBlockWithCid(data, c)
}

// links are the CIDs a DAG node of go-ds-crdt (dag-pb) links to.
func links(b blocks.Block) []cid.Cid {
	if b.Cid().Type() != cid.DagProtobuf {
		return nil
	}
	n, err := merkledag.DecodeProtobuf(b.RawData())
	if err != nil {
		return nil
	}
	out := make([]cid.Cid, 0, len(n.Links()))
	for _, l := range n.Links() {
		out = append(out, l.Cid)
	}
	return out
}

// attemptContext bounds one peer's reply by branchAttemptTimeout and by
// half the time ctx has left, so that a peer that stalls leaves time for
// the next one, or bitswap.
func attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := branchAttemptTimeout
	if deadline, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(deadline)/2)
	}
	return context.WithTimeout(ctx, d)
}
