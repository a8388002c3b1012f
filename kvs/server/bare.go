package server

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// BareBody is the answer of the bare server to every request: 100 bytes
// that are also a valid answer to a kvs PUT ({"version":...}) and LIST, so
// the kvs client accepts it for every operation.
var BareBody = func() []byte {
	b := `{"key":"bare","version":1,"pad":"` + strings.Repeat("x", 100-36) + `"}` + "\n"
	return []byte(b)
}()

// ServeBare serves the ceiling that kvsctl bench compares the server with,
// until ctx ends: the same TLS material, checks and reload as a Server
// (LoadTLS), the same timeouts and HTTP/2 limits, and a handler that reads
// the request body and answers BareBody, with no store, no policy, no
// logging and no metrics. It accepts through TLSListener as a Server does,
// so the two differ only in what happens after the handshake.
func ServeBare(ctx context.Context, ln net.Listener, files pki.Files, opts TLSOptions) error {
	return ServeBareBody(ctx, ln, files, opts, nil)
}

// ServeBareBody is ServeBare answering a GET with body instead (nil:
// BareBody), so that a comparison of large values has a ceiling that
// sends the same bytes; other methods still get BareBody.
func ServeBareBody(ctx context.Context, ln net.Listener, files pki.Files, opts TLSOptions, body []byte) error {
	st, err := LoadTLS(files, opts)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           bareHandler(body),
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	configureHTTP2(srv)
	done := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- srv.Shutdown(sctx)
	})
	defer stop()
	err = srv.Serve(TLSListener(ln, st.Config(), DefaultReadHeaderTimeout, func(HandshakeEvent) {}))
	if errors.Is(err, http.ErrServerClosed) {
		return <-done
	}
	return err
}

// bareHandler reads the request body and answers BareBody, or get to a
// GET when it is not nil.
func bareHandler(get []byte) http.Handler {
	other := []string{strconv.Itoa(len(BareBody))}
	getLen := other
	if get == nil {
		get = BareBody
	} else {
		getLen = []string{strconv.Itoa(len(get))}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Etag"] = []string{`"1"`}
		body, n := BareBody, other
		if r.Method == http.MethodGet {
			body, n = get, getLen
		}
		h["Content-Length"] = n
		_, _ = w.Write(body)
	})
}
