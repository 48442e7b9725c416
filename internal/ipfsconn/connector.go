// Package ipfsconn is the connector to kubo: it drives a kubo daemon through
// its RPC API (POST /api/v0/...) to pin, unpin and list content, and to
// report on the daemon.
package ipfsconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/rs/zerolog"
)

var (
	// ErrUnreachable wraps failures to talk to kubo at all: refused or
	// broken connections, as when the daemon is down or crashes mid-reply.
	ErrUnreachable = errors.New("ipfs request failed")
	// ErrPinStalled wraps the error of a pin abandoned because kubo fetched
	// no new block for pin_timeout.
	ErrPinStalled = errors.New("no progress")
)

// RPCError is an error reported by kubo itself.
type RPCError struct {
	// Endpoint is the RPC path, such as "pin/add".
	Endpoint string
	// StatusCode is the HTTP status; 200 when kubo reported the error at
	// the end of a streamed reply.
	StatusCode int
	// Message is kubo's error message.
	Message string
}

func (e *RPCError) Error() string { return e.Endpoint + ": " + e.Message }

// Connector drives one kubo daemon. It is safe for concurrent use.
//
// Requests in flight are bounded by three pools of MaxConcurrentRequests
// slots each. Calls whose duration depends on the size of a DAG or on
// kubo's pin lock (pin/add, pin/update, pin/rm, repo/gc and the swarm
// connections made for a pin's origins) use the long pool; the block
// streams of adds, which last as long as their uploads, use the blocks
// pool; every other call uses the short pool. Pins can stall for minutes
// and uploads for as long as their clients, so sharing a pool would let
// slow pins starve the id and repo/stat calls the peer relies on to report
// that kubo is healthy, or stalled uploads starve the pins.
type Connector struct {
	cfg     Config
	log     zerolog.Logger
	baseURL string
	client  *http.Client
	short   semaphore
	long    semaphore
	blocks  semaphore
	metrics *metrics
}

// New returns a Connector for the kubo daemon at cfg.NodeMultiaddress. It
// does not contact kubo.
func New(cfg Config, log zerolog.Logger) (*Connector, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("ipfsconn config: %w", err)
	}
	m, err := ma.NewMultiaddr(cfg.NodeMultiaddress)
	if err != nil {
		return nil, fmt.Errorf("ipfsconn config: node_multiaddress: %w", err)
	}
	network, address, err := manet.DialArgs(m)
	if err == nil && network != "unix" && !strings.HasPrefix(network, "tcp") {
		err = fmt.Errorf("%s is not a TCP or unix socket address", network)
	}
	if err != nil {
		return nil, fmt.Errorf("ipfsconn config: node_multiaddress %s: %w", m, err)
	}
	host := address
	if network == "unix" {
		// Any host will do: every connection dials the socket.
		host = "kubo"
	}
	slots := cfg.MaxConcurrentRequests
	return &Connector{
		cfg:     cfg,
		log:     log,
		baseURL: "http://" + host + "/api/v0/",
		client:  newHTTPClient(network, address, 3*slots),
		short:   make(semaphore, slots),
		long:    make(semaphore, slots),
		blocks:  make(semaphore, slots),
		metrics: newMetrics(),
	}, nil
}

// newHTTPClient returns a client whose every connection goes to one address,
// keeping up to idle connections open for reuse.
func newHTTPClient(network, address string, idle int) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		// kubo is reached directly, never through an HTTP(S)_PROXY.
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// Close closes idle connections to kubo. Calls still in flight finish
// normally.
func (c *Connector) Close() error {
	c.client.CloseIdleConnections()
	return nil
}

// semaphore bounds concurrent requests: a slot is a buffered element.
type semaphore chan struct{}

func (s semaphore) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s semaphore) release() { <-s }

// stream is a 200 reply being read: a sequence of JSON values. Closing it
// frees its pool slot. A stream belongs to one goroutine.
type stream struct {
	c        *Connector
	ctx      context.Context
	endpoint string
	resp     *http.Response
	body     *endReader
	dec      *json.Decoder
	release  func()
	closed   bool
}

// endReader records whether its reader ended cleanly, which tells a reply
// that kubo finished but cut short (malformed) from one whose connection
// broke (kubo gone): the JSON decoder reports both as io.ErrUnexpectedEOF.
type endReader struct {
	r     io.Reader
	ended bool
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.ended = true
	}
	return n, err
}

// post sends a request to kubo and returns the reply once kubo has answered
// 200; any other status is returned as an *RPCError. The caller must close
// the stream.
func (c *Connector) post(ctx context.Context, pool semaphore, endpoint string, q url.Values, body io.Reader, contentType string) (*stream, error) {
	if err := pool.acquire(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	u := c.baseURL + endpoint
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		pool.release()
		return nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		pool.release()
		return nil, c.transportErr(ctx, endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer pool.release()
		defer resp.Body.Close()
		return nil, c.replyErr(ctx, endpoint, resp)
	}
	reply := &endReader{r: resp.Body}
	return &stream{c: c, ctx: ctx, endpoint: endpoint, resp: resp, body: reply, dec: json.NewDecoder(reply), release: pool.release}, nil
}

// next decodes the next value of the reply into v. At the end of the reply
// it returns io.EOF, or the error kubo reported in the X-Stream-Error
// trailer, which is how kubo fails a reply it has started streaming.
func (s *stream) next(v any) error {
	err := s.dec.Decode(v)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		if msg := s.resp.Trailer.Get("X-Stream-Error"); msg != "" {
			return &RPCError{Endpoint: s.endpoint, StatusCode: s.resp.StatusCode, Message: msg}
		}
		return io.EOF
	case isDecodeError(err), errors.Is(err, io.ErrUnexpectedEOF) && s.body.ended:
		return s.c.malformed(s.endpoint, err)
	default:
		return s.c.transportErr(s.ctx, s.endpoint, err)
	}
}

// finish reads the rest of the reply, so that an error kubo reports in the
// trailer is not missed and the connection can be reused, and closes the
// stream.
func (s *stream) finish() error {
	defer s.close()
	for {
		var v struct{}
		err := s.next(&v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// close closes the reply, abandoning what is left of it, and frees the
// slot. It may be called more than once.
func (s *stream) close() {
	if s.closed {
		return
	}
	s.closed = true
	s.resp.Body.Close()
	s.release()
}

// malformed explains a 200 reply that is not the JSON kubo sends: most often
// node_multiaddress points at another HTTP server, such as kubo's gateway.
func (c *Connector) malformed(endpoint string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("the JSON ends early")
	}
	return fmt.Errorf("%s: malformed reply: %w (is node_multiaddress %s kubo's RPC API?)", endpoint, err, c.cfg.NodeMultiaddress)
}

func isDecodeError(err error) bool {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.As(err, &syntax) || errors.As(err, &typ)
}

// callJSON makes a short call with ipfs_request_timeout and decodes its
// single-value reply into out.
func (c *Connector) callJSON(ctx context.Context, endpoint string, q url.Values, out any) error {
	ctx, cancel := c.withTimeout(ctx, c.cfg.IPFSRequestTimeout, "ipfs_request_timeout")
	defer cancel()
	s, err := c.post(ctx, c.short, endpoint, q, nil, "")
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.next(out); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: empty reply", endpoint)
		}
		return err
	}
	return s.finish()
}

// withTimeout bounds ctx by d; when d expires the context's cause names the
// setting, so that errors say which limit was hit.
func (c *Connector) withTimeout(ctx context.Context, d time.Duration, setting string) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: no reply within %s (%s)", context.DeadlineExceeded, d, setting))
}

// transportErr explains a failed exchange: the caller's cancellation or
// timeout when that is what ended it, otherwise kubo being unreachable.
func (c *Connector) transportErr(ctx context.Context, endpoint string, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return fmt.Errorf("%s: %w", endpoint, cause)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("%w (is kubo running at %s?): %s: %w", ErrUnreachable, c.cfg.NodeMultiaddress, endpoint, err)
}

// replyErr turns a non-200 reply into an *RPCError carrying kubo's message,
// which comes as {"Message","Code","Type"} (plain text for unknown paths).
func (c *Connector) replyErr(ctx context.Context, endpoint string, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return c.transportErr(ctx, endpoint, err)
	}
	var kerr struct{ Message string }
	if json.Unmarshal(body, &kerr) == nil && kerr.Message != "" {
		return &RPCError{Endpoint: endpoint, StatusCode: resp.StatusCode, Message: kerr.Message}
	}
	// Not kubo's error JSON: whatever else answers at that address (kubo's
	// gateway, say), or kubo's plain-text 404 for a path it does not have.
	// Quote the start of it on one line, with the status.
	msg := resp.Status
	if excerpt := oneLine(body, maxExcerpt); excerpt != "" {
		msg += ": " + excerpt
	}
	msg += fmt.Sprintf(" (not kubo's RPC error: is node_multiaddress %s kubo's RPC API, of a kubo that has %s?)", c.cfg.NodeMultiaddress, endpoint)
	return &RPCError{Endpoint: endpoint, StatusCode: resp.StatusCode, Message: msg}
}

// maxExcerpt bounds how much of a foreign reply an error quotes.
const maxExcerpt = 200

// oneLine returns the start of b as printable text on one line: runs of
// white space and control characters become one space, and text beyond max
// bytes is cut with an ellipsis.
func oneLine(b []byte, max int) string {
	var out strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(string(b), "\uFFFD") {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = out.Len() > 0
			continue
		}
		if out.Len() >= max {
			out.WriteString("…")
			break
		}
		if space {
			out.WriteByte(' ')
			space = false
		}
		out.WriteRune(r)
	}
	return out.String()
}
