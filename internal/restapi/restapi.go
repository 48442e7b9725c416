// Package restapi serves the cluster's HTTP API with the routes, query
// parameters, JSON shapes and streaming conventions of IPFS Cluster 1.1.x:
// NDJSON streams flushed as they go with an X-Stream-Error trailer, 204 for
// an empty stream, and {code, message} error bodies.
package restapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/rs/cors"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
)

// Cluster is what the API serves.
type Cluster interface {
	ID(ctx context.Context) api.ID
	Peers(ctx context.Context, fn func(api.ID) error) error
	Pin(ctx context.Context, c api.Cid, opts api.PinOptions) (api.Pin, error)
	PinPath(ctx context.Context, path string, opts api.PinOptions) (api.Pin, error)
	Unpin(ctx context.Context, c api.Cid) (api.Pin, error)
	UnpinPath(ctx context.Context, path string) (api.Pin, error)
	PinGet(ctx context.Context, c api.Cid) (api.Pin, error)
	Pins(ctx context.Context, filter api.PinType, fn func(api.Pin) error) error
	Status(ctx context.Context, c api.Cid, local bool) (api.GlobalPinInfo, error)
	StatusAll(ctx context.Context, filter api.TrackerStatus, local bool, fn func(api.GlobalPinInfo) error) error
	Recover(ctx context.Context, c api.Cid, local bool) (api.GlobalPinInfo, error)
	RecoverAll(ctx context.Context, local bool, fn func(api.GlobalPinInfo) error) error
	RepoGC(ctx context.Context, local bool) (api.GlobalRepoGC, error)
	MetricNames() []string
	LatestMetrics(name string) []api.Metric
	Alerts() []api.Alert
	ConnectGraph(ctx context.Context) api.ConnectGraph
	BandwidthByProtocol() api.BandwidthByProtocol
	PeerAdd(ctx context.Context, p peer.ID) (api.ID, error)
	PeerRemove(ctx context.Context, p peer.ID) error
	ReloadPolicy(ctx context.Context, local bool) []api.PolicyReload
	Add(ctx context.Context, p cluster.AddParams, build func(ctx context.Context, sink adder.BlockSink) (api.Cid, error)) (cluster.AddResult, error)
}

// Config holds the server's settings (section api.restapi).
type Config struct {
	Listen            []string // multiaddrs: /ip4/.../tcp/N or /unix/path
	ReadTimeout       time.Duration
	ReadHeaderTimeout time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	Headers           map[string][]string
	HTTPLogFile       string
	// BasicAuthCredentials maps users to passwords; nil turns
	// authentication off (basic_auth_credentials).
	BasicAuthCredentials map[string]string
	// SSLCertFile and SSLKeyFile, both set, serve HTTPS.
	SSLCertFile, SSLKeyFile string
	// CORS is the policy for browsers' cross-origin requests.
	CORS cors.Options
	// AddIdleTimeout fails an add whose upload sends nothing for that
	// long; 0 means a minute.
	AddIdleTimeout time.Duration
}

// Server is the REST API server.
type Server struct {
	cfg     Config
	cluster Cluster
	log     zerolog.Logger
	httpLog zerolog.Logger
	logFile *os.File
	handler http.Handler
	tls     *tls.Config // nil: plain HTTP

	mu        sync.Mutex
	servers   []*http.Server
	listeners []net.Listener
}

// New builds the server: authentication, then CORS, then the
// trailing-slash redirect, then the router, as the reference orders them,
// so that a browser's preflight (OPTIONS, never authenticated) is answered
// by the CORS policy.
func New(cfg Config, cluster Cluster, log, httpLog zerolog.Logger) (*Server, error) {
	if cfg.AddIdleTimeout <= 0 {
		cfg.AddIdleTimeout = time.Minute
	}
	s := &Server{cfg: cfg, cluster: cluster, log: log, httpLog: httpLog}
	if cfg.HTTPLogFile != "" {
		f, err := os.OpenFile(cfg.HTTPLogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("restapi: open http_log_file: %w", err)
		}
		s.logFile = f
		s.httpLog = zerolog.New(f).With().Timestamp().Logger()
	}
	if (cfg.SSLCertFile == "") != (cfg.SSLKeyFile == "") {
		return nil, errors.New("restapi: ssl_cert_file and ssl_key_file go together")
	}
	if cfg.SSLCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.SSLCertFile, cfg.SSLKeyFile)
		if err != nil {
			return nil, fmt.Errorf("restapi: load ssl_cert_file and ssl_key_file: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for u, p := range cfg.BasicAuthCredentials {
		if p == "" {
			s.log.Warn().Str("user", u).Msg("basic_auth_credentials: this user has an empty password and cannot log in")
		}
	}
	s.handler = s.accessLog(s.authenticate(cfg.BasicAuthCredentials, cors.New(cfg.CORS).Handler(strictSlash(s.router()))))
	return s, nil
}

// Listen opens every configured address; it fails if one cannot be opened
// so that a misconfigured peer does not start half-reachable.
func (s *Server) Listen() error {
	for _, addr := range s.cfg.Listen {
		m, err := ma.NewMultiaddr(addr)
		if err != nil {
			return fmt.Errorf("restapi: listen address %q: %w", addr, err)
		}
		if path, err := m.ValueForProtocol(ma.P_UNIX); err == nil {
			if err := removeStaleSocket(path); err != nil {
				return fmt.Errorf("restapi: listen on %s: %w", addr, err)
			}
		}
		l, err := manet.Listen(m)
		if err != nil {
			s.Close(context.Background())
			return fmt.Errorf("restapi: listen on %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, manet.NetListener(l))
	}
	return nil
}

// removeStaleSocket removes the unix socket at path when nothing answers
// on it: a peer killed without a clean stop leaves its socket behind, and
// the next start could not listen again.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil // none, or not a socket: Listen says what is wrong
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another process serves on %s", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the stale socket: %w", err)
	}
	return nil
}

// Addrs are the addresses actually listened on (after port 0 was chosen).
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Serve serves on every listener until Close.
func (s *Server) Serve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		srv := &http.Server{
			Handler:           s.handler,
			ReadTimeout:       s.cfg.ReadTimeout,
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
			WriteTimeout:      s.cfg.WriteTimeout,
			IdleTimeout:       s.cfg.IdleTimeout,
			MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
			TLSConfig:         s.tls,
		}
		s.servers = append(s.servers, srv)
		go func() {
			var err error
			if s.tls != nil {
				err = srv.ServeTLS(l, "", "")
			} else {
				err = srv.Serve(l)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error().Err(err).Str("addr", l.Addr().String()).Msg("serve")
			}
		}()
		s.log.Info().Str("addr", l.Addr().String()).Bool("tls", s.tls != nil).
			Bool("authenticated", s.cfg.BasicAuthCredentials != nil).Msg("REST API listening")
	}
}

// Close stops accepting requests and waits (until ctx ends) for those in
// flight.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.servers) == 0 {
		for _, l := range s.listeners {
			l.Close()
		}
	}
	s.servers, s.listeners = nil, nil
	if s.logFile != nil {
		s.logFile.Close()
	}
	return errors.Join(errs...)
}

func (s *Server) router() *httprouter.Router {
	r := httprouter.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.writeError(w, http.StatusNotFound, errors.New("not found"))
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s", req.Method, req.URL.Path))
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		s.log.Error().Interface("panic", v).Str("path", req.URL.Path).Msg("handler panic")
		s.writeError(w, http.StatusInternalServerError, errors.New("internal error"))
	}

	r.GET("/id", s.id)
	r.GET("/version", s.version)
	r.GET("/peers", s.peers)
	r.POST("/peers", s.peerAdd)
	r.DELETE("/peers/:peer", s.peerRemove)
	r.GET("/allocations", s.allocations)
	r.GET("/allocations/:cid", s.allocation)
	r.GET("/pins", s.statusAll)
	// /pins/{cid}, /pins/{cid}/recover, /pins/recover and
	// /pins/{ipfs|ipns|ipld}/{path...} share a prefix, which httprouter
	// cannot express as separate routes; pinsRoute dispatches them.
	r.GET("/pins/*rest", s.pinsRoute)
	r.POST("/pins/*rest", s.pinsRoute)
	r.DELETE("/pins/*rest", s.pinsRoute)
	r.POST("/ipfs/gc", s.repoGC)
	r.POST("/add", s.add)
	r.POST("/policy/reload", s.policyReload)
	r.POST("/token", s.token)
	r.GET("/health", func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		w.WriteHeader(http.StatusNoContent)
	})
	r.GET("/health/alerts", s.alerts)
	r.GET("/health/graph", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		s.writeJSON(w, http.StatusOK, s.cluster.ConnectGraph(r.Context()))
	})
	r.GET("/health/bandwidth", func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		s.writeJSON(w, http.StatusOK, s.cluster.BandwidthByProtocol())
	})
	r.GET("/monitor/metrics", s.metricNames)
	r.GET("/monitor/metrics/:name", s.metrics)
	return r
}

// strictSlash redirects "/path/" to "/path" with 307 so that POST stays
// POST, as the reference does.
func strictSlash(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
			u := *r.URL
			u.Path = strings.TrimRight(p, "/")
			if u.Path == "" {
				u.Path = "/"
			}
			http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// accessLog records each request after it completes.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		for k, v := range s.cfg.Headers {
			w.Header()[k] = v
		}
		next.ServeHTTP(rec, r)
		s.httpLog.Debug().Str("method", r.Method).Str("uri", r.RequestURI).Str("remote", r.RemoteAddr).
			Int("status", rec.status).Dur("took", time.Since(start)).Msg("request")
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
