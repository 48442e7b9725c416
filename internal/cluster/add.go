package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/car"
)

// BlockWriter stores blocks in a kubo daemon through one stream. Put and
// Close are called from one goroutine; CloseWithError aborts from any.
type BlockWriter interface {
	Put(ctx context.Context, b blocks.Block) error
	Close() error
	CloseWithError(err error) error
}

// blocksProtocol carries the blocks of an add from the peer that builds
// the DAG to an allocated peer, which stores them in its kubo: a CARv1
// stream without roots, then one reply line from the receiver.
const blocksProtocol = protocol.ID("/ipfs-cluster/blocks/1.0.0")

// blocksReplyTimeout bounds the wait for the receiver's answer once every
// block was sent: its kubo has to store what it buffered.
const blocksReplyTimeout = 2 * time.Minute

// blocksStallTimeout bounds how long one write of blocks to a receiver may
// wait: a receiver that reads nothing for that long (its process hung, its
// link dead) fails as a destination instead of holding the add.
const blocksStallTimeout = 2 * time.Minute

// AddParams are the choices of an add besides how the DAG is built.
type AddParams struct {
	Pin api.PinOptions
	// Local sends the blocks only to this peer's kubo; the pin is then
	// allocated with this peer among the allocations (unless the user
	// chose them), and the other allocated peers fetch the blocks.
	Local bool
	// NoPin stores the blocks but commits no pin.
	NoPin bool
	// Root is the root CID when it is known before the blocks (a CAR's),
	// so that admission sees it.
	Root api.Cid
	// Allocated, when set, is given the pin's allocations (the live
	// peers for a pin everywhere) before any block moves, for the add's
	// output.
	Allocated func([]peer.ID)
}

// AddResult is the outcome of an add.
type AddResult struct {
	Pin api.Pin
	// Failed are the destinations whose kubo did not get every block;
	// the pin flow repairs them (their tracker fetches the DAG).
	Failed map[peer.ID]error
}

// ErrAddFailed: no destination received the blocks.
var ErrAddFailed = errors.New("add failed on every destination")

// Add is the add flow: admit the pin and choose its allocations before
// any data moves, stream the blocks that build produces to the kubo of
// every destination at once, then commit the pin with those allocations.
// The add fails only when every destination failed.
func (c *Cluster) Add(ctx context.Context, p AddParams, build func(ctx context.Context, sink adder.BlockSink) (api.Cid, error)) (AddResult, error) {
	if c.cfg.FollowerMode {
		return AddResult{}, ErrFollowerMode
	}
	pin := api.PinWithOpts(p.Root, p.Pin)
	if err := c.admitPin(ctx, &pin); err != nil {
		return AddResult{}, err
	}
	var keep []peer.ID
	if p.Local && len(pin.UserAllocations) == 0 {
		// Only this peer's kubo gets the blocks: allocated here, as in
		// the reference, its copy is pinned instead of being left to
		// kubo's GC once the others fetched it. Kept as a current
		// allocation, it counts in the tag spread of the others.
		keep = []peer.ID{c.cfg.Peer}
	}
	allocs, err := c.allocate(ctx, pin, keep)
	if err != nil {
		return AddResult{}, fmt.Errorf("add: %w", err)
	}
	pin.Allocations = allocs
	if p.Allocated != nil {
		shown := allocs
		if len(shown) == 0 {
			// Everywhere: the peers up now, as the reference lists them.
			shown = c.peerset()
		}
		p.Allocated(shown)
	}
	dests := allocs
	switch {
	case p.Local:
		dests = []peer.ID{c.cfg.Peer}
	case len(dests) == 0:
		dests = c.peerset()
	}

	res := AddResult{Failed: map[peer.ID]error{}}
	sinks := make([]adder.BlockSink, 0, len(dests))
	writers := make([]BlockWriter, 0, len(dests))
	opened := make([]peer.ID, 0, len(dests))
	for _, d := range dests {
		w, err := c.openBlocks(ctx, d)
		if err != nil {
			res.Failed[d] = err
			continue
		}
		sinks, writers, opened = append(sinks, w), append(writers, w), append(opened, d)
	}
	if len(writers) == 0 {
		return res, fmt.Errorf("%w: %s", ErrAddFailed, describeFailures(res.Failed))
	}
	fan := adder.NewFanOut(sinks...)
	root, err := build(ctx, fan)
	if err != nil {
		for _, w := range writers {
			w.CloseWithError(err)
		}
		return res, err
	}
	// Each Close waits for its kubo to store what it was sent, up to
	// blocksReplyTimeout for a hung one: waiting for all at once bounds
	// the add by the slowest destination, not by their sum.
	closeErrs, sendErrs := make([]error, len(writers)), fan.Errors()
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Go(func() {
			if err := sendErrs[i]; err != nil {
				w.CloseWithError(err)
				closeErrs[i] = err
				return
			}
			closeErrs[i] = w.Close()
		})
	}
	wg.Wait()
	for i, err := range closeErrs {
		if err != nil {
			res.Failed[opened[i]] = err
		}
	}
	if len(res.Failed) == len(dests) {
		return res, fmt.Errorf("%w: %s", ErrAddFailed, describeFailures(res.Failed))
	}
	if len(res.Failed) > 0 {
		c.log.Warn().Stringer("cid", root).Str("failed", describeFailures(res.Failed)).
			Msg("add: some destinations did not get the blocks; their tracker will fetch them")
	}
	pin.Cid = root
	res.Pin = pin
	if p.NoPin {
		return res, nil
	}
	if res.Pin, err = c.commit(ctx, pin, false); err != nil {
		return res, err
	}
	return res, nil
}

func describeFailures(failed map[peer.ID]error) string {
	parts := make([]string, 0, len(failed))
	for _, f := range failures(failed) {
		parts = append(parts, fmt.Sprintf("%s: %s", f.Peer, f.Error))
	}
	return strings.Join(parts, "; ")
}

// FailedDestinations lists the destinations that did not get the blocks,
// by peer ID, each with its reason.
func (r AddResult) FailedDestinations() []api.AddFailure { return failures(r.Failed) }

// failures sorts failed by peer and words each reason without the peer's
// name, which the errors of a remote destination start with.
func failures(failed map[peer.ID]error) []api.AddFailure {
	out := make([]api.AddFailure, 0, len(failed))
	for p, err := range failed {
		out = append(out, api.AddFailure{Peer: p, Error: strings.TrimPrefix(err.Error(), "peer "+p.String()+": ")})
	}
	slices.SortFunc(out, func(a, b api.AddFailure) int { return strings.Compare(a.Peer.String(), b.Peer.String()) })
	return out
}

// openBlocks opens the block stream to one destination's kubo: this
// peer's own, or another peer's through blocksProtocol.
func (c *Cluster) openBlocks(ctx context.Context, dest peer.ID) (BlockWriter, error) {
	if dest == c.cfg.Peer {
		return c.cfg.OpenBlocks(ctx), nil
	}
	if c.host == nil {
		return nil, fmt.Errorf("peer %s: no network", dest)
	}
	s, err := c.host.NewStream(ctx, dest, blocksProtocol)
	if err != nil {
		return nil, fmt.Errorf("peer %s: open block stream: %w", dest, err)
	}
	w, err := car.NewWriter(s, nil)
	if err != nil {
		s.Reset()
		return nil, fmt.Errorf("peer %s: %w", dest, err)
	}
	r := &remoteBlocks{peer: dest, s: s, w: w, replied: make(chan struct{})}
	go r.readReply()
	// The add's end (its client gone, say) unblocks a Put waiting for
	// the receiver.
	r.stop = context.AfterFunc(ctx, func() { s.Reset() })
	return r, nil
}

// remoteBlocks sends blocks to another peer over blocksProtocol. The
// receiver answers one line: after the last block, or as soon as its kubo
// fails, which ends this destination at once instead of leaving Put
// blocked on a stream the receiver no longer reads.
//
// Concurrency: Put and Close are called from one goroutine;
// CloseWithError may be called from any.
type remoteBlocks struct {
	peer peer.ID
	s    network.Stream
	w    *car.Writer
	stop func() bool

	replied  chan struct{} // closed once replyErr is final
	replyErr error         // the receiver's answer: nil for "ok"
}

// readReply waits for the receiver's answer. An early error answer, or
// the stream's failure, resets the stream so that a blocked Put returns.
func (r *remoteBlocks) readReply() {
	line, err := bufio.NewReader(io.LimitReader(r.s, 4096)).ReadString('\n')
	switch {
	case err != nil:
		r.replyErr = fmt.Errorf("peer %s: no answer to the block stream: %w", r.peer, err)
	case line != "ok\n":
		r.replyErr = fmt.Errorf("peer %s: %s", r.peer, strings.TrimSpace(strings.TrimPrefix(line, "error: ")))
	}
	close(r.replied)
	if r.replyErr != nil {
		r.s.Reset()
	}
}

// failed explains a failed write: by the receiver's answer when it has
// come, as that is the cause.
func (r *remoteBlocks) failed(what string, err error) error {
	select {
	case <-r.replied:
		if r.replyErr != nil {
			return r.replyErr
		}
	default:
	}
	return fmt.Errorf("peer %s: %s: %w", r.peer, what, err)
}

func (r *remoteBlocks) Put(_ context.Context, b blocks.Block) error {
	r.s.SetWriteDeadline(time.Now().Add(blocksStallTimeout))
	if err := r.w.Put(b); err != nil {
		return r.failed("send block", err)
	}
	return nil
}

// Close sends what is buffered, ends the stream and waits for the
// receiver to confirm that its kubo stored every block.
func (r *remoteBlocks) Close() error {
	defer r.stop()
	defer r.s.Close()
	r.s.SetWriteDeadline(time.Now().Add(blocksStallTimeout))
	if err := r.w.Flush(); err != nil {
		r.s.Reset()
		return r.failed("send blocks", err)
	}
	if err := r.s.CloseWrite(); err != nil {
		r.s.Reset()
		return r.failed("end block stream", err)
	}
	r.s.SetReadDeadline(time.Now().Add(blocksReplyTimeout))
	<-r.replied
	return r.replyErr
}

func (r *remoteBlocks) CloseWithError(error) error {
	r.stop()
	r.s.Reset()
	return nil
}

// serveBlocks stores the blocks a trusted peer streams for an add into
// this peer's kubo, which checks each one against its CID, and answers
// "ok" or the error.
func (c *Cluster) serveBlocks(s network.Stream) {
	from := s.Conn().RemotePeer()
	if c.isTrusted != nil && !c.isTrusted(from) {
		c.log.Warn().Stringer("peer", from).Msg("refused a block stream from an untrusted peer")
		s.Reset()
		return
	}
	defer s.Close()
	err := c.storeBlocks(c.ctx, s)
	reply := "ok\n"
	if err != nil {
		c.log.Warn().Err(err).Stringer("peer", from).Msg("block stream for an add failed")
		reply = "error: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
	}
	io.WriteString(s, reply)
}

// storeBlocks leaves the check of each block against its CID to kubo's
// dag/import, which makes it anyway.
func (c *Cluster) storeBlocks(ctx context.Context, r io.Reader) error {
	rd, err := car.NewReader(bufio.NewReader(r), car.Options{AllowMissingRoot: true, Unverified: true})
	if err != nil {
		return err
	}
	w := c.cfg.OpenBlocks(ctx)
	for {
		b, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return w.Close()
		}
		if err == nil {
			err = w.Put(ctx, b)
		}
		if err != nil {
			w.CloseWithError(err)
			return err
		}
	}
}
