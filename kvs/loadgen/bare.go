package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"
)

// BareBody is the answer of the bare server to every request: 100 bytes
// that are also a valid answer to a kvs PUT ({"version":...}) and LIST, so
// the kvs client accepts it for every operation.
var BareBody = func() []byte {
	b := `{"key":"bare","version":1,"pad":"` + strings.Repeat("x", 100-36) + `"}` + "\n"
	return []byte(b)
}()

// BareServer returns the ceiling for `kvsctl bench`: a plain net/http
// server with the TLS configuration it is given (the caller passes
// kvs.ServerTLS.Config(), the same as `kvsctl serve`), the same timeouts as
// the kvs server's defaults, and a handler that reads the request body and
// answers BareBody, with no store, no logging and no metrics.
func BareServer(tlsCfg *tls.Config) *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(serveBare),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
}

func serveBare(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h := w.Header()
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Etag"] = []string{`"1"`}
	h["Content-Length"] = []string{"100"}
	_, _ = w.Write(BareBody)
}

// ServeBare serves the bare server on ln until ctx ends.
func ServeBare(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	srv := BareServer(tlsCfg)
	done := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- srv.Shutdown(sctx)
	}()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return <-done
	}
	return err
}
