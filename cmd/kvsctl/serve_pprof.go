package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/urfave/cli/v2"
)

// pprofFlag is 'kvsctl serve --pprof ADDR': Go's profiling endpoints, for
// profiling the server under load (docs/performance.md). Off by default.
func pprofFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:  "pprof",
		Usage: "serve Go profiling endpoints (/debug/pprof/) on `ADDR`, a loopback address such as 127.0.0.1:6060; plain HTTP, no authentication",
	}
}

// startPprof serves net/http/pprof on addr until ctx ends. It refuses any
// address that is not loopback: the endpoints are unauthenticated and
// expose the process's memory. An empty addr does nothing.
func startPprof(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--pprof %q: want host:port, like 127.0.0.1:6060", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usagef("--pprof %q: only a loopback address is allowed (127.0.0.1, ::1 or localhost): the profiling endpoints have no authentication", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof listener stopped", "err", err)
		}
	}()
	log.Warn("profiling endpoints enabled", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}
