// Package observe serves what an operator needs to look inside a running
// peer: its Prometheus metrics at /metrics and the Go runtime's profiles
// under /debug/pprof/. It is off unless observations.metrics.enable_stats
// is set, and it listens where prometheus_endpoint says (loopback by
// default), because profiles reveal internals no remote party should see.
package observe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Server is a running metrics endpoint. Close may be called once, from any
// goroutine.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// NewRegistry returns a registry with the Go runtime and process
// collectors, to which the peer's components add their own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Start listens on the multiaddr endpoint and serves reg and the profiles
// until Close.
func Start(endpoint string, reg prometheus.Gatherer, log zerolog.Logger) (*Server, error) {
	m, err := ma.NewMultiaddr(endpoint)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint %q: %w", endpoint, err)
	}
	l, err := manet.Listen(m)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint %s: %w", endpoint, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		addr: l.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(manet.NetListener(l)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics endpoint stopped")
		}
	}()
	log.Info().Stringer("address", s.addr).Msg("serving /metrics and /debug/pprof/")
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the server, waiting up to ctx for requests in flight.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
