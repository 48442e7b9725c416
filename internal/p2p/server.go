package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// serveStream serves one call: read the request within ReadTimeout, check
// the method and the caller, run the handler and write its replies.
// While the handler runs, a watcher reads the stream: the caller sends
// nothing after its request, so anything it reads (data, end of stream,
// reset) means the caller is gone and cancels the handler's context.
func (r *RPC) serveStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	if err := r.begin(from); err != nil {
		if errors.Is(err, ErrBusy) {
			r.refuse(s, from, codeBusy, fmt.Sprintf("peer %s has %d calls in flight", from, r.cfg.MaxStreamsPerPeer))
		} else {
			_ = s.Reset()
		}
		return
	}
	defer r.end(from)

	_ = s.SetReadDeadline(time.Now().Add(r.cfg.ReadTimeout))
	br := bufio.NewReaderSize(s, 4<<10)
	fr := frameReader{r: br, max: r.cfg.MaxFrameSize}
	kind, body, err := fr.next()
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrProtocol) {
			r.refuse(s, from, codeBadRequest, err.Error())
		} else {
			r.log.Debug().Err(err).Stringer("peer", from).Msg("rpc: reading request")
			_ = s.Reset()
		}
		return
	}
	if kind != frameUnary && kind != frameStream {
		r.refuse(s, from, codeBadRequest, fmt.Sprintf("rpc: bad request: frame %q where a request was expected", kind))
		return
	}
	name, arg, err := parseRequest(body)
	if err != nil {
		r.refuse(s, from, codeBadRequest, err.Error())
		return
	}
	m, err := r.resolve(name, from, kind == frameStream)
	if err != nil {
		r.refuse(s, from, errorCode(err), err.Error())
		return
	}
	_ = s.SetReadDeadline(time.Time{})

	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_, _ = br.ReadByte()
		cancel()
	}()

	fw := &frameWriter{s: s, w: bufio.NewWriterSize(s, 4<<10), timeout: r.cfg.WriteTimeout, max: r.cfg.MaxFrameSize}
	if m.stream {
		fw.w = bufio.NewWriterSize(s, streamBufferSize)
		fw.delay = r.cfg.FlushDelay
	}
	herr := m.serve(ctx, from, func(target any) error { return decodeValue(arg, target) }, fw.value)
	if herr != nil {
		r.log.Debug().Err(herr).Str("method", name).Stringer("peer", from).Msg("rpc: call failed")
	}
	if err := fw.finish(m.stream, herr); err != nil {
		r.log.Debug().Err(err).Str("method", name).Stringer("peer", from).Msg("rpc: writing reply")
		_ = s.Reset()
	} else {
		_ = s.Close()
	}
	<-watched
}

// begin counts a call from p in, unless p has too many in flight or the
// endpoint is closed.
func (r *RPC) begin(p peer.ID) error {
	r.callsMu.Lock()
	defer r.callsMu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.calls[p] >= r.cfg.MaxStreamsPerPeer {
		return ErrBusy
	}
	r.calls[p]++
	r.inflight.Add(1)
	return nil
}

func (r *RPC) end(p peer.ID) {
	r.callsMu.Lock()
	if r.calls[p]--; r.calls[p] <= 0 {
		delete(r.calls, p)
	}
	r.callsMu.Unlock()
	r.inflight.Done()
}

// refuse answers a call with an error frame and closes the stream.
func (r *RPC) refuse(s network.Stream, from peer.ID, code byte, msg string) {
	r.log.Debug().Stringer("peer", from).Str("error", msg).Msg("rpc: call refused")
	_ = s.SetWriteDeadline(time.Now().Add(r.cfg.WriteTimeout))
	if _, err := s.Write(appendFrame(nil, frameError, appendErrorBody(nil, code, msg))); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// errCallEnded is what send returns once the handler has returned.
var errCallEnded = errors.New("rpc: send after the handler returned")

// streamBufferSize is the buffer of each side of a streaming call, where
// values are batched (a unary call's side uses 4 KiB).
const streamBufferSize = 32 << 10

// maxErrorLen bounds the message of an error frame.
const maxErrorLen = 16 << 10

// frameWriter writes the reply frames of one call through a buffer. A
// stream's values are flushed at most delay after they are written, so a
// fast producer's values travel in batches while a slow producer's are not
// held back; a unary reply is flushed by finish. Safe for concurrent use
// by the handler and the flush timer.
type frameWriter struct {
	s       network.Stream
	w       *bufio.Writer
	timeout time.Duration
	delay   time.Duration
	max     int

	mu    sync.Mutex
	enc   valueEncoder
	hdr   []byte
	timer *time.Timer
	armed bool  // a timed flush is pending
	done  bool  // finish ran
	err   error // first write error; every later write fails with it
}

// value writes one value frame. It is the handler's emit.
func (fw *frameWriter) value(v any) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.done {
		return errCallEnded
	}
	if fw.err != nil {
		return fw.err
	}
	body, err := fw.enc.encode(v)
	if err != nil {
		return err
	}
	if len(body) > fw.max {
		return fmt.Errorf("%w: reply value of %d bytes, limit %d", ErrFrameTooLarge, len(body), fw.max)
	}
	fw.write(frameValue, body)
	if fw.err == nil && fw.delay > 0 && !fw.armed {
		fw.armed = true
		if fw.timer == nil {
			fw.timer = time.AfterFunc(fw.delay, fw.timedFlush)
		} else {
			fw.timer.Reset(fw.delay)
		}
	}
	return fw.err
}

func (fw *frameWriter) timedFlush() {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.armed = false
	if !fw.done && fw.err == nil {
		fw.flush()
	}
}

// finish ends the call: an error frame for herr, else the end marker of a
// stream; then everything is flushed. It returns the write error, if any.
func (fw *frameWriter) finish(stream bool, herr error) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.done = true
	if fw.timer != nil {
		fw.timer.Stop()
	}
	switch {
	case fw.err != nil:
	case herr != nil:
		msg := herr.Error()
		if len(msg) > maxErrorLen {
			msg = msg[:maxErrorLen] + "..."
		}
		fw.write(frameError, appendErrorBody(nil, errorCode(herr), msg))
	case stream:
		fw.write(frameEnd, nil)
	}
	if fw.err == nil {
		fw.flush()
	}
	return fw.err
}

// write buffers a frame; the buffer writes through when full, within the
// write timeout. Called with mu held.
func (fw *frameWriter) write(kind byte, body []byte) {
	_ = fw.s.SetWriteDeadline(time.Now().Add(fw.timeout))
	fw.hdr = binary.AppendUvarint(append(fw.hdr[:0], kind), uint64(len(body)))
	if _, err := fw.w.Write(fw.hdr); err != nil {
		fw.err = err
		return
	}
	if _, err := fw.w.Write(body); err != nil {
		fw.err = err
	}
}

// flush sends the buffer within the write timeout. Called with mu held.
func (fw *frameWriter) flush() {
	_ = fw.s.SetWriteDeadline(time.Now().Add(fw.timeout))
	if err := fw.w.Flush(); err != nil {
		fw.err = err
	}
}
