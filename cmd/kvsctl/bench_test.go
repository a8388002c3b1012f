package main

import (
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs/loadgen"
)

// startBare runs 'kvsctl bench bare-server' in-process on 127.0.0.1:0
// until the test ends and returns its localhost:port.
func startBare(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"kvsctl", "bench", "bare-server", "--dir", dir, "--listen", "127.0.0.1:0"}, strings.NewReader(""), &lockedBuffer{}, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if c := <-done; c != 0 {
			t.Errorf("bare server exited %d: %s", c, stderr.String())
		}
	})
	re := regexp.MustCompile(`listening on 127\.0\.0\.1:(\d+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return "localhost:" + m[1]
		}
	}
	t.Fatalf("bare server did not start: %s", stderr.String())
	return ""
}

func TestBenchCommand(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	bare := startBare(t, dir)
	common := []string{"--dir", dir, "--clients", "3", "--keys", "20", "--requests", "60", "--quiet"}
	for _, tc := range []struct {
		name   string
		server string
		args   []string
		check  func(*testing.T, *loadgen.Result)
	}{
		{"get preload", srv.server, []string{"--preload", "--op", "get"}, nil},
		{"put http1", srv.server, []string{"--op", "put", "--http1"}, func(t *testing.T, r *loadgen.Result) {
			if r.Protocol != "http/1.1" {
				t.Errorf("protocol %q", r.Protocol)
			}
		}},
		{"mixed", srv.server, []string{"--preload", "--op", "mixed", "--mix", "get=1,list=1"}, func(t *testing.T, r *loadgen.Result) {
			if r.ByOp["get"] == 0 || r.ByOp["list"] == 0 {
				t.Errorf("by op %v", r.ByOp)
			}
		}},
		{"full handshakes", srv.server, []string{"--preload", "--new-conn", "--no-resume", "--http1"}, func(t *testing.T, r *loadgen.Result) {
			if r.Handshakes != r.Requests || r.Resumed != 0 {
				t.Errorf("%d requests, %d handshakes, %d resumed", r.Requests, r.Handshakes, r.Resumed)
			}
		}},
		{"resumed handshakes", srv.server, []string{"--preload", "--new-conn", "--http1"}, func(t *testing.T, r *loadgen.Result) {
			if r.Handshakes != r.Requests || r.Resumed == 0 {
				t.Errorf("%d requests, %d handshakes, %d resumed", r.Requests, r.Handshakes, r.Resumed)
			}
		}},
		{"bare get", bare, []string{"--op", "get"}, nil},
		{"bare put", bare, []string{"--op", "put"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"bench", "--server", tc.server, "--json"}, common...), tc.args...)
			code, out, errs := execKV(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var r loadgen.Result
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("--json output: %v\n%s", err, out)
			}
			if r.OK != 60 || r.Errors != 0 || r.RPS <= 0 {
				t.Fatalf("ok %d errors %v (%s)", r.OK, r.ErrorKind, r.FirstError)
			}
			if tc.check != nil {
				tc.check(t, &r)
			}
		})
	}

	t.Run("summary", func(t *testing.T) {
		code, out, errs := execKV(t, nil, "bench", "--server", srv.server, "--dir", dir, "--clients", "3", "--requests", "60", "--op", "put", "--quiet")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		for _, want := range []string{"throughput", "requests/s", "latency", "p50", "p90", "p99", "max", "handshakes", "60 ok, 0 errors"} {
			if !strings.Contains(out, want) {
				t.Errorf("summary lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("errors by kind", func(t *testing.T) {
		// A new server with an empty store: every GET is a 404.
		empty := startServeCLI(t, dir)
		code, out, errs := execKV(t, nil, "bench", "--server", empty.server, "--dir", dir, "--clients", "3", "--requests", "30", "--quiet")
		if code != exitFailure || !strings.Contains(errs, "every request failed") {
			t.Errorf("exit %d: %s", code, errs)
		}
		if !strings.Contains(out, "not_found 30") {
			t.Errorf("summary lacks the errors by kind:\n%s", out)
		}
	})

	t.Run("progress", func(t *testing.T) {
		code, _, errs := execKV(t, nil, "bench", "--server", srv.server, "--dir", dir, "--clients", "2", "--duration", "1500ms", "--op", "put")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if !strings.Contains(errs, "req/s") {
			t.Errorf("no progress line on stderr: %q", errs)
		}
	})

	t.Run("every request failed", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		code, _, errs := execKV(t, nil, "bench", "--server", addr, "--dir", dir, "--requests", "5", "--quiet")
		if code != exitFailure || !strings.Contains(errs, "every request failed") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})
}

func TestBenchUsageErrors(t *testing.T) {
	dir := kvPKI(t, false)
	for _, args := range [][]string{
		{"--op", "scan"},
		{"--mix", "get=1"},
		{"--op", "mixed", "--mix", "get=0"},
		{"--duration", "1s", "--requests", "10"},
		{"--clients", "0"},
		{"--keys", "0"},
		{"--value-size", "-1"},
		{"--cert", "x.crt"},
		{"extra-argument"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, errs := execKV(t, nil, append([]string{"bench", "--dir", dir}, args...)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d: %s", code, exitUsage, errs)
			}
			if !strings.HasPrefix(errs, "kvsctl: ") {
				t.Errorf("error not in the kvsctl: form: %q", errs)
			}
		})
	}
}

func TestBenchHelpers(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	code, out, errs := execKV(t, nil, "bench", "hold", "--dir", dir, "--server", srv.server, "--conns", "10", "--for", "10ms")
	if code != 0 || !strings.Contains(out, "holding 10 connections") {
		t.Errorf("hold: exit %d: %s %s", code, out, errs)
	}
	code, out, errs = execKV(t, nil, "bench", "pgbench-script", "--op", "put", "--keys", "5")
	if code != 0 || !strings.Contains(out, `\set k random(10000000, 10000004)`) || !strings.Contains(out, "INSERT INTO kv") {
		t.Errorf("pgbench-script: exit %d: %s %s", code, out, errs)
	}
	if code, _, _ := execKV(t, nil, "bench", "pgbench-script", "--op", "list"); code != exitUsage {
		t.Errorf("pgbench-script --op list: exit %d, want %d", code, exitUsage)
	}
}
