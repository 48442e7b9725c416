package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

// Level says who may call a method. The zero value is the most
// restrictive.
type Level int

const (
	// Closed methods serve the local process only, never another peer.
	Closed Level = iota
	// Trusted methods serve the peers Config.IsTrusted accepts.
	Trusted
	// Open methods serve any peer connected to the private network.
	Open
)

// String names the level as logs and errors show it.
func (l Level) String() string {
	switch l {
	case Closed:
		return "closed"
	case Trusted:
		return "trusted"
	case Open:
		return "open"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Defaults of Config.
const (
	DefaultMaxStreamsPerPeer = 64
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultDialTimeout       = 3 * time.Second
	DefaultFlushDelay        = 5 * time.Millisecond
	DefaultIdleProbe         = 5 * time.Second
	DefaultProbeTimeout      = 5 * time.Second
)

// Config configures an RPC endpoint. Zero fields take the defaults.
type Config struct {
	// IsTrusted reports whether a peer may call Trusted methods. It is
	// asked on every call, so the trusted set may change at runtime; it
	// must be safe for concurrent use. Nil trusts no one.
	IsTrusted func(peer.ID) bool
	// MaxFrameSize bounds every frame, sent or received.
	MaxFrameSize int
	// MaxStreamsPerPeer bounds the calls one peer may have in flight
	// here; more are refused with ErrBusy.
	MaxStreamsPerPeer int
	// ReadTimeout bounds the wait for a call's request once its stream
	// is open.
	ReadTimeout time.Duration
	// WriteTimeout bounds the writing of each reply frame, so that a
	// caller that stops reading cannot hold a handler forever.
	WriteTimeout time.Duration
	// DialTimeout bounds connecting to a peer (dial_peer_timeout).
	DialTimeout time.Duration
	// FlushDelay is how long a streamed value may wait in the buffer for
	// more values before it is sent.
	FlushDelay time.Duration
	// IdleProbe is how long a call may wait for its next reply frame
	// before the caller pings the peer (libp2p's ping, answered by the
	// peer's own libp2p stack), and again as long after each answer. A
	// busy peer answers and the call goes on waiting; a peer that does
	// not answer within ProbeTimeout is hung (stopped, swapping) or cut
	// off, and the call fails then, instead of when the connection's
	// keepalive gives up, half a minute and more later.
	IdleProbe    time.Duration
	ProbeTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.MaxStreamsPerPeer <= 0 {
		c.MaxStreamsPerPeer = DefaultMaxStreamsPerPeer
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.FlushDelay <= 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.IdleProbe <= 0 {
		c.IdleProbe = DefaultIdleProbe
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.IsTrusted == nil {
		c.IsTrusted = func(peer.ID) bool { return false }
	}
	return c
}

// TrustAll is an IsTrusted that trusts every peer (trusted_peers ["*"]).
func TrustAll(peer.ID) bool { return true }

// Errors callers branch on. A failed remote call returns a *RemoteError,
// which matches ErrNotAllowed, ErrBadRequest or ErrBusy according to what
// the remote peer answered.
var (
	// ErrNotAllowed: the method is unknown, or not open to the caller.
	ErrNotAllowed = errors.New("rpc: not allowed")
	// ErrBadRequest: the request could not be decoded, or used a
	// streaming method as a unary one or the other way around.
	ErrBadRequest = errors.New("rpc: bad request")
	// ErrBusy: the peer has too many calls from us in flight.
	ErrBusy = errors.New("rpc: too many calls in flight")
	// ErrClosed: the RPC endpoint is closed.
	ErrClosed = errors.New("rpc: closed")
)

// RemoteError is an error answered by another peer.
type RemoteError struct {
	Peer    peer.ID
	Method  string
	Message string
	code    byte
}

// Error names the method, the peer that answered, and its message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("rpc %s on peer %s: %s", e.Method, e.Peer, e.Message)
}

// Is matches the sentinel of the error's kind.
func (e *RemoteError) Is(target error) bool {
	switch e.code {
	case codeNotAllowed:
		return target == ErrNotAllowed
	case codeBadRequest:
		return target == ErrBadRequest
	case codeBusy:
		return target == ErrBusy
	}
	return false
}

// notAllowedError refuses a call; the same text reaches remote callers.
type notAllowedError struct {
	method string
	peer   peer.ID
	reason string
}

func (e *notAllowedError) Error() string {
	return fmt.Sprintf("rpc: method %s not allowed for peer %s: %s", e.method, e.peer, e.reason)
}

func (e *notAllowedError) Is(target error) bool { return target == ErrNotAllowed }

// requestError refuses a request that is malformed or of the wrong kind.
type requestError struct{ msg string }

func (e *requestError) Error() string { return "rpc: bad request: " + e.msg }

func (e *requestError) Is(target error) bool { return target == ErrBadRequest }

// method is a registered handler. serve is the one code path of remote
// calls and calls to self: it decodes the argument with decode, runs the
// handler and hands each result to emit.
type method struct {
	level  Level
	stream bool
	serve  func(ctx context.Context, from peer.ID, decode func(any) error, emit func(any) error) error
}

// RPC serves registered methods to other peers over libp2p streams and
// calls methods on other peers (or on itself, without the network). All
// methods are safe for concurrent use; handlers may be registered at any
// time.
type RPC struct {
	h    host.Host
	self peer.ID
	cfg  Config
	log  zerolog.Logger

	mu      sync.RWMutex
	methods map[string]*method

	callsMu  sync.Mutex
	calls    map[peer.ID]int // calls in flight per calling peer
	closed   bool
	inflight sync.WaitGroup

	probes sync.Map // peer.ID → *peerProbe, for the peers calls went to

	ctx    context.Context // canceled by Close; parent of handler contexts
	cancel context.CancelFunc
}

// NewRPC starts serving the RPC protocol on h. Close stops it.
func NewRPC(h host.Host, cfg Config, log zerolog.Logger) *RPC {
	ctx, cancel := context.WithCancel(context.Background())
	r := &RPC{
		h:       h,
		self:    h.ID(),
		cfg:     cfg.withDefaults(),
		log:     log,
		methods: map[string]*method{},
		calls:   map[peer.ID]int{},
		ctx:     ctx,
		cancel:  cancel,
	}
	h.SetStreamHandler(protocol.ID(api.RPCProtocol), r.serveStream)
	return r
}

// Close stops serving: new calls are refused, calls in flight see their
// context canceled, and Close waits for their handlers to return.
func (r *RPC) Close() error {
	r.h.RemoveStreamHandler(protocol.ID(api.RPCProtocol))
	r.callsMu.Lock()
	r.closed = true
	r.callsMu.Unlock()
	r.cancel()
	r.inflight.Wait()
	return nil
}

// Handle registers a unary method: one argument in, one result out.
// Registering a name twice panics, as it is a programming error.
func Handle[In, Out any](r *RPC, name string, level Level, fn func(ctx context.Context, from peer.ID, in In) (Out, error)) {
	r.register(name, &method{level: level, serve: func(ctx context.Context, from peer.ID, decode func(any) error, emit func(any) error) error {
		var in In
		if err := decode(&in); err != nil {
			return &requestError{msg: fmt.Sprintf("%s: argument: %v", name, err)}
		}
		out, err := fn(ctx, from, in)
		if err != nil {
			return err
		}
		return emit(&out)
	}})
}

// HandleStream registers a server-streaming method: one argument in, any
// number of results out through send. send blocks while the caller is slow
// to read (so memory stays constant) and fails once the caller is gone; fn
// must then return, and should watch ctx, which ends with the call. send
// is not safe for concurrent use and must not be called after fn returns.
func HandleStream[In, Out any](r *RPC, name string, level Level, fn func(ctx context.Context, from peer.ID, in In, send func(Out) error) error) {
	r.register(name, &method{level: level, stream: true, serve: func(ctx context.Context, from peer.ID, decode func(any) error, emit func(any) error) error {
		var in In
		if err := decode(&in); err != nil {
			return &requestError{msg: fmt.Sprintf("%s: argument: %v", name, err)}
		}
		return fn(ctx, from, in, func(v Out) error { return emit(&v) })
	}})
}

func (r *RPC) register(name string, m *method) {
	if name == "" || len(name) > maxMethodLen {
		panic(fmt.Sprintf("rpc: invalid method name %q", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.methods[name]; ok {
		panic(fmt.Sprintf("rpc: method %s registered twice", name))
	}
	r.methods[name] = m
}

// resolve finds a method and checks that from may call it this way. The
// local process may call every method.
func (r *RPC) resolve(name string, from peer.ID, stream bool) (*method, error) {
	r.mu.RLock()
	m := r.methods[name]
	r.mu.RUnlock()
	if m == nil {
		return nil, &notAllowedError{method: name, peer: from, reason: "unknown method"}
	}
	if from != r.self {
		switch {
		case m.level == Closed:
			return nil, &notAllowedError{method: name, peer: from, reason: "closed to other peers"}
		case m.level == Trusted && !r.cfg.IsTrusted(from):
			return nil, &notAllowedError{method: name, peer: from, reason: "peer is not trusted"}
		}
	}
	switch {
	case stream && !m.stream:
		return nil, &requestError{msg: name + " returns one result: use Call"}
	case !stream && m.stream:
		return nil, &requestError{msg: name + " streams its results: use Stream"}
	}
	return m, nil
}

// errorCode is the code an error frame carries for err.
func errorCode(err error) byte {
	var na *notAllowedError
	var re *requestError
	switch {
	case errors.As(err, &na):
		return codeNotAllowed
	case errors.As(err, &re):
		return codeBadRequest
	}
	return codeHandler
}
