package ipfsconn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// ErrStreamClosed is returned by Put on a BlockStream that was closed or
// aborted.
var ErrStreamClosed = errors.New("block stream closed")

// ErrStalled ends a BlockStream whose kubo took no data, or did not answer
// after the last block, for ipfs_request_timeout (or maxStreamStall).
var ErrStalled = errors.New("kubo stalled")

// maxStreamStall caps how long kubo may hold up a block stream when
// ipfs_request_timeout (5 minutes by default) is longer. An add feeds all
// its destinations in step, so a hung kubo holds up the healthy ones too;
// a peer gives up on another peer's blocks stream as soon (the cluster's
// blocksStallTimeout), and a hung local kubo must not cost more.
const maxStreamStall = 2 * time.Minute

// streamQueue is how many blocks Put may hand over ahead of the request:
// enough to keep making blocks while earlier ones travel to kubo
// (16 x 256KiB = 4MiB with default chunks, about 16MiB at most).
const streamQueue = 16

// BlockStream stores blocks in kubo through one streamed HTTP request: the
// blocks are encoded into the request body as they are put, so neither
// side holds more than a few of them. Blocks are stored unpinned; pin the
// root afterwards. Blocks bigger than kubo's 1MiB soft limit are accepted,
// as kubo's own add makes them (1MiB chunks without raw leaves).
//
// The request starts with the first Put, so a stream closed without blocks
// costs nothing. It holds a slot of the connector's long pool while it
// runs. It has no overall timeout (an add takes as long as its data), but
// fails with ErrStalled when kubo, not the producer, holds it up for
// ipfs_request_timeout or maxStreamStall, whichever is shorter: a write
// to kubo blocked that long, or no answer that long after the last block.
//
// Concurrency: Put and Close are called from one goroutine. CloseWithError
// may be called from any goroutine at any time, also while a Put is
// blocked, which it unblocks.
type BlockStream struct {
	c        *Connector
	ctx      context.Context
	cancel   context.CancelCauseFunc
	endpoint string
	enc      streamEncoder

	startOnce sync.Once
	kuboTurn  atomic.Int64      // unix nanoseconds since kubo holds the body up; 0 while the producer does
	queue     chan blocks.Block // Put to the request body; closed by Close
	abort     chan struct{}     // closed by CloseWithError
	done      chan struct{}     // closed when the request has finished
	rerr      error             // the request's error, set before done closes

	mu       sync.Mutex
	closed   bool
	finished bool  // Close has returned
	reason   error // why the stream was aborted
	result   error // what Close returned
	sent     uint64
	bytes    uint64
}

// streamEncoder frames blocks for one endpoint and checks kubo's reply.
// Framing is returned as byte slices to send in order, so that block data
// goes to the socket without being copied.
type streamEncoder interface {
	// start returns the query parameters, knowing the first block, the
	// body's content type, and what opens the body.
	start(first blocks.Block) (q url.Values, contentType string, head []byte, err error)
	// frame returns what precedes b's data in the body.
	frame(b blocks.Block) ([]byte, error)
	// end returns what closes the body.
	end() []byte
	// reply reads kubo's reply to its end and checks it against the
	// number of blocks the body carried.
	reply(s *stream, count func() uint64) error
}

// BlockStream returns a stream into kubo using the faster of the two
// methods kubo offers, dag/import of a CAR (see DagImportStream; measured
// by BenchmarkDagImport against BenchmarkBlockPut).
func (c *Connector) BlockStream(ctx context.Context) *BlockStream {
	return c.DagImportStream(ctx)
}

// DagImportStream returns a stream that sends the blocks as a CARv1 to
// dag/import, with pin-roots=false. Each block keeps its own CID, so one
// stream may carry any mix of codecs and hash functions. kubo verifies
// every block against its CID, writes them in batches and answers once
// the CAR has ended with the count of blocks it read, which Close checks.
func (c *Connector) DagImportStream(ctx context.Context) *BlockStream {
	return c.newBlockStream(ctx, "dag/import", &carEncoder{})
}

// BlockPutStream returns a stream that sends the blocks as the files of
// one multipart block/put request, the reference's way. kubo hashes each
// block again with one hash function per request, taken from the first
// block: a block using another one makes the stream fail. Blocks are sent
// with cid-codec=raw: kubo keys blocks by multihash, so they are found
// under their dag-pb CIDs all the same. kubo answers one line per block as
// it stores them; Close checks that every block was acknowledged.
func (c *Connector) BlockPutStream(ctx context.Context) *BlockStream {
	return c.newBlockStream(ctx, "block/put", &multipartEncoder{})
}

func (c *Connector) newBlockStream(ctx context.Context, endpoint string, enc streamEncoder) *BlockStream {
	ctx, cancel := context.WithCancelCause(ctx)
	return &BlockStream{
		c:        c,
		ctx:      ctx,
		cancel:   cancel,
		endpoint: endpoint,
		enc:      enc,
		queue:    make(chan blocks.Block, streamQueue),
		abort:    make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// Put sends one block. It returns once the block is queued, or with the
// error that ended the stream: kubo unreachable (wrapping ErrUnreachable
// and naming kubo's address), kubo refusing the request (an *RPCError),
// the stream's or ctx's context ending, or ErrStreamClosed.
func (s *BlockStream) Put(ctx context.Context, b blocks.Block) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return s.failure()
	}
	var err error
	s.startOnce.Do(func() { err = s.start(b) })
	if err != nil {
		return err
	}
	select {
	case <-s.done:
		// Report a failed request now rather than at Close.
		return s.failure()
	default:
	}
	select {
	case s.queue <- b:
		s.mu.Lock()
		s.sent++
		s.bytes += uint64(len(b.RawData()))
		s.mu.Unlock()
		return nil
	case <-s.done:
		return s.failure()
	case <-s.abort:
		return s.failure()
	case <-ctx.Done():
		return fmt.Errorf("%s stream: %w", s.endpoint, context.Cause(ctx))
	}
}

// start launches the request.
func (s *BlockStream) start(first blocks.Block) error {
	q, contentType, head, err := s.enc.start(first)
	if err != nil {
		s.rerr = fmt.Errorf("%s stream: %w", s.endpoint, err)
		close(s.done)
		return s.rerr
	}
	go s.request(&streamBody{s: s, segs: [][]byte{head}, closed: make(chan struct{})}, q, contentType)
	limit, name := s.c.cfg.IPFSRequestTimeout, "ipfs_request_timeout"
	if limit > maxStreamStall {
		limit, name = maxStreamStall, "the longest a block stream waits"
	}
	go s.watchStall(limit, name)
	return nil
}

// watchStall ends the request with ErrStalled once kubo has held it up
// for limit, named in the error, until the request finishes.
func (s *BlockStream) watchStall(limit time.Duration, name string) {
	if limit <= 0 {
		return
	}
	t := time.NewTicker(max(limit/8, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			if since := s.kuboTurn.Load(); since != 0 && now.Sub(time.Unix(0, since)) >= limit {
				s.cancel(fmt.Errorf("%w: no progress for %v (%s)", ErrStalled, limit, name))
				return
			}
		}
	}
}

// kuboHolds marks that the body waits for kubo (to take data or to
// answer) from now; producerHolds that it waits for the next block.
func (s *BlockStream) kuboHolds()     { s.kuboTurn.Store(time.Now().UnixNano()) }
func (s *BlockStream) producerHolds() { s.kuboTurn.Store(0) }

// request sends the body and reads kubo's reply.
func (s *BlockStream) request(body *streamBody, q url.Values, contentType string) {
	defer close(s.done)
	st, err := s.c.post(s.ctx, s.c.blocks, s.endpoint, q, body, contentType)
	if err == nil {
		// kubo's reply ends only after the body has, so the count is
		// final when reply checks it.
		err = s.enc.reply(st, body.count)
		st.close()
	}
	switch berr := body.failure(); {
	case errors.Is(context.Cause(s.ctx), ErrStalled):
		s.rerr = fmt.Errorf("streaming blocks to kubo at %s: %w", s.c.cfg.NodeMultiaddress, context.Cause(s.ctx))
	case berr != nil:
		// The body failed on our side (a block the stream cannot carry,
		// an abort): that, not its consequence on the request, is the
		// story.
		s.rerr = fmt.Errorf("%s stream: %w", s.endpoint, berr)
	case errors.Is(err, ErrUnreachable):
		// Already names kubo's address.
		s.rerr = fmt.Errorf("streaming blocks: %w", err)
	case err != nil:
		s.rerr = fmt.Errorf("streaming blocks to kubo at %s: %w", s.c.cfg.NodeMultiaddress, err)
	}
}

// failure explains why the stream takes no more blocks.
func (s *BlockStream) failure() error {
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	if reason != nil {
		return fmt.Errorf("%s stream aborted: %w", s.endpoint, reason)
	}
	select {
	case <-s.done:
		if s.rerr != nil {
			return s.rerr
		}
	default:
	}
	return fmt.Errorf("%s stream: %w", s.endpoint, ErrStreamClosed)
}

// Close ends the body and waits for kubo to store every block and answer.
// It returns nil only if kubo confirmed all the blocks put. Closing a
// stream without blocks sends nothing. Close returns the same result when
// called again, and the abort's error after CloseWithError.
func (s *BlockStream) Close() error {
	s.mu.Lock()
	if s.closed {
		reason, result := s.reason, s.result
		s.mu.Unlock()
		if reason != nil {
			return fmt.Errorf("%s stream aborted: %w", s.endpoint, reason)
		}
		return result
	}
	s.closed = true
	s.mu.Unlock()

	started := true
	s.startOnce.Do(func() { started = false })
	if started {
		close(s.queue)
		<-s.done
	}
	s.cancel(ErrStreamClosed)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason != nil {
		// Aborted while closing.
		return fmt.Errorf("%s stream aborted: %w", s.endpoint, s.reason)
	}
	s.result = s.rerr
	s.finished = true
	if started {
		s.c.metrics.blocksPut.Inc()
		if s.rerr != nil {
			s.c.metrics.blocksErrors.Inc()
		} else {
			s.c.metrics.blocksAdded.Add(float64(s.sent))
			s.c.metrics.blocksBytes.Add(float64(s.bytes))
			s.c.log.Debug().Str("endpoint", s.endpoint).Uint64("blocks", s.sent).Uint64("bytes", s.bytes).Msg("block stream stored")
		}
	}
	return s.result
}

// CloseWithError aborts the stream: the request is cancelled, so kubo
// stops reading, and a blocked Put returns. Blocks kubo stored already stay
// in its repo, unpinned, until its garbage collection. It waits for the
// request to end and always returns nil, like io.PipeWriter's. After Close
// has returned it does nothing.
func (s *BlockStream) CloseWithError(err error) error {
	if err == nil {
		err = ErrStreamClosed
	}
	s.mu.Lock()
	if s.reason != nil || s.finished {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.reason = err
	s.mu.Unlock()

	close(s.abort)
	s.cancel(err)
	started := true
	s.startOnce.Do(func() { started = false })
	if started {
		<-s.done
		s.c.metrics.blocksPut.Inc()
		s.c.metrics.blocksErrors.Inc()
	}
	return nil
}

// Sent returns how many blocks and bytes were handed to the stream.
func (s *BlockStream) Sent() (blocks, bytes uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.bytes
}

// streamBody is the request body: it takes blocks from the queue as the
// HTTP transport asks for bytes. Its WriteTo, which the transport uses,
// writes each block's framing and data straight to the connection, one
// chunk each; Read serves other readers. The transport calls it from its
// own goroutine and may Close it concurrently.
type streamBody struct {
	s        *BlockStream
	segs     [][]byte // left to send of the current block
	finished bool     // the end was framed
	closed   chan struct{}
	once     sync.Once

	mu  sync.Mutex
	n   uint64 // blocks taken
	err error  // why the body could not go on
}

// count is how many blocks the body carried.
func (b *streamBody) count() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// failure is the error that stopped the body early, if any.
func (b *streamBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// fail records why the body stops and returns it.
func (b *streamBody) fail(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	return err
}

// next frames the next block, or the end of the body once the queue is
// closed. It returns io.EOF after the end.
func (b *streamBody) next() error {
	if b.finished {
		b.s.kuboHolds() // until kubo answers
		return io.EOF
	}
	b.s.producerHolds()
	defer b.s.kuboHolds()
	select {
	case blk, ok := <-b.s.queue:
		if !ok {
			b.finished = true
			b.segs = append(b.segs, b.s.enc.end())
			return nil
		}
		frame, err := b.s.enc.frame(blk)
		if err != nil {
			return b.fail(err)
		}
		b.mu.Lock()
		b.n++
		b.mu.Unlock()
		b.segs = append(b.segs, frame, blk.RawData())
		return nil
	case <-b.s.abort:
		return b.fail(ErrStreamClosed)
	case <-b.closed:
		// The transport gave up on the body: its error is the request's.
		return ErrStreamClosed
	case <-b.s.ctx.Done():
		return b.fail(context.Cause(b.s.ctx))
	}
}

func (b *streamBody) Read(p []byte) (int, error) {
	for len(b.segs) == 0 {
		if err := b.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.segs[0])
	if b.segs[0] = b.segs[0][n:]; len(b.segs[0]) == 0 {
		b.segs = b.segs[1:]
	}
	return n, nil
}

func (b *streamBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		for len(b.segs) > 0 {
			seg := b.segs[0]
			b.segs = b.segs[1:]
			if len(seg) == 0 {
				continue
			}
			n, err := w.Write(seg)
			total += int64(n)
			if err != nil {
				return total, err
			}
		}
		if err := b.next(); err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
	}
}

func (b *streamBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// multipartFileHeader opens one file part of a body written with
// boundary, as mime/multipart's CreateFormFile does; first says whether it
// is the body's first part.
func multipartFileHeader(boundary, filename string, first bool) []byte {
	sep := "\r\n--"
	if first {
		sep = "--"
	}
	return []byte(sep + boundary + "\r\n" +
		`Content-Disposition: form-data; name="file"; filename="` + filename + "\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n")
}

func multipartEnd(boundary string) []byte { return []byte("\r\n--" + boundary + "--\r\n") }

func newBoundary() string { return multipart.NewWriter(io.Discard).Boundary() }

// carEncoder writes a CARv1, a header then one section per block, as the
// one file of a multipart body (kubo reads dag/import's CARs as file
// arguments).
type carEncoder struct {
	boundary string
}

// carPlaceholderRoot is the header's root: CARv1 needs one, but the root
// of an add is known only at its end. With pin-roots=false kubo ignores
// roots; this one is the identity CID of no bytes ("bafkqaaa"), which any
// IPFS implementation resolves without storage.
var carPlaceholderRoot = cid.NewCidV1(cid.Raw, mh.Multihash{mh.IDENTITY, 0})

// carHeader encodes the CARv1 header {roots: [root], version: 1} in
// canonical DAG-CBOR, by hand: it is a few fixed bytes.
func carHeader(root cid.Cid) []byte {
	rb := append([]byte{0}, root.Bytes()...) // CID tag content: 0x00 + binary CID
	h := []byte{0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a}
	if len(rb) < 24 {
		h = append(h, 0x40|byte(len(rb)))
	} else {
		h = append(h, 0x58, byte(len(rb)))
	}
	h = append(h, rb...)
	h = append(h, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01)
	return append(binary.AppendUvarint(nil, uint64(len(h))), h...)
}

func (e *carEncoder) start(blocks.Block) (url.Values, string, []byte, error) {
	e.boundary = newBoundary()
	q := url.Values{
		"pin-roots":       {"false"},
		"stats":           {"true"},
		"allow-big-block": {"true"},
	}
	head := append(multipartFileHeader(e.boundary, "blocks.car", true), carHeader(carPlaceholderRoot)...)
	return q, "multipart/form-data; boundary=" + e.boundary, head, nil
}

func (e *carEncoder) frame(b blocks.Block) ([]byte, error) {
	c := b.Cid().Bytes()
	f := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(c)), uint64(len(c)+len(b.RawData())))
	return append(f, c...), nil
}

func (e *carEncoder) end() []byte { return multipartEnd(e.boundary) }

func (e *carEncoder) reply(s *stream, count func() uint64) error {
	var got *uint64
	for {
		var out struct {
			Stats *struct{ BlockCount uint64 }
		}
		err := s.next(&out)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if out.Stats != nil {
			got = &out.Stats.BlockCount
		}
	}
	if got == nil {
		return errors.New("dag/import: kubo did not report what it imported")
	}
	if want := count(); *got != want {
		return fmt.Errorf("dag/import: kubo imported %d blocks of the %d sent", *got, want)
	}
	return nil
}

// multipartEncoder writes one multipart file per block.
type multipartEncoder struct {
	boundary string
	prefix   cid.Prefix
	first    bool
}

func (e *multipartEncoder) start(first blocks.Block) (url.Values, string, []byte, error) {
	e.prefix = first.Cid().Prefix()
	name, ok := mh.Codes[e.prefix.MhType]
	if !ok {
		return nil, "", nil, fmt.Errorf("block %s: unknown hash function %#x", first.Cid(), e.prefix.MhType)
	}
	e.boundary = newBoundary()
	e.first = true
	q := url.Values{
		"cid-codec":       {"raw"},
		"mhtype":          {name},
		"mhlen":           {strconv.Itoa(e.prefix.MhLength)},
		"pin":             {"false"},
		"allow-big-block": {"true"},
	}
	return q, "multipart/form-data; boundary=" + e.boundary, nil, nil
}

func (e *multipartEncoder) frame(b blocks.Block) ([]byte, error) {
	if p := b.Cid().Prefix(); p.MhType != e.prefix.MhType || p.MhLength != e.prefix.MhLength {
		return nil, fmt.Errorf("block %s is hashed with %#x/%d, but this block/put stream with %#x/%d: use a dag/import stream for mixed hashes",
			b.Cid(), p.MhType, p.MhLength, e.prefix.MhType, e.prefix.MhLength)
	}
	first := e.first
	e.first = false
	return multipartFileHeader(e.boundary, "block", first), nil
}

func (e *multipartEncoder) end() []byte {
	if e.first {
		// No part at all: an empty multipart body is the closing line.
		return []byte("--" + e.boundary + "--\r\n")
	}
	return multipartEnd(e.boundary)
}

func (e *multipartEncoder) reply(s *stream, count func() uint64) error {
	var got uint64
	for {
		var out struct{ Key string }
		err := s.next(&out)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		got++
	}
	if want := count(); got != want {
		return fmt.Errorf("block/put: kubo stored %d blocks of the %d sent", got, want)
	}
	return nil
}
