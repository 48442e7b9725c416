package p2p

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"ipfs-cluster/internal/api"
)

// Decoder decodes the current value of a stream into target, a pointer.
// It is valid only during the callback it is given to.
type Decoder func(target any) error

// Call calls a unary method on peer p with argument in and stores the
// result into out (a pointer; nil discards it). A call to this peer runs
// the handler directly, without encoding. ctx cancels the call: the
// stream is reset and the remote handler's context ends.
func (r *RPC) Call(ctx context.Context, p peer.ID, method string, in, out any) error {
	if p == r.self {
		return r.callSelf(ctx, method, false, in, func(v any) error {
			if err := assign(out, v); err != nil {
				return fmt.Errorf("rpc %s on peer %s: decode reply: %w", method, p, err)
			}
			return nil
		})
	}
	cs, err := r.open(ctx, p, frameUnary, method, in)
	if err != nil {
		return err
	}
	kind, body, err := cs.next()
	if err != nil {
		cs.abort()
		return err
	}
	defer cs.close()
	switch kind {
	case frameValue:
		if err := decodeValue(body, out); err != nil {
			return fmt.Errorf("rpc %s on peer %s: decode reply: %w", method, p, err)
		}
		return nil
	case frameError:
		return cs.remoteError(body)
	}
	return fmt.Errorf("rpc %s on peer %s: %w: frame %q in a unary reply", method, p, ErrProtocol, kind)
}

// Stream calls a server-streaming method on peer p and calls fn for each
// value, in order, until the stream ends. Values are read as fn consumes
// them, so memory stays constant however many there are. If fn returns an
// error, the call is canceled (the remote producer's context ends) and
// Stream returns that error unchanged.
func (r *RPC) Stream(ctx context.Context, p peer.ID, method string, in any, fn func(Decoder) error) error {
	if p == r.self {
		var cur any
		decode := Decoder(func(target any) error {
			if err := assign(target, cur); err != nil {
				return fmt.Errorf("rpc %s on peer %s: decode value: %w", method, p, err)
			}
			return nil
		})
		return r.callSelf(ctx, method, true, in, func(v any) error {
			cur = v
			return fn(decode)
		})
	}
	cs, err := r.open(ctx, p, frameStream, method, in)
	if err != nil {
		return err
	}
	var body []byte
	decode := Decoder(func(target any) error {
		if err := decodeValue(body, target); err != nil {
			return fmt.Errorf("rpc %s on peer %s: decode value: %w", method, p, err)
		}
		return nil
	})
	for {
		var kind byte
		kind, body, err = cs.next()
		if err != nil {
			cs.abort()
			return err
		}
		switch kind {
		case frameValue:
			if err := fn(decode); err != nil {
				cs.abort()
				return err
			}
		case frameEnd:
			cs.close()
			return nil
		case frameError:
			cs.close()
			return cs.remoteError(body)
		default:
			cs.abort()
			return fmt.Errorf("rpc %s on peer %s: %w: frame %q in a stream", method, p, ErrProtocol, kind)
		}
	}
}

// callSelf runs a method of this peer in this goroutine, through the same
// resolve and serve as a remote call. Once emit fails, the handler's
// context is canceled, later values are dropped, and emit's error is
// returned whatever the handler returns.
func (r *RPC) callSelf(ctx context.Context, name string, stream bool, in any, emit func(any) error) error {
	if r.isClosed() {
		return ErrClosed
	}
	m, err := r.resolve(name, r.self, stream)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var emitErr error
	err = m.serve(ctx, r.self, func(target any) error { return assign(target, in) }, func(v any) error {
		if emitErr == nil {
			if emitErr = emit(v); emitErr != nil {
				cancel()
			}
		}
		return emitErr
	})
	switch {
	case emitErr != nil:
		return emitErr
	case err != nil:
		return fmt.Errorf("rpc %s on peer %s: %w", name, r.self, err)
	}
	return nil
}

func (r *RPC) isClosed() bool {
	r.callsMu.Lock()
	defer r.callsMu.Unlock()
	return r.closed
}

// clientStream is the caller's side of one call. Its reads belong to the
// calling goroutine; the probe's timer reads frames and ended, owns seen
// and sets hung.
type clientStream struct {
	ctx    context.Context
	r      *RPC
	s      network.Stream
	p      peer.ID
	method string
	fr     frameReader
	stop   func() bool // stops resetting the stream when ctx ends

	frames atomic.Uint64 // reply frames read
	seen   uint64        // frames at the probe's last look; the probe's own
	probe  *time.Timer   // looks every IdleProbe whether frames came
	ended  atomic.Bool   // the call is over: the probe stops
	hung   atomic.Pointer[error]
}

// check runs every IdleProbe while the call lasts. When no frame came
// since its last look, it pings the peer, and resets the stream, recording
// why, if the peer does not answer. (A count, not a clock, marks the
// frames: a stream reads half a million a second, each would read the
// clock.)
func (cs *clientStream) check() {
	if cs.ended.Load() {
		return
	}
	if n := cs.frames.Load(); n != cs.seen {
		cs.seen = n
		cs.probe.Reset(cs.r.cfg.IdleProbe)
		return
	}
	perr := cs.r.ping(cs.p)
	if cs.ctx.Err() != nil || cs.ended.Load() {
		return
	}
	if perr != nil {
		err := fmt.Errorf("peer sent nothing for over %s and did not answer a ping within %s: %w",
			cs.r.cfg.IdleProbe, cs.r.cfg.ProbeTimeout, perr)
		cs.hung.Store(&err)
		_ = cs.s.Reset()
		return
	}
	cs.probe.Reset(cs.r.cfg.IdleProbe)
}

// peerProbe is the last ping of one peer, shared by the calls waiting on
// it: libp2p allows a peer 3 ping streams at a time, and a call whose own
// ping was refused for that would take a busy peer for a hung one.
type peerProbe struct {
	mu  sync.Mutex // held while pinging: the other calls wait for the answer
	at  time.Time  // when the last ping ended
	err error      // its outcome
}

// ping pings p, or returns the outcome of a ping that ended less than
// half an IdleProbe ago. The ping runs under the endpoint's context, not
// a call's: a call that ends must not cut short the answer others wait for.
func (r *RPC) ping(p peer.ID) error {
	v, _ := r.probes.LoadOrStore(p, &peerProbe{})
	pp := v.(*peerProbe)
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if !pp.at.IsZero() && time.Since(pp.at) < r.cfg.IdleProbe/2 {
		return pp.err
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ProbeTimeout)
	defer cancel()
	res, answered := <-ping.Ping(ctx, r.h, p)
	if !answered {
		// Ping ends without a result when its context does.
		res.Error = ctx.Err()
	}
	pp.at, pp.err = time.Now(), res.Error
	return res.Error
}

// open connects to p if needed, opens a stream and sends the request.
func (r *RPC) open(ctx context.Context, p peer.ID, kind byte, method string, in any) (*clientStream, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	var enc valueEncoder
	arg, err := enc.encode(in)
	if err != nil {
		return nil, fmt.Errorf("rpc %s on peer %s: %w", method, p, err)
	}
	body := appendRequest(nil, method, arg)
	if len(body) > r.cfg.MaxFrameSize {
		return nil, fmt.Errorf("rpc %s on peer %s: %w: request of %d bytes, limit %d", method, p, ErrFrameTooLarge, len(body), r.cfg.MaxFrameSize)
	}
	bufSize := 4 << 10
	if kind == frameStream {
		bufSize = streamBufferSize
	}
	s, err := r.h.NewStream(network.WithDialPeerTimeout(ctx, r.cfg.DialTimeout), p, protocol.ID(api.RPCProtocol))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("rpc %s on peer %s: %w", method, p, err)
	}
	cs := &clientStream{
		ctx:    ctx,
		r:      r,
		s:      s,
		p:      p,
		method: method,
		fr:     frameReader{r: bufio.NewReaderSize(s, bufSize), max: r.cfg.MaxFrameSize},
		stop:   context.AfterFunc(ctx, func() { _ = s.Reset() }),
	}
	// Armed once assigned: check uses cs.probe.
	cs.probe = time.AfterFunc(math.MaxInt64, cs.check)
	cs.probe.Reset(r.cfg.IdleProbe)
	if _, err := s.Write(appendFrame(nil, kind, body)); err != nil {
		cs.abort()
		return nil, cs.wrap("send request", err)
	}
	return cs, nil
}

// next reads the next reply frame.
func (cs *clientStream) next() (byte, []byte, error) {
	kind, body, err := cs.fr.next()
	if err != nil {
		return 0, nil, cs.wrap("read reply", err)
	}
	cs.frames.Add(1)
	return kind, body, nil
}

// wrap names the call in err, and reports the context's error, or the
// failed probe, rather than the stream reset it caused.
func (cs *clientStream) wrap(what string, err error) error {
	if cerr := cs.ctx.Err(); cerr != nil {
		err = cerr
	} else if hung := cs.hung.Load(); hung != nil {
		err = *hung
	}
	return fmt.Errorf("rpc %s on peer %s: %s: %w", cs.method, cs.p, what, err)
}

func (cs *clientStream) remoteError(body []byte) error {
	code, msg, err := parseErrorBody(body)
	if err != nil {
		return cs.wrap("read reply", err)
	}
	return &RemoteError{Peer: cs.p, Method: cs.method, Message: msg, code: code}
}

// close ends a call that completed.
func (cs *clientStream) close() {
	cs.stop()
	cs.ended.Store(true)
	cs.probe.Stop()
	_ = cs.s.Close()
}

// abort ends a call early; the reset cancels the remote handler.
func (cs *clientStream) abort() {
	cs.stop()
	cs.ended.Store(true)
	cs.probe.Stop()
	_ = cs.s.Reset()
}

// Fanout runs call for every peer at once, each under its own timeout
// (none when timeout <= 0), and returns one error per peer in the order of
// peers, nil where the call succeeded. An unreachable peer costs at most
// its timeout and never fails the others. call runs concurrently; i is the
// index of p in peers, so that results can be stored without locking.
func Fanout(ctx context.Context, peers []peer.ID, timeout time.Duration, call func(ctx context.Context, i int, p peer.ID) error) []error {
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := ctx, context.CancelFunc(func() {})
			if timeout > 0 {
				pctx, cancel = context.WithTimeout(ctx, timeout)
			}
			defer cancel()
			errs[i] = call(pctx, i, p)
		}()
	}
	wg.Wait()
	return errs
}

// Reply is one peer's answer to CallAll.
type Reply[T any] struct {
	Peer  peer.ID
	Value T
	Err   error
}

// CallAll calls a unary method on every peer in parallel (this peer
// locally) with a per-peer timeout, and returns one Reply per peer in the
// order of peers. Failures are per peer: the call as a whole cannot fail.
func CallAll[T any](ctx context.Context, r *RPC, peers []peer.ID, method string, in any, timeout time.Duration) []Reply[T] {
	replies := make([]Reply[T], len(peers))
	errs := Fanout(ctx, peers, timeout, func(ctx context.Context, i int, p peer.ID) error {
		replies[i].Peer = p
		return r.Call(ctx, p, method, in, &replies[i].Value)
	})
	for i, err := range errs {
		replies[i].Err = err
	}
	return replies
}
