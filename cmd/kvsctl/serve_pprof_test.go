package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
)

func TestStartPprof(t *testing.T) {
	if f := pprofFlag(); f.Name != "pprof" || f.Value != "" {
		t.Errorf("--pprof must be off by default: %+v", f)
	}
	log := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:6060", ":6060", "example.com:6060", "nonsense"} {
		if err := startPprof(t.Context(), addr, log); err == nil {
			t.Errorf("--pprof %s accepted: only loopback addresses may serve the profiler", addr)
		} else if exitCode(err) != exitUsage {
			t.Errorf("--pprof %s: exit code %d, want %d", addr, exitCode(err), exitUsage)
		}
	}
	if err := startPprof(t.Context(), "", log); err != nil {
		t.Fatalf("no --pprof: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := startPprof(ctx, addr, log); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("pprof answered %d %q", resp.StatusCode, body)
	}
}
