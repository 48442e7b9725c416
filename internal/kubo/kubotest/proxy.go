package kubotest

import "net/http"

// FullDuplex lets h, a reverse proxy in front of kubo, keep forwarding the
// request body after the reply has begun. Go's HTTP/1 server otherwise closes
// the unread request body when the first byte of the reply is written, and
// http.Transport, which reads a body once more after Content-Length bytes to
// check its length, then fails the request write and drops its connection to
// kubo under the reply being copied (golang/go#40747): the client sees a
// truncated reply now and then, which made proxied tests flaky.
func FullDuplex(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, "proxy: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	})
}
