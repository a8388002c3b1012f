package loadgen

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/kvs/server/servertest"
	"github.com/kvsctl/kvsctl/pki"
)

// testEnv is a PKI with a kvs server on a bolt store and a bare server,
// both on 127.0.0.1 with the same TLS configuration.
type testEnv struct {
	client pki.Files
	kvs    string // host:port of the kvs server
	bare   string // host:port of the bare server
}

func startEnv(t *testing.T) *testEnv {
	t.Helper()
	d := servertest.PKI(t, false)
	sf, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, d, server.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.ServeBare(ctx, ln, sf, server.TLSOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bare server: %v", err)
		}
	})
	return &testEnv{client: cf, kvs: srv.Addr, bare: ln.Addr().String()}
}

func (e *testEnv) config(addr string) Config {
	return Config{
		Client:   client.Config{Server: addr, Files: e.client, Timeout: 10 * time.Second},
		Clients:  4,
		Keys:     50,
		Requests: 200,
	}
}

func TestRun(t *testing.T) {
	e := startEnv(t)
	for _, tc := range []struct {
		name   string
		server string
		mutate func(*Config)
		check  func(*testing.T, *Result)
	}{
		{"get", "kvs", func(c *Config) { c.Preload = true }, nil},
		{"put", "kvs", func(c *Config) { c.Op = OpPut }, nil},
		{"list", "kvs", func(c *Config) { c.Op = OpList; c.Preload = true }, nil},
		{"mixed", "kvs", func(c *Config) { c.Op = OpMixed; c.Mix = Mix{Get: 1, Put: 1}; c.Preload = true }, func(t *testing.T, r *Result) {
			if r.ByOp[OpGet] == 0 || r.ByOp[OpPut] == 0 || r.Mix != "get=1,put=1" {
				t.Errorf("mixed run did not mix: %v %q", r.ByOp, r.Mix)
			}
		}},
		{"http1", "kvs", func(c *Config) { c.Client.HTTP1 = true; c.Preload = true }, func(t *testing.T, r *Result) {
			if r.Protocol != "http/1.1" {
				t.Errorf("protocol %q, want http/1.1", r.Protocol)
			}
		}},
		{"h2", "kvs", func(c *Config) { c.Client.HTTP2 = true; c.Preload = true }, func(t *testing.T, r *Result) {
			if r.Protocol != "h2" || r.Handshakes != 4 {
				t.Errorf("protocol %q with %d handshakes, want h2 with one per client", r.Protocol, r.Handshakes)
			}
		}},
		{"new-conn resumed", "kvs", func(c *Config) { c.Client.NewConn = true; c.Client.HTTP1 = true; c.Preload = true }, func(t *testing.T, r *Result) {
			if r.Handshakes != r.Requests || r.Resumed < r.Handshakes-int64(r.Clients) {
				t.Errorf("%d requests made %d handshakes, %d resumed: want one each, all but the first resumed", r.Requests, r.Handshakes, r.Resumed)
			}
		}},
		{"new-conn full", "kvs", func(c *Config) {
			c.Client.NewConn, c.Client.HTTP1, c.Client.TLS.NoResume, c.Preload = true, true, true, true
		}, func(t *testing.T, r *Result) {
			if r.Handshakes != r.Requests || r.Resumed != 0 || r.Resume {
				t.Errorf("%d requests made %d handshakes, %d resumed: want one full handshake each", r.Requests, r.Handshakes, r.Resumed)
			}
		}},
		{"bare get", "bare", nil, nil},
		{"bare put", "bare", func(c *Config) { c.Op = OpPut }, nil},
		{"bare list", "bare", func(c *Config) { c.Op = OpList }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := e.kvs
			if tc.server == "bare" {
				addr = e.bare
			}
			cfg := e.config(addr)
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 0 || r.OK != cfg.Requests || r.Requests != cfg.Requests {
				t.Fatalf("ok %d, errors %v (%s), want %d ok", r.OK, r.ErrorKind, r.FirstError, cfg.Requests)
			}
			if r.RPS <= 0 || r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
				t.Fatalf("implausible figures: %+v", r)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestRunDurationAndProgress(t *testing.T) {
	e := startEnv(t)
	cfg := e.config(e.kvs)
	cfg.Requests, cfg.Duration = 0, 300*time.Millisecond
	cfg.Op = OpPut
	cfg.ProgressInterval = 50 * time.Millisecond
	var calls int
	cfg.Progress = func(p Progress) { calls++ }
	start := time.Now()
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a 300ms run took %s", took)
	}
	if r.OK == 0 || r.Errors != 0 || calls == 0 {
		t.Fatalf("ok %d errors %v progress calls %d", r.OK, r.ErrorKind, calls)
	}
}

func TestRunCountsErrorsByKind(t *testing.T) {
	e := startEnv(t)
	// The keys were never written: every GET is a 404.
	r, err := Run(context.Background(), e.config(e.kvs))
	if err != nil {
		t.Fatal(err)
	}
	if r.ErrorKind["not_found"] != 200 || r.OK != 0 || r.FirstError == "" {
		t.Fatalf("errors %v, ok %d, first %q: want 200 not_found", r.ErrorKind, r.OK, r.FirstError)
	}
	// Nothing listens on a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := e.config(addr)
	cfg.Requests = 10
	r, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.ErrorKind["conn_refused"] != 10 {
		t.Fatalf("errors %v, want 10 conn_refused", r.ErrorKind)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	e := startEnv(t)
	for name, mutate := range map[string]func(*Config){
		"both limits": func(c *Config) { c.Duration = time.Second },
		"bad op":      func(c *Config) { c.Op = "scan" },
		"no files":    func(c *Config) { c.Client.Files = pki.Files{} },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := e.config(e.kvs)
			mutate(&cfg)
			if _, err := Run(context.Background(), cfg); err == nil {
				t.Fatal("Run accepted a bad configuration")
			}
		})
	}
}

func TestHold(t *testing.T) {
	e := startEnv(t)
	for _, http1 := range []bool{false, true} {
		h, err := Hold(context.Background(), HoldConfig{
			Client: client.Config{Server: e.kvs, Files: e.client, HTTP1: http1, HTTP2: !http1},
			Conns:  20,
		})
		if err != nil {
			t.Fatal(err)
		}
		if h.Len() != 20 {
			t.Fatalf("holding %d connections, want 20", h.Len())
		}
		h.Close()
	}
}

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mix
		ok   bool
	}{
		{"get=90,put=10", Mix{Get: 90, Put: 10}, true},
		{" get = 1 , list=2 ", Mix{Get: 1, List: 2}, true},
		{"put=5", Mix{Put: 5}, true},
		{"get=0,put=0", Mix{}, false},
		{"get=x", Mix{}, false},
		{"scan=1", Mix{}, false},
		{"get=-1,put=2", Mix{}, false},
		{"get", Mix{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			m, err := ParseMix(tc.in)
			if (err == nil) != tc.ok || m != tc.want {
				t.Fatalf("ParseMix(%q) = %+v, %v", tc.in, m, err)
			}
		})
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.9, 9000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}} {
		got := h.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff > 0.016 || diff < -0.016 {
			t.Errorf("q%.2f = %s, want %s within 1.6%%", tc.q, got, tc.want)
		}
	}
	if h.max != int64(10*time.Millisecond) || h.mean() != 5000500*time.Nanosecond {
		t.Errorf("max %d mean %s", h.max, h.mean())
	}
	// Every bucket's value maps back to the bucket.
	for i := range histBuckets - histHalf {
		if j := histIndex(histValue(i)); j != i {
			t.Fatalf("bucket %d: value %d maps to bucket %d", i, histValue(i), j)
		}
	}
}

func TestErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&client.StatusError{Code: 404}, "not_found"},
		{&client.StatusError{Code: 412}, "precondition"},
		{&client.StatusError{Code: 403}, "rejected"},
		{&client.StatusError{Code: 503}, "unavailable"},
		{&client.StatusError{Code: 500}, "http_500"},
		{context.DeadlineExceeded, "timeout"},
	} {
		if got := ErrorKind(tc.err); got != tc.want {
			t.Errorf("ErrorKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestPgbenchScript(t *testing.T) {
	getSQL, _ := postgres.Statement("get")
	putSQL, _ := postgres.Statement("put")
	get, err := PgbenchScript(OpGet, getSQL, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(get, `\set k random(10000000, 10000099)`) || !strings.Contains(get, "FROM kv WHERE key = :k AND (expires IS NULL OR expires > now());") {
		t.Errorf("get script:\n%s", get)
	}
	put, err := PgbenchScript(OpPut, putSQL, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(put, "VALUES (:k, :v, nextval('kv_revision'), now())") || strings.Contains(put, "$") {
		t.Errorf("put script:\n%s", put)
	}
	if _, err := PgbenchScript(OpList, getSQL, 100); err == nil {
		t.Error("list has no pgbench script")
	}
}
