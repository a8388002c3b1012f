package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// TestMetricsListen: the plain-HTTP listener serves /metrics, /healthz and
// /readyz to anyone, and nothing else (no key data); /readyz fails while a
// CRL is expired.
func TestMetricsListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := testPKI(t, false)
	var skew atomic.Int64
	ts := startServer(t, d, nil, func(c *Config) {
		c.MetricsListen = addr
		c.TLS.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	if _, err := newTestClient(t, d, ts.addr, nil).Put(t.Context(), "secret/k", []byte("value"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		t.Helper()
		var resp *http.Response
		waitFor(t, 5*time.Second, "the metrics listener", func() bool {
			resp, err = http.Get("http://" + addr + path)
			return err == nil
		})
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "kvs_requests_total") {
		t.Errorf("/metrics: %d %.80q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	for _, path := range []string{"/v1/kv/secret/k", "/v1/kv?prefix=", "/debug/pprof/"} {
		if code, body := get(path); code != 404 || strings.Contains(body, "value") {
			t.Errorf("%s on the metrics listener: %d %q, want 404", path, code, body)
		}
	}
	skew.Store(int64(30 * 24 * time.Hour)) // past the CRL's NextUpdate
	code, body := get("/readyz")
	var r map[string]string
	_ = json.Unmarshal([]byte(body), &r)
	if code != 503 || !strings.Contains(r["reason"], "CRL") {
		t.Errorf("/readyz with an expired CRL: %d %q", code, body)
	}
}
