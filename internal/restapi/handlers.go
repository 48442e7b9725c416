package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"
	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
)

func (s *Server) id(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	s.writeJSON(w, http.StatusOK, s.cluster.ID(r.Context()))
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	s.writeJSON(w, http.StatusOK, api.VersionInfo{Version: api.Version})
}

func (s *Server) peers(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	streamEach(s, w, r, s.cluster.Peers)
}

// maxBodyBytes bounds the JSON bodies the API reads.
const maxBodyBytes = 64 << 10

func (s *Server) peerAdd(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var body struct {
		PeerID string `json:"peer_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&body); err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Errorf("error decoding request body: %w", err))
		return
	}
	p, err := peer.Decode(body.PeerID)
	if err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Errorf("error decoding peer_id %q: %w", body.PeerID, err))
		return
	}
	id, err := s.cluster.PeerAdd(r.Context(), p)
	s.reply(w, id, err)
}

func (s *Server) peerRemove(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	p, err := peer.Decode(ps.ByName("peer"))
	if err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Errorf("error decoding Peer ID: %w", err))
		return
	}
	if err := s.cluster.PeerRemove(r.Context(), p); err != nil {
		s.writeError(w, statusOf(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) allocations(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	filter, _, err := api.ParsePinTypeFilter(r.URL.Query().Get("filter"))
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err)
		return
	}
	streamEach(s, w, r, func(ctx context.Context, fn func(api.Pin) error) error {
		return s.cluster.Pins(ctx, filter, fn)
	})
}

func (s *Server) allocation(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	c, ok := s.cidParam(w, ps.ByName("cid"))
	if !ok {
		return
	}
	pin, err := s.cluster.PinGet(r.Context(), c)
	s.reply(w, pin, err)
}

func (s *Server) statusAll(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	q := r.URL.Query()
	local, ok := s.boolParam(w, q.Get("local"), "local")
	if !ok {
		return
	}
	if cids := q.Get("cids"); cids != "" {
		var list []api.Cid
		for _, part := range strings.Split(cids, ",") {
			c, ok := s.cidParam(w, strings.TrimSpace(part))
			if !ok {
				return
			}
			list = append(list, c)
		}
		streamEach(s, w, r, func(ctx context.Context, fn func(api.GlobalPinInfo) error) error {
			for _, c := range list {
				gpi, err := s.cluster.Status(ctx, c, local)
				if err != nil {
					return err
				}
				if err := fn(gpi); err != nil {
					return err
				}
			}
			return nil
		})
		return
	}
	filter, _, err := api.ParseTrackerStatusFilter(q.Get("filter"))
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err)
		return
	}
	streamEach(s, w, r, func(ctx context.Context, fn func(api.GlobalPinInfo) error) error {
		return s.cluster.StatusAll(ctx, filter, local, fn)
	})
}

// pinsRoute dispatches everything below /pins/.
func (s *Server) pinsRoute(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	rest := strings.TrimPrefix(ps.ByName("rest"), "/")
	first, tail, _ := strings.Cut(rest, "/")
	switch {
	case first == "ipfs" || first == "ipns" || first == "ipld":
		if tail == "" {
			s.writeError(w, http.StatusBadRequest, fmt.Errorf("empty /%s/ path", first))
			return
		}
		s.pinPathRoute(w, r, "/"+rest)
	case r.Method == http.MethodPost && rest == "recover":
		s.recoverAll(w, r)
	case r.Method == http.MethodPost && tail == "recover":
		s.globalForCid(w, r, first, s.cluster.Recover)
	case tail != "" || first == "":
		s.writeError(w, http.StatusNotFound, errors.New("not found"))
	case r.Method == http.MethodGet:
		s.globalForCid(w, r, first, s.cluster.Status)
	case r.Method == http.MethodPost:
		s.pin(w, r, first)
	default:
		s.unpin(w, r, first)
	}
}

// globalForCid serves GET /pins/{cid} and POST /pins/{cid}/recover, which
// differ only in the core call.
func (s *Server) globalForCid(w http.ResponseWriter, r *http.Request, cidStr string,
	call func(ctx context.Context, c api.Cid, local bool) (api.GlobalPinInfo, error)) {
	c, ok := s.cidParam(w, cidStr)
	if !ok {
		return
	}
	local, ok := s.boolParam(w, r.URL.Query().Get("local"), "local")
	if !ok {
		return
	}
	gpi, err := call(r.Context(), c, local)
	s.reply(w, gpi, err)
}

func (s *Server) pin(w http.ResponseWriter, r *http.Request, cidStr string) {
	c, ok := s.cidParam(w, cidStr)
	if !ok {
		return
	}
	opts, ok := s.pinOptions(w, r)
	if !ok {
		return
	}
	pin, err := s.cluster.Pin(r.Context(), c, opts)
	s.reply(w, pin, err)
}

func (s *Server) unpin(w http.ResponseWriter, r *http.Request, cidStr string) {
	c, ok := s.cidParam(w, cidStr)
	if !ok {
		return
	}
	pin, err := s.cluster.Unpin(r.Context(), c)
	s.reply(w, pin, err)
}

func (s *Server) pinPathRoute(w http.ResponseWriter, r *http.Request, path string) {
	switch r.Method {
	case http.MethodPost:
		opts, ok := s.pinOptions(w, r)
		if !ok {
			return
		}
		pin, err := s.cluster.PinPath(r.Context(), path, opts)
		s.reply(w, pin, err)
	case http.MethodDelete:
		pin, err := s.cluster.UnpinPath(r.Context(), path)
		s.reply(w, pin, err)
	default:
		s.writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s", r.Method, r.URL.Path))
	}
}

// pinOptions parses the PinOptions query; a malformed value is a 400.
func (s *Server) pinOptions(w http.ResponseWriter, r *http.Request) (api.PinOptions, bool) {
	opts, err := api.PinOptionsFromQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err)
		return opts, false
	}
	return opts, true
}

func (s *Server) recoverAll(w http.ResponseWriter, r *http.Request) {
	local, ok := s.boolParam(w, r.URL.Query().Get("local"), "local")
	if !ok {
		return
	}
	streamEach(s, w, r, func(ctx context.Context, fn func(api.GlobalPinInfo) error) error {
		return s.cluster.RecoverAll(ctx, local, fn)
	})
}

func (s *Server) repoGC(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	local, ok := s.boolParam(w, r.URL.Query().Get("local"), "local")
	if !ok {
		return
	}
	gc, err := s.cluster.RepoGC(r.Context(), local)
	s.reply(w, gc, err)
}

func (s *Server) policyReload(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	local, ok := s.boolParam(w, r.URL.Query().Get("local"), "local")
	if !ok {
		return
	}
	s.writeJSON(w, http.StatusOK, s.cluster.ReloadPolicy(r.Context(), local))
}

func (s *Server) alerts(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	s.writeJSON(w, http.StatusOK, s.cluster.Alerts())
}

func (s *Server) metricNames(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	s.writeJSON(w, http.StatusOK, s.cluster.MetricNames())
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request, ps httprouter.Params) {
	s.writeJSON(w, http.StatusOK, s.cluster.LatestMetrics(ps.ByName("name")))
}

func (s *Server) cidParam(w http.ResponseWriter, str string) (api.Cid, bool) {
	c, err := api.DecodeCid(str)
	if err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Errorf("%w (got %q)", err, str))
		return api.CidUndef, false
	}
	return c, true
}

func (s *Server) boolParam(w http.ResponseWriter, v, name string) (bool, bool) {
	if v == "" {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Errorf("parameter %s: invalid boolean %q", name, v))
		return false, false
	}
	return b, true
}

// statusOf maps core errors to HTTP status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, cluster.ErrNotFound), errors.Is(err, cluster.ErrUnknownPeer):
		return http.StatusNotFound
	case errors.Is(err, cluster.ErrInvalidRequest):
		return http.StatusBadRequest
	case errors.Is(err, cluster.ErrRefused), errors.Is(err, cluster.ErrFollowerMode):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func (s *Server) reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		s.writeError(w, statusOf(err), err)
		return
	}
	s.writeJSON(w, http.StatusOK, v)
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := encodeJSON(v)
	if err != nil {
		s.writeError(w, http.StatusInternalServerError, fmt.Errorf("encode reply: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// encodeJSON encodes v, without reflection for the types that append
// themselves: a pin is the reply of every POST /pins.
func encodeJSON(v any) ([]byte, error) {
	switch t := v.(type) {
	case jsonAppender:
		return t.AppendJSON(nil, nil), nil
	case api.Pin:
		return t.AppendJSON(nil, nil), nil
	case api.GlobalPinInfo:
		return t.AppendJSON(nil, nil), nil
	}
	return json.Marshal(v)
}

func (s *Server) writeError(w http.ResponseWriter, code int, err error) {
	msg := err.Error()
	// The reference's 404 message is exactly the state's error text.
	if errors.Is(err, cluster.ErrNotFound) {
		msg = cluster.ErrNotFound.Error()
	}
	if code >= 500 {
		s.log.Warn().Err(err).Int("code", code).Msg("request failed")
	}
	b, _ := json.Marshal(api.Error{Code: code, Message: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
