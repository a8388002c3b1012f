package server

import "net/http"

// DefaultMaxStreams is how many concurrent HTTP/2 streams one connection
// may open: with the request body buffered as it arrives (readBody), a
// connection's memory is bounded by streams times what each has sent.
const DefaultMaxStreams = 100

// configureHTTP2 sets the server's HTTP/2 limits.
func configureHTTP2(srv *http.Server) {
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: DefaultMaxStreams}
}
