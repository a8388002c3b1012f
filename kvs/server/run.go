package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// Run serves on ln until ctx ends, the way kvsctl serve does: it reloads
// the certificates, CRL and policy on SIGHUP and, every
// Config.ReloadInterval, when their files changed (a broken file keeps the
// previous material, logged), once they have stopped changing for a moment
// (up to a second), so that an update that writes several files, such as a
// CA rotation, is loaded whole rather than half done; it serves the profiling endpoints when
// Config.Pprof is set; and when ctx ends it stops accepting and lets
// in-flight requests finish within the shutdown timeout. It closes ln, not
// the store.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	if s.cfg.Pprof != "" {
		pln, err := listenPprof(s.cfg.Pprof)
		if err != nil {
			ln.Close()
			return err
		}
		wg.Go(func() { s.servePprof(ctx, pln) })
	}
	if s.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics listener: %w", err)
		}
		wg.Go(func() { s.serveProbes(ctx, mln) })
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.log.Info("SIGHUP: reloading certificates, CRL and policy")
				_ = s.Reload()
			}
		}
	})
	if f := s.cfg.CRLFetcher; f != nil {
		wg.Go(func() { f.Run(ctx) })
	}
	defer s.watchStop()
	if l := s.leaser(); l != nil && s.cfg.SweepInterval > 0 {
		wg.Go(func() { s.sweep(ctx, l, s.cfg.SweepInterval) })
	}
	if r := s.cfg.WatchRetention; s.hub != nil && r != (kvs.Retention{}) {
		wg.Go(func() { s.pruneChanges(ctx, r) })
	}
	if s.cfg.ReloadInterval > 0 {
		rs := []reloader{s.tls}
		if s.policy != nil {
			rs = append(rs, s.policy)
		}
		wg.Go(func() { watch(ctx, s.cfg.ReloadInterval, settling{settleStep, settleMax}, rs...) })
	}
	return s.serve(ctx, ln)
}

// ErrPprofNotLoopback means a profiling address is not a loopback one.
var ErrPprofNotLoopback = errors.New("only a loopback address is allowed (127.0.0.1, ::1 or localhost): the profiling endpoints have no authentication")

// CheckPprofAddr accepts only a loopback host:port: the endpoints are
// unauthenticated and expose the process's memory.
func CheckPprofAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("profiling address %q: want host:port, like 127.0.0.1:6060", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("profiling address %q: %w", addr, ErrPprofNotLoopback)
	}
	return nil
}

// listenPprof listens on addr, a loopback address.
func listenPprof(addr string) (net.Listener, error) {
	if err := CheckPprofAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("profiling listener: %w", err)
	}
	return ln, nil
}

// servePprof serves net/http/pprof on ln until ctx ends.
func (s *Server) servePprof(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	s.log.Warn("profiling endpoints enabled", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("pprof listener stopped", "err", err)
	}
}

// serveProbes serves, in plain HTTP on ln until ctx ends, what monitoring
// and load balancers ask for without a client certificate: /metrics
// (Prometheus), /healthz (the process is up) and /readyz (the store answers,
// the server's certificate and every CRL are current). It serves no key
// data.
func (s *Server) serveProbes(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("GET "+kvs.MetricsPath, s.metricsHandler)
	mux.HandleFunc("GET "+kvs.HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	s.log.Info("serving metrics and probes", "url", "http://"+ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("metrics listener stopped", "err", err)
	}
}

// ready says why the server could not serve a request now, or nil.
func (s *Server) ready(ctx context.Context) error {
	if err := s.tls.Ready(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", kvs.ErrUnavailable)
	}
	return nil
}

// pruneChanges keeps the change log within r until ctx ends. Servers
// sharing a database may all prune: pruning twice forgets nothing more.
func (s *Server) pruneChanges(ctx context.Context, r kvs.Retention) {
	t := time.NewTicker(s.cfg.WatchPruneInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		if _, err := s.hub.log.Prune(pctx, r); err != nil && ctx.Err() == nil {
			s.log.Warn("pruning the change log failed", "retention", r.String(), "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
