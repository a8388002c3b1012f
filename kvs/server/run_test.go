package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestPprof checks that the profiling endpoints serve only on a loopback
// address, and only while Run runs.
func TestPprof(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:6060", ":6060", "example.com:6060", "nonsense"} {
		if err := CheckPprofAddr(addr); err == nil {
			t.Errorf("pprof address %s accepted: only loopback addresses may serve the profiler", addr)
		}
	}
	if err := CheckPprofAddr("0.0.0.0:6060"); !errors.Is(err, ErrPprofNotLoopback) {
		t.Errorf("0.0.0.0:6060: %v, want ErrPprofNotLoopback", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) { c.Pprof = addr })
	var resp *http.Response
	waitFor(t, 5*time.Second, "the pprof listener", func() bool {
		resp, err = http.Get("http://" + addr + "/debug/pprof/cmdline")
		return err == nil
	})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("pprof answered %d %q", resp.StatusCode, body)
	}
	ts.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/cmdline", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Error("pprof still answers after the server stopped")
	}
}
