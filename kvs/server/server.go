package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

// Defaults of a Config.
const (
	DefaultListen            = "127.0.0.1:7443"
	DefaultMaxValue          = 1 << 20
	DefaultMaxTxnBytes       = 4 << 20
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultReloadInterval    = 2 * time.Second
)

// Config configures a Server. Files and Store are required.
type Config struct {
	Files pki.Files  // the server's certificate and key, the CA bundle for clients and the CRL
	TLS   TLSOptions // minimum version, clock
	// NoCRL serves without checking revocation for the CAs that have no
	// CRL: an explicit opt-out, logged at warn on every start.
	NoCRL bool
	Store kvs.Store // the store served; Run does not close it
	// PolicyFile is a policy (YAML or JSON) limiting identities to key
	// prefixes and operations; "" means every client of the CA has full
	// access.
	PolicyFile string

	MaxValue int64 // largest value in bytes; 0 means DefaultMaxValue
	// MaxTxnOps is the most compares, and the most operations in each
	// branch, of a transaction; 0 means kvs.DefaultMaxTxnOps.
	MaxTxnOps int
	// MaxTxnBytes bounds the body of POST /v1/txn (each put's value is
	// also bounded by MaxValue); 0 means DefaultMaxTxnBytes.
	MaxTxnBytes int64
	MaxConns    int // concurrent connections, handshakes included (more wait to be accepted); 0 means unlimited

	ReadHeaderTimeout time.Duration // also bounds the TLS handshake; 0 means DefaultReadHeaderTimeout
	ReadTimeout       time.Duration // 0 means DefaultReadTimeout
	WriteTimeout      time.Duration // 0 means DefaultWriteTimeout
	IdleTimeout       time.Duration // 0 means DefaultIdleTimeout
	ShutdownTimeout   time.Duration // in-flight requests get this long; 0 means DefaultShutdownTimeout

	// WatchHeartbeat is how often an idle watch stream gets a comment
	// line, so that proxies keep it open; 0 means DefaultWatchHeartbeat.
	WatchHeartbeat time.Duration
	// WatchBuffer is how many changes the server holds for one watcher
	// that does not read; past it the watch is dropped. 0 means
	// DefaultWatchBuffer.
	WatchBuffer int
	// WatchWriteTimeout drops a watcher whose connection accepts no data
	// for that long; 0 means DefaultWatchWriteTimeout.
	WatchWriteTimeout time.Duration
	// WatchRetention is the history of the change log Run keeps, pruning
	// the rest every WatchPruneInterval (0: DefaultWatchPrune); the zero
	// Retention keeps everything.
	WatchRetention     kvs.Retention
	WatchPruneInterval time.Duration

	// SweepInterval is how often Run deletes the keys whose lease
	// expired (they are invisible from their deadline on anyway); 0 means
	// DefaultSweepInterval, a negative value never (tests of expiry
	// without a sweeper).
	SweepInterval time.Duration

	// ReloadInterval is how often Run checks the certificate, CRL and
	// policy files for changes; 0 means only on SIGHUP (or Reload).
	ReloadInterval time.Duration
	// Pprof, when set, is a loopback address on which Run serves Go's
	// profiling endpoints (plain HTTP, unauthenticated).
	Pprof string
	// MetricsListen, when set, is an address on which Run serves /metrics,
	// /healthz (liveness) and /readyz (store reachable, TLS material and
	// CRLs current) in plain HTTP, for Prometheus and load-balancer probes;
	// it serves no key data.
	MetricsListen string

	// CRLFetcher, when set, fetches CRLs from URLs into cache files that
	// are among Files.CRLs; Run keeps it running and /metrics shows its
	// state.
	CRLFetcher *CRLFetcher

	Logger   *slog.Logger // operational log; nil discards
	Audit    *slog.Logger // one line per request; nil means Logger
	Observer Observer     // more observers of handshakes and requests, besides the log, audit and metrics

	refusalLogLimit int // tests: refused-handshake lines per second; 0 means refusalLogLimit
}

// Server is the mutual-TLS key-value HTTP server. It keeps no state of its
// own beyond caches of immutable material, so several servers on one
// PostgreSQL database behave as one store.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tls     *TLS
	policy  *policyFile
	mux     *http.ServeMux
	metrics *metrics
	http    *http.Server

	hub       *hub               // the watches; nil when the store keeps no change log
	watchCtx  context.Context    // ends watches at shutdown
	watchStop context.CancelFunc // ends watchCtx

	metricsHandler http.Handler
	observe        observers
	refusals       *logLimiter // caps the "tls handshake refused" lines
}

// New checks the configuration, loads the TLS material and the policy (a
// bad file fails here, not at the first connection) and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("kvs: server needs a store")
	}
	if cfg.MaxValue <= 0 {
		cfg.MaxValue = DefaultMaxValue
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = kvs.DefaultMaxTxnOps
	}
	if cfg.MaxTxnBytes <= 0 {
		cfg.MaxTxnBytes = DefaultMaxTxnBytes
	}
	if cfg.Pprof != "" {
		if err := CheckPprofAddr(cfg.Pprof); err != nil {
			return nil, err
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&cfg.ReadTimeout, DefaultReadTimeout)
	def(&cfg.WriteTimeout, DefaultWriteTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	def(&cfg.WatchHeartbeat, DefaultWatchHeartbeat)
	def(&cfg.WatchWriteTimeout, DefaultWatchWriteTimeout)
	def(&cfg.WatchPruneInterval, DefaultWatchPrune)
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.WatchBuffer <= 0 {
		cfg.WatchBuffer = DefaultWatchBuffer
	}
	s := &Server{cfg: cfg, log: orDiscard(cfg.Logger), metrics: newMetrics()}
	s.watchCtx, s.watchStop = context.WithCancel(context.Background())
	if cl, ok := cfg.Store.(kvs.ChangeLog); ok {
		s.hub = newHub(cl, s.log, cfg.WatchBuffer, s.metrics.watchDropped.WithLabelValues("slow_reader").Inc)
	}
	if f := cfg.CRLFetcher; f != nil {
		s.metrics.reg.MustRegister(f.Collectors()...)
	}
	audit := cfg.Audit
	if audit == nil {
		audit = s.log
	}
	tlsOpts := cfg.TLS
	if tlsOpts.Logger == nil {
		tlsOpts.Logger = s.log
	}
	tlsOpts.NoCRL = tlsOpts.NoCRL || cfg.NoCRL
	var err error
	if s.tls, err = LoadTLS(cfg.Files, tlsOpts); err != nil {
		return nil, err
	}
	if cfg.PolicyFile != "" {
		if s.policy, err = loadPolicy(cfg.PolicyFile, s.log); err != nil {
			return nil, err
		}
	}
	if cfg.refusalLogLimit <= 0 {
		cfg.refusalLogLimit = refusalLogLimit
	}
	s.refusals = newLogLimiter(s.log, "tls handshake refusals not logged", cfg.refusalLogLimit, refusalLogWindow,
		slog.Int("limit", cfg.refusalLogLimit), slog.String("metric", "kvs_tls_handshakes_refused_total"))
	s.observe = observers{
		{Handshake: s.logHandshake},
		s.metrics.observer(),
		auditObserver(audit),
		cfg.Observer,
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET "+kvs.ListPath, s.handleList)
	s.mux.HandleFunc("DELETE "+kvs.ListPath, s.handleDeletePrefix)
	s.mux.HandleFunc("POST "+kvs.TxnPath, s.handleTxn)
	s.mux.HandleFunc("GET "+kvs.SnapshotPath, s.handleSnapshot)
	s.mux.HandleFunc(kvs.TxnPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use POST")
	})
	s.mux.HandleFunc("GET "+kvs.HealthPath, s.handleHealth)
	s.mux.HandleFunc("GET "+kvs.WatchPath, s.handleWatch)
	s.mux.HandleFunc("POST "+kvs.LeasePath, s.handleLease)
	s.mux.HandleFunc("GET "+kvs.LeasePath+"/{id}", s.handleLease)
	s.mux.HandleFunc("DELETE "+kvs.LeasePath+"/{id}", s.handleLease)
	s.mux.HandleFunc("POST "+kvs.LeasePath+"/{id}/keepalive", s.handleLease)
	s.mux.HandleFunc(kvs.LeasePath+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET or DELETE /v1/lease/ID, POST /v1/lease/ID/keepalive")
	})
	s.metricsHandler = promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	s.mux.HandleFunc("GET "+kvs.MetricsPath, s.handleMetrics)
	// Other methods on those paths: 405, not the catch-all's 404.
	s.mux.HandleFunc(kvs.LeasePath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use POST")
	})
	s.mux.HandleFunc(kvs.ListPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET, or DELETE with ?prefix=")
	})
	for _, path := range []string{kvs.WatchPath, kvs.HealthPath, kvs.MetricsPath, kvs.SnapshotPath} {
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET")
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: see docs/api.md for the API")
	})
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(httpErrorLog{s.log}, "", 0),
		ConnState:         s.connState,
		ConnContext:       func(ctx context.Context, c net.Conn) context.Context { return withPeerCache(ctx, c) },
	}
	s.http.RegisterOnShutdown(s.watchStop)
	configureHTTP2(s.http)
	return s, nil
}

// Listen opens a TCP listener; ErrAddrInUse says when the address is
// taken.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s: %w", addr, ErrAddrInUse)
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// ErrAddrInUse means another process listens on the address.
var ErrAddrInUse = errors.New("the address is already in use")

// Reload re-reads the TLS files and the policy. What fails to load keeps
// its previous state, and the error says why.
func (s *Server) Reload() error {
	err := s.tls.Reload()
	if s.policy != nil {
		err = errors.Join(err, s.policy.Reload())
	}
	return err
}

// TLS returns the server's TLS material (the certificate it serves, and
// the snapshot each handshake uses).
func (s *Server) TLS() *TLS { return s.tls }

// Handler returns the server's HTTP handler, which checks the client
// certificate of every request. Run serves it; tests and benchmarks may
// bring their own listener.
func (s *Server) Handler() http.Handler { return s }

// serve accepts mutual-TLS connections on ln until ctx ends, then stops
// accepting, lets in-flight requests finish within the shutdown timeout and
// returns. It does not close the store.
func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.MaxConns > 0 {
		ln = netutil.LimitListener(ln, s.cfg.MaxConns)
	}
	tln := TLSListener(ln, s.tls.Config(), s.cfg.ReadHeaderTimeout, s.observe.handshake)
	s.http.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	shutdownErr := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		err := s.http.Shutdown(sctx)
		if err != nil {
			s.http.Close()
			err = fmt.Errorf("shutdown: in-flight requests did not finish within %s: %w", s.cfg.ShutdownTimeout, err)
		}
		shutdownErr <- err
	})
	s.log.Info("serving", "addr", ln.Addr().String(), "max_value", s.cfg.MaxValue, "max_conns", s.cfg.MaxConns, "policy", s.policy != nil)
	err := s.http.Serve(tln)
	if errors.Is(err, http.ErrServerClosed) {
		err = <-shutdownErr
		s.refusals.stop()
		return err
	}
	if stop() {
		tln.Close()
	}
	return err
}

func (s *Server) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.metrics.conns.Inc()
	case http.StateClosed, http.StateHijacked:
		s.metrics.conns.Dec()
	}
}

// ServeHTTP routes requests. A request on a connection whose client
// certificate was revoked after the handshake, or while the CRL is not
// current, is refused with 403.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		reserveStack(0)
	}
	if err := s.tls.checkRequest(r.Context(), r.TLS); err != nil {
		start := time.Now()
		msg := "client certificate no longer accepted: " + string(ReasonOf(err))
		switch {
		case errors.Is(err, ErrRevoked):
			msg = "client certificate revoked"
		case errors.Is(err, ErrCRLUnavailable):
			msg = "revocation cannot be checked: the server's CRL is not current"
		}
		s.log.Warn("request refused on an established connection", "peer", r.RemoteAddr, "reason", err)
		s.finish(r, "other", "", "", http.StatusForbidden, writeError(w, http.StatusForbidden, msg), start)
		return
	}
	if strings.HasPrefix(r.URL.Path, kvs.KeyPath) {
		s.handleKey(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// logHandshake writes one line per refused handshake, with the peer and
// the reason: up to refusalLogLimit lines a second, then one line with how
// many more there were. A client that hung up mid-handshake (eof) is only
// a debug line.
func (s *Server) logHandshake(e HandshakeEvent) {
	if e.Err == nil {
		return
	}
	level := slog.LevelWarn
	if e.Reason == ReasonEOF {
		level = slog.LevelDebug
	}
	if s.log.Enabled(context.Background(), level) && s.refusals.allow() {
		s.log.LogAttrs(context.Background(), level, "tls handshake refused",
			slog.String("peer", e.Peer), slog.String("reason", e.Err.Error()), slog.String("label", string(e.Reason)))
	}
}

// httpErrorLog routes net/http's own error log (which no longer carries
// handshake errors: the TLS listener reports those) through slog.
type httpErrorLog struct{ log *slog.Logger }

func (l httpErrorLog) Write(p []byte) (int, error) {
	l.log.Error("http server", "err", strings.TrimSpace(string(p)))
	return len(p), nil
}
