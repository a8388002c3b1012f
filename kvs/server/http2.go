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

// stackReserve is how much stack ServeHTTP makes sure of before an HTTP/2
// request runs. The HTTP/2 server runs every stream's handler on a new
// goroutine, which starts with a small stack (the runtime sizes it by the
// average of all goroutines, most of them shallow); serve's handlers go
// deeper (the bbolt B-tree search, the audit line), so the stack was copied
// two or three times per request, 7-11% of serve's CPU over HTTP/2 in a
// profile (docs/performance.md). Growing it once, at the handler's entry
// where little is on it, is one cheap copy. HTTP/1.1 runs every request of
// a connection on one goroutine, whose stack stays grown: it skips this.
const stackReserve = 8 << 10

// reserveStack uses a frame of stackReserve bytes, so that the runtime
// grows the goroutine's stack to hold it now, while little is on it. It
// returns a byte of the frame so that the compiler keeps it.
//
//go:noinline
func reserveStack(i int) byte {
	var frame [stackReserve]byte
	return frame[i&(stackReserve-1)]
}
