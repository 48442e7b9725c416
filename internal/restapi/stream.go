package restapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"ipfs-cluster/internal/api"
)

// jsonAppender is implemented by the types listed in bulk (pins): they
// encode themselves without reflection, caching the text of peer IDs and
// multiaddresses across the stream.
type jsonAppender interface {
	AppendJSON(b []byte, names *api.TextCache) []byte
}

// flushEvery bounds how long an item may sit in the write buffer, so slow
// streams reach the client promptly while fast ones are not flushed per
// item.
const flushEvery = 50 * time.Millisecond

// streamBuffer is the write buffer of a stream: net/http's own is 4 KiB,
// which made a write system call every three statuses.
const streamBuffer = 64 << 10

// streamEach writes what produce emits as NDJSON. Nothing emitted and no
// error gives 204; an error before the first item gives an error reply;
// once items went out, an error travels in the X-Stream-Error trailer,
// which is always present (empty when the stream ended well).
func streamEach[T any](s *Server, w http.ResponseWriter, r *http.Request, produce func(ctx context.Context, fn func(T) error) error) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, streamBuffer)
	enc := json.NewEncoder(bw)
	var buf []byte
	names := api.NewTextCache()
	started := false
	lastFlush := time.Now()
	err := produce(ctx, func(item T) error {
		if !started {
			started = true
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-cache") // a listing is of now
			h.Set("Trailer", "X-Stream-Error")
			h.Set("X-Chunked-Output", "1")
			w.WriteHeader(http.StatusOK)
		}
		if a, ok := any(&item).(jsonAppender); ok {
			buf = append(a.AppendJSON(buf[:0], names), '\n')
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		} else if err := enc.Encode(item); err != nil {
			return err
		}
		if now := time.Now(); now.Sub(lastFlush) > flushEvery {
			lastFlush = now
			if err := bw.Flush(); err != nil {
				return err
			}
			rc.Flush()
		}
		return nil
	})
	if started {
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
	}
	switch {
	case !started && err != nil:
		code := statusOf(err)
		if code < 500 { // writeError logs the others
			// An add cut off by its client or by add_idle_timeout
			// ends here: the operator sees why it left no pin.
			s.log.Info().Err(err).Int("code", code).Str("path", r.URL.Path).Msg("stream refused before its first item")
		}
		s.writeError(w, code, err)
	case !started:
		w.WriteHeader(http.StatusNoContent)
	default:
		msg := ""
		if err != nil {
			msg = err.Error()
			s.log.Warn().Err(err).Str("path", r.URL.Path).Msg("stream ended with an error")
		}
		w.Header().Set("X-Stream-Error", msg)
	}
}
