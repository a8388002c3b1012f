package kvs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// Server defaults.
const (
	DefaultListen          = "127.0.0.1:7443"
	DefaultMaxValue        = 1 << 20
	DefaultShutdownTimeout = 10 * time.Second
)

// Config configures a [Server].
type Config struct {
	TLS    *ServerTLS    // required
	Store  Store         // required
	Policy *PolicyHolder // nil: every client of the CA has full access

	MaxValue int64 // largest value in bytes; 0 means DefaultMaxValue
	MaxConns int   // concurrent connections; 0 means unlimited

	ReadHeaderTimeout time.Duration // 0 means 5s
	ReadTimeout       time.Duration // 0 means 30s
	WriteTimeout      time.Duration // 0 means 30s
	IdleTimeout       time.Duration // 0 means 120s
	ShutdownTimeout   time.Duration // in-flight requests get this long; 0 means DefaultShutdownTimeout

	Logger *slog.Logger // operational log; nil discards
	Audit  *slog.Logger // one line per request; nil means Logger

	// OnRefused, when set, is called for every refused TLS handshake with
	// the peer address and the reason (used by kvsctl attack).
	OnRefused func(peer, reason string)

	// WrapTLS, when set, receives the TLS configuration built from TLS and
	// returns the one to serve with. kvsctl attack wraps it to observe each
	// handshake (version, resumption, verdict); its tests use it to build
	// deliberately weakened servers. Nil serves the configuration as built.
	WrapTLS func(*tls.Config) *tls.Config

	refusalLogLimit int // tests: lines per refusalLogWindow; 0 means refusalLogLimit
}

// Server is the mutual-TLS key-value HTTP server. It keeps no state of its
// own beyond caches of immutable material, so several servers on one
// PostgreSQL database behave as one store.
type Server struct {
	cfg     Config
	log     *slog.Logger
	audit   *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	http    *http.Server

	refusals *logLimiter // caps the "tls handshake refused" lines
}

// NewServer checks the configuration and builds the server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.TLS == nil || cfg.Store == nil {
		return nil, errors.New("kvs: server needs TLS material and a store")
	}
	if cfg.MaxValue <= 0 {
		cfg.MaxValue = DefaultMaxValue
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ReadHeaderTimeout, 5*time.Second)
	def(&cfg.ReadTimeout, 30*time.Second)
	def(&cfg.WriteTimeout, 30*time.Second)
	def(&cfg.IdleTimeout, 120*time.Second)
	def(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	s := &Server{cfg: cfg, log: orDiscard(cfg.Logger), metrics: newMetrics()}
	s.audit = cfg.Audit
	if s.audit == nil {
		s.audit = s.log
	}
	if cfg.refusalLogLimit <= 0 {
		cfg.refusalLogLimit = refusalLogLimit
	}
	s.refusals = newLogLimiter(s.log, "tls handshake refusals not logged", cfg.refusalLogLimit, refusalLogWindow,
		slog.Int("limit", cfg.refusalLogLimit), slog.String("metric", "kvs_tls_handshakes_refused_total"))
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /v1/kv", s.handleList)
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	// Other methods on those paths: 405, not the catch-all's 404.
	for _, path := range []string{"/v1/kv", "/healthz", "/metrics"} {
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET")
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: see the README for the API")
	})
	tlsCfg := cfg.TLS.Config()
	if cfg.WrapTLS != nil {
		tlsCfg = cfg.WrapTLS(tlsCfg)
	}
	s.http = &http.Server{
		Handler:           s,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(httpErrorLog{s}, "", 0),
		ConnState:         s.connState,
	}
	return s, nil
}

// Listen opens a TCP listener, with an error that says what to do when the
// address is taken.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s: the address is already in use: stop the other process or pick another --listen", addr)
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve accepts mutual-TLS connections on ln until ctx ends, then stops
// accepting, lets in-flight requests finish within the shutdown timeout and
// returns. It does not close the store.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.MaxConns > 0 {
		ln = netutil.LimitListener(ln, s.cfg.MaxConns)
	}
	s.http.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	var wg sync.WaitGroup
	wg.Add(1)
	shutdownErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		err := s.http.Shutdown(sctx)
		if err != nil {
			s.http.Close()
			err = fmt.Errorf("shutdown: in-flight requests did not finish within %s: %w", s.cfg.ShutdownTimeout, err)
		}
		shutdownErr <- err
	}()
	s.log.Info("serving", "addr", ln.Addr().String(), "max_value", s.cfg.MaxValue, "max_conns", s.cfg.MaxConns, "policy", s.cfg.Policy.Current() != nil)
	err := s.http.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		wg.Wait()
		s.refusals.stop()
		return <-shutdownErr
	}
	return err
}

// Handler returns the server's HTTP handler (used by tests and benchmarks
// that bring their own listener).
func (s *Server) Handler() http.Handler { return s }

func (s *Server) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.metrics.conns.Inc()
	case http.StateClosed, http.StateHijacked:
		s.metrics.conns.Dec()
	}
}

// keyPrefix is the path under which keys live. Keys are taken from the
// escaped path and unescaped once, so "/" "..", "%2F" and any other bytes in
// a key round-trip; ServeMux would clean or redirect such paths, so key
// requests are routed before it.
const keyPrefix = "/v1/kv/"

// ServeHTTP routes requests. A request on a connection whose client
// certificate was revoked after the handshake, or while the CRL is not
// current, is refused with 403.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.TLS.checkPeer(r.TLS); err != nil {
		start := time.Now()
		msg := "client certificate revoked"
		if !errors.Is(err, ErrRevoked) {
			msg = "revocation cannot be checked: the server's CRL is not current"
		}
		s.log.Warn("request refused on an established connection", "peer", r.RemoteAddr, "reason", err)
		s.finish(r, "other", "", http.StatusForbidden, writeError(w, http.StatusForbidden, msg), start)
		return
	}
	if strings.HasPrefix(r.URL.Path, keyPrefix) {
		s.handleKey(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// httpErrorLog routes net/http's error log through slog. Refused handshakes
// become one structured line with the peer and the reason (up to
// refusalLogLimit lines a second, then one line with how many more there
// were), and a metric.
type httpErrorLog struct{ s *Server }

const handshakePrefix = "http: TLS handshake error from "

func (l httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if rest, ok := strings.CutPrefix(msg, handshakePrefix); ok {
		peer, reason, _ := strings.Cut(rest, ": ")
		label := RefusalReason(reason)
		level := slog.LevelWarn
		if label == "eof" {
			level = slog.LevelDebug
		}
		if l.s.log.Enabled(context.Background(), level) && l.s.refusals.allow() {
			l.s.log.Log(context.Background(), level, "tls handshake refused", "peer", peer, "reason", reason)
		}
		l.s.metrics.refused.WithLabelValues(label).Inc() // after the line: a test that sees the count sees the line
		if l.s.cfg.OnRefused != nil {
			l.s.cfg.OnRefused(peer, reason)
		}
		return len(p), nil
	}
	l.s.log.Error("http server", "err", msg)
	return len(p), nil
}

var _ io.Writer = httpErrorLog{}
