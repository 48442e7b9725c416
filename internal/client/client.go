// Package client is the Go client of the cluster's REST API, wire-compatible
// with the IPFS Cluster 1.1.x API: the ctl, Lua batch scripts and tests use
// it. Listing methods stream: they decode one item at a time and hand it to
// a callback, so memory stays constant whatever the size of the pinset, and
// returning an error from the callback aborts the request.
package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/logging"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// DefaultHost is the REST API address used when Config.Hosts is empty.
const DefaultHost = "/ip4/127.0.0.1/tcp/9094"

// streamErrorTrailer is the HTTP trailer in which the server reports an
// error that happened after a stream started.
const streamErrorTrailer = "X-Stream-Error"

// Config says how to reach the API.
type Config struct {
	// Hosts are tried in order: a request goes to the next one only when
	// the previous could not be reached. Each is a multiaddress
	// (/ip4/127.0.0.1/tcp/9094, /dns4/host/tcp/9094, /unix/path) or an
	// http(s):// URL.
	Hosts []string
	// Timeout bounds each request, reading a streamed reply included.
	// 0 means no limit.
	Timeout time.Duration
	// SSL makes multiaddress hosts use https.
	SSL bool
	// NoVerifyCert skips the verification of the server's certificate.
	NoVerifyCert bool
	// Username and Password are sent as basic auth when Username is set.
	Username string
	Password string
	// DisableKeepAlives closes the connection after each request.
	DisableKeepAlives bool
}

// Client talks to the REST API of one cluster peer, failing over to the
// next host when one cannot be reached. It is safe for concurrent use.
type Client struct {
	cfg       Config
	endpoints []*url.URL
	http      *http.Client
	log       zerolog.Logger
}

// New checks the configuration and builds a client. It does no I/O.
func New(cfg Config) (*Client, error) {
	hosts := cfg.Hosts
	if len(hosts) == 0 {
		hosts = []string{DefaultHost}
	}
	sockets := make(map[string]string)
	c := &Client{cfg: cfg, log: logging.For("apiclient")}
	for i, h := range hosts {
		u, socket, err := endpointURL(strings.TrimSpace(h), cfg.SSL)
		if err != nil {
			return nil, err
		}
		if socket != "" {
			// Unix sockets get a made-up host name that the dialer maps
			// back to the socket path, so one transport serves all hosts.
			u.Host = fmt.Sprintf("unix-socket-%d", i)
			sockets[u.Host] = socket
		}
		c.endpoints = append(c.endpoints, u)
	}

	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy: func(req *http.Request) (*url.URL, error) {
			if _, ok := sockets[req.URL.Hostname()]; ok {
				return nil, nil
			}
			return http.ProxyFromEnvironment(req)
		},
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableKeepAlives:     cfg.DisableKeepAlives,
		// Skipping verification is an explicit user choice (--no-check-certificate).
		TLSClientConfig: &tls.Config{InsecureSkipVerify: cfg.NoVerifyCert},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			if socket, ok := sockets[host]; ok {
				return dialer.DialContext(ctx, "unix", socket)
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	c.http = &http.Client{Transport: transport}
	return c, nil
}

// endpointURL turns a host as given in Config.Hosts into a base URL, and
// the socket path for /unix addresses.
func endpointURL(h string, ssl bool) (*url.URL, string, error) {
	if strings.HasPrefix(h, "http://") || strings.HasPrefix(h, "https://") {
		u, err := url.Parse(h)
		if err != nil || u.Host == "" {
			return nil, "", fmt.Errorf("invalid API URL %q", h)
		}
		u.Path, u.RawPath = strings.TrimSuffix(u.Path, "/"), ""
		u.RawQuery, u.Fragment = "", ""
		return u, "", nil
	}
	m, err := ma.NewMultiaddr(h)
	if err != nil {
		return nil, "", fmt.Errorf("invalid API address %q: %w", h, err)
	}
	if _, err := m.ValueForProtocol(ma.P_P2P); err == nil {
		return nil, "", fmt.Errorf("API address %q: libp2p-http endpoints are not supported, use the HTTP address", h)
	}
	if _, err := m.ValueForProtocol(ma.P_DNSADDR); err == nil {
		return nil, "", fmt.Errorf("API address %q: /dnsaddr endpoints are not supported, use /dns4 or /dns6", h)
	}
	scheme := "http"
	if ssl {
		scheme = "https"
	}
	network, addr, err := manet.DialArgs(m)
	if err != nil {
		return nil, "", fmt.Errorf("API address %q: %w", h, err)
	}
	if network == "unix" {
		return &url.URL{Scheme: "http"}, addr, nil
	}
	if !strings.HasPrefix(network, "tcp") {
		return nil, "", fmt.Errorf("API address %q: the API is served over TCP, not %s", h, network)
	}
	return &url.URL{Scheme: scheme, Host: addr}, "", nil
}

// request is one API call.
type request struct {
	method string
	path   string // escaped, starting with "/"
	query  url.Values
	// body, when set, is sent with contentType. It can be read once, so
	// a request with a body goes to the first host only.
	body        io.Reader
	contentType string
}

// send performs r against the first host that answers. Transport errors
// move on to the next host; once a server has answered there is no retry,
// since the request may have taken effect. The caller closes the body.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	var lastErr error
	for _, base := range c.endpoints {
		u := base.String() + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, r.body)
		if err != nil {
			return nil, fmt.Errorf("building request %s %s: %w", r.method, r.path, err)
		}
		if r.contentType != "" {
			req.Header.Set("Content-Type", r.contentType)
		}
		if c.cfg.Username != "" {
			req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
		}
		c.log.Debug().Str("method", r.method).Str("url", u).Msg("request")
		resp, err := c.http.Do(req)
		if err == nil {
			return resp, nil
		}
		// The query (every option of an add, say) buries the reason
		// at the end of a long line: the path names the call.
		if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
			uerr.URL = base.String() + r.path
		}
		lastErr = err
		if ctx.Err() != nil || r.body != nil {
			break
		}
		c.log.Debug().Err(err).Str("host", base.Host).Msg("API host unreachable, trying the next one")
	}
	return nil, lastErr
}

// withTimeout applies Config.Timeout to one call.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, c.cfg.Timeout)
	}
	return context.WithCancel(ctx)
}

// do performs a call whose reply is one JSON value, decoded into out
// (which may be nil when no body is expected).
func (c *Client) do(ctx context.Context, r request, out any) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return responseError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusAccepted {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the reply to %s %s: %w", r.method, r.path, err)
	}
	return nil
}

// stream performs a call whose reply is a stream of JSON values and calls
// item for each, with a decoder positioned on it. An error from item stops
// the stream and is returned as is. An error the server reports in the
// stream trailer comes back as an api.Error with code 500.
func (c *Client) stream(ctx context.Context, r request, item func(*json.Decoder) error) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.StatusCode != http.StatusOK:
		return responseError(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		if err := item(dec); err != nil {
			return err
		}
	}
	// Reading to EOF is what makes the trailer available.
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the reply to %s %s: %w", r.method, r.path, err)
	}
	var msgs []string
	for _, v := range resp.Trailer.Values(streamErrorTrailer) {
		if v != "" {
			msgs = append(msgs, v)
		}
	}
	if len(msgs) > 0 {
		return api.Error{Code: http.StatusInternalServerError, Message: strings.Join(msgs, "; ")}
	}
	return nil
}

// decodeItem returns a stream item handler that decodes a T and passes it
// to fn.
func decodeItem[T any](r request, fn func(T) error) func(*json.Decoder) error {
	return func(dec *json.Decoder) error {
		var v T
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("decoding the reply to %s %s: %w", r.method, r.path, err)
		}
		return fn(v)
	}
}

// responseError turns an error reply into an api.Error. Replies that are
// not the API's {"code", "message"} JSON (a proxy's page, say) keep their
// HTTP status and body text.
func responseError(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("reading the error reply (HTTP %d): %w", resp.StatusCode, err)
	}
	var apiErr api.Error
	if json.Unmarshal(body, &apiErr) != nil {
		apiErr = api.Error{Message: strings.TrimSpace(string(body))}
	}
	if apiErr.Code == 0 {
		apiErr.Code = resp.StatusCode
	}
	if apiErr.Message == "" {
		apiErr.Message = http.StatusText(resp.StatusCode)
	}
	return apiErr
}
