package server

// End-to-end tests of the HTTP API over mutual TLS: statuses of good and
// bad requests (and that bad ones change nothing), the policy, keys and
// values that must round-trip exactly, the audit log, /healthz and
// /metrics.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/pki"
)

// snapshot is every key of a store with its version and value.
func snapshot(t *testing.T, s kvs.Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	after := ""
	for {
		keys, next, err := s.List(ctx, "", after, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			e, err := s.Get(ctx, k.Key)
			if err != nil {
				t.Fatal(err)
			}
			out[k.Key] = fmt.Sprintf("v%d:%q", e.Version, e.Value)
		}
		if next == "" {
			return out
		}
		after = next
	}
}

func TestE2EAPIStatuses(t *testing.T) {
	for _, http1 := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2", true: "http1"}[http1], func(t *testing.T) {
			d := testPKI(t, false)
			ts := startServer(t, d, nil, func(c *Config) { c.MaxValue = 1024 })
			hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), http1)
			base := serverURL(ts.addr)
			do := func(method, path string, hdr map[string]string, body io.Reader) (*http.Response, []byte) {
				t.Helper()
				req, err := http.NewRequest(method, base+path, body)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, b
			}

			resp, body := do("PUT", "/v1/kv/k", nil, strings.NewReader("v1"))
			if resp.StatusCode != 200 || !regexp.MustCompile(`^\{"key":"k","version":\d+\}\n$`).Match(body) {
				t.Fatalf("PUT: %d %s", resp.StatusCode, body)
			}
			etag := resp.Header.Get("ETag")
			resp, body = do("GET", "/v1/kv/k", nil, nil)
			if resp.StatusCode != 200 || string(body) != "v1" || resp.Header.Get("ETag") != etag ||
				resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
			}
			before := snapshot(t, ts.store)

			big := strings.Repeat("x", 1025)
			for _, tc := range []struct {
				name, method, path string
				hdr                map[string]string
				body               io.Reader
				want               int
			}{
				{"If-Match stale", "PUT", "/v1/kv/k", map[string]string{"If-Match": `"999999"`}, strings.NewReader("no"), 412},
				{"If-None-Match on an existing key", "PUT", "/v1/kv/k", map[string]string{"If-None-Match": "*"}, strings.NewReader("no"), 412},
				{"If-Match on a missing key", "PUT", "/v1/kv/missing", map[string]string{"If-Match": etag}, strings.NewReader("no"), 412},
				{"If-Match not a version", "PUT", "/v1/kv/k", map[string]string{"If-Match": `"abc"`}, strings.NewReader("no"), 400},
				{"If-None-Match other than *", "PUT", "/v1/kv/k", map[string]string{"If-None-Match": `"1"`}, strings.NewReader("no"), 400},
				{"If-Match with If-None-Match", "PUT", "/v1/kv/new", map[string]string{"If-Match": etag, "If-None-Match": "*"}, strings.NewReader("no"), 400},
				{"DELETE If-Match stale", "DELETE", "/v1/kv/k", map[string]string{"If-Match": `"999999"`}, nil, 412},
				{"DELETE If-None-Match", "DELETE", "/v1/kv/k", map[string]string{"If-None-Match": "*"}, nil, 400},
				{"DELETE missing", "DELETE", "/v1/kv/missing", nil, nil, 404},
				{"GET missing", "GET", "/v1/kv/missing", nil, nil, 404},
				{"empty key", "PUT", "/v1/kv/", nil, strings.NewReader("no"), 400},
				{"NUL in key", "PUT", "/v1/kv/a%00b", nil, strings.NewReader("no"), 400},
				{"invalid UTF-8 key", "PUT", "/v1/kv/a%FFb", nil, strings.NewReader("no"), 400},
				{"key too long", "PUT", "/v1/kv/" + strings.Repeat("k", kvs.MaxKeyLen+1), nil, strings.NewReader("no"), 400},
				{"value too large", "PUT", "/v1/kv/big", nil, strings.NewReader(big), 413},
				{"value too large, chunked", "PUT", "/v1/kv/big", nil, io.MultiReader(strings.NewReader(big)), 413},
				{"PATCH", "PATCH", "/v1/kv/k", nil, strings.NewReader("no"), 405},
				{"POST", "POST", "/v1/kv/k", nil, strings.NewReader("no"), 405},
				{"POST to the list", "POST", "/v1/kv", nil, strings.NewReader("no"), 405},
				{"DELETE /healthz", "DELETE", "/healthz", nil, nil, 405},
				{"list limit 0", "GET", "/v1/kv?limit=0", nil, nil, 400},
				{"list limit too big", "GET", "/v1/kv?limit=1001", nil, nil, 400},
				{"list prefix with NUL", "GET", "/v1/kv?prefix=a%00", nil, nil, 400},
				{"unknown path", "GET", "/v2/kv/k", nil, nil, 404},
			} {
				t.Run(tc.name, func(t *testing.T) {
					resp, body := do(tc.method, tc.path, tc.hdr, tc.body)
					if resp.StatusCode != tc.want {
						t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
					}
					if ct := resp.Header.Get("Content-Type"); ct != "application/json" || !bytes.HasPrefix(body, []byte(`{"error":`)) {
						t.Errorf("error answer %q (%s), want JSON {\"error\":...}", body, ct)
					}
					if tc.want == 405 && resp.Header.Get("Allow") == "" {
						t.Error("405 without Allow")
					}
				})
			}
			if after := snapshot(t, ts.store); !maps(before, after) {
				t.Errorf("bad requests changed the store:\nbefore %v\nafter  %v", before, after)
			}

			// The good paths of the same features.
			resp, _ = do("PUT", "/v1/kv/k", map[string]string{"If-Match": etag}, strings.NewReader("v2"))
			if resp.StatusCode != 200 {
				t.Errorf("If-Match current: %d", resp.StatusCode)
			}
			resp, _ = do("PUT", "/v1/kv/new", map[string]string{"If-None-Match": "*"}, strings.NewReader("n"))
			if resp.StatusCode != 200 {
				t.Errorf("If-None-Match on a new key: %d", resp.StatusCode)
			}
			resp, _ = do("PUT", "/v1/kv/big", nil, strings.NewReader(big[:1024]))
			if resp.StatusCode != 200 {
				t.Errorf("value of exactly the limit: %d", resp.StatusCode)
			}
			resp, body = do("GET", "/v1/kv?prefix=&limit=2", nil, nil)
			if resp.StatusCode != 200 || !strings.Contains(string(body), `"next":"k"`) {
				t.Errorf("list page: %d %s", resp.StatusCode, body)
			}
			resp, _ = do("DELETE", "/v1/kv/new", nil, nil)
			if resp.StatusCode != 204 {
				t.Errorf("DELETE: %d", resp.StatusCode)
			}
		})
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestE2EPolicy checks allow and deny per identity and operation, that a
// denied write writes nothing, that an identity the policy does not name
// is denied everything, and that the policy reloads (a broken file keeps
// the old one). The control server runs without a policy and allows the
// same requests.
func TestE2EPolicy(t *testing.T) {
	for _, mode := range pkiModes {
		t.Run(mode.name, func(t *testing.T) {
			d := testPKI(t, mode.selfSigned)
			path := filepath.Join(t.TempDir(), "policy.yaml")
			write := func(s string) {
				t.Helper()
				if err := pki.WriteFileAtomic(path, []byte(s), 0o644, true); err != nil {
					t.Fatal(err)
				}
			}
			write("identities:\n  client:\n    prefixes: [\"app/\"]\n    operations: [read, write, list]\n")
			ctx := context.Background()
			for _, withPolicy := range []bool{false, true} {
				t.Run(map[bool]string{false: "control-without-policy", true: "policy"}[withPolicy], func(t *testing.T) {
					ts := startServer(t, d, nil, func(c *Config) {
						if withPolicy {
							c.PolicyFile = path
						}
					})
					c := newTestClient(t, d, ts.addr, nil)
					denied := func(what string, err error) {
						t.Helper()
						if withPolicy && !(errors.Is(err, kvs.ErrForbidden) && errors.Is(err, client.ErrRejected)) {
							t.Errorf("%s: err = %v, want 403", what, err)
						}
						if !withPolicy && err != nil {
							t.Errorf("control: %s: %v", what, err)
						}
					}
					if _, err := c.Put(ctx, "app/a", []byte("1"), kvs.Cond{}); err != nil {
						t.Fatalf("allowed put: %v", err)
					}
					if e, err := c.Get(ctx, "app/a"); err != nil || string(e.Value) != "1" {
						t.Fatalf("allowed get: %q %v", e.Value, err)
					}
					if _, _, err := c.List(ctx, "app/", "", 0); err != nil {
						t.Fatalf("allowed list: %v", err)
					}
					_, err := c.Put(ctx, "other/a", []byte("x"), kvs.Cond{})
					denied("put outside the prefix", err)
					if _, err := ts.store.Get(ctx, "other/a"); withPolicy && !errors.Is(err, kvs.ErrNotFound) {
						t.Errorf("a denied put was written: %v", err)
					}
					denied("delete without the operation", c.Delete(ctx, "app/a", kvs.Cond{}))
					if _, err := ts.store.Get(ctx, "app/a"); withPolicy && err != nil {
						t.Errorf("a denied delete deleted: %v", err)
					}
					_, _, err = c.List(ctx, "", "", 0)
					denied("list of every key", err)

					if !mode.selfSigned {
						// bob holds a valid certificate of the CA but is not in
						// the policy: fail closed.
						bob, _ := issueClient(t, d, "bob-"+map[bool]string{false: "c", true: "p"}[withPolicy])
						bc := freshClient(t, ts.addr, clientTLS(t, bob, nil), false)
						_, err := bc.Put(ctx, "app/b", []byte("x"), kvs.Cond{})
						denied("an identity not in the policy", err)
						if withPolicy && err != nil && !strings.Contains(err.Error(), "not in the policy") {
							t.Errorf("denial does not say why: %v", err)
						}
					}
					if !withPolicy {
						return
					}
					// Reload: allow delete.
					write("identities:\n  client:\n    prefixes: [\"app/\"]\n    operations: [read, write, list, delete]\n")
					if err := ts.srv.Reload(); err != nil {
						t.Fatal(err)
					}
					if err := c.Delete(ctx, "app/a", kvs.Cond{}); err != nil {
						t.Errorf("delete after the policy allows it: %v", err)
					}
					// A broken policy keeps the previous one.
					write("identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read, write, everything]\n")
					if err := ts.srv.Reload(); err == nil {
						t.Fatal("a policy with an unknown operation loaded")
					}
					if _, err := c.Put(ctx, "other/b", []byte("x"), kvs.Cond{}); !errors.Is(err, kvs.ErrForbidden) {
						t.Errorf("after a broken reload: put other/b err = %v, want 403 (previous policy)", err)
					}
				})
			}
		})
	}
}

// trickyKeys must be stored and returned exactly: nothing cleans, decodes or
// interprets them on the way.
var trickyKeys = []string{
	"'; DROP TABLE kv; --",
	`"; DROP TABLE kv; --`,
	"../x",
	"a/../../b",
	"%2F",
	"a%2Fb",
	"..",
	".",
	"/leading",
	"trailing/",
	"a//b",
	`back\slash`,
	"q?x=1&y=2#frag",
	"with space",
	"plus+sign",
	"日本語/キー",
	"emoji 🎉",
	"line\nbreak",
	"\x7f\u00ad\u200b",
	"*",
}

// binaryValue holds every byte value, invalid UTF-8 and NULs.
func binaryValue() []byte {
	b := make([]byte, 0, 300)
	for i := range 256 {
		b = append(b, byte(i))
	}
	return append(b, 0, 0, 0xff, 0xfe, '\r', '\n')
}

// roundTripKeys writes every tricky key through the API and checks it
// comes back exactly, under exactly that key in the store, and lists
// exactly.
func roundTripKeys(t *testing.T, d pki.Dir, ts *testServer, http1 bool) {
	t.Helper()
	ctx := context.Background()
	c := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.HTTP1, cc.HTTP2 = http1, !http1 })
	values := map[string][]byte{}
	for i, k := range trickyKeys {
		v := append(binaryValue(), []byte(k)...)
		if i%5 == 0 {
			v = []byte{} // empty values round-trip too
		}
		values[k] = v
		if _, err := c.Put(ctx, k, v, kvs.Cond{}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	for k, v := range values {
		e, err := c.Get(ctx, k)
		if err != nil || !bytes.Equal(e.Value, v) {
			t.Errorf("get %q through the API: %d bytes, %v; want %d bytes", k, len(e.Value), err, len(v))
		}
		if e, err := ts.store.Get(ctx, k); err != nil || !bytes.Equal(e.Value, v) {
			t.Errorf("key %q is not stored under exactly that name: %v", k, err)
		}
	}
	for _, cleaned := range []string{"x", "b", "/", "a/b", "a/x", ""} {
		if cleaned == "" {
			continue
		}
		if _, err := ts.store.Get(ctx, cleaned); !errors.Is(err, kvs.ErrNotFound) {
			t.Errorf("a path trick wrote the cleaned key %q", cleaned)
		}
	}
	var listed []string
	after := ""
	for {
		keys, next, err := c.List(ctx, "", after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			listed = append(listed, k.Key)
			if k.Size != len(values[k.Key]) {
				t.Errorf("list says %q has %d bytes, want %d", k.Key, k.Size, len(values[k.Key]))
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	want := slices.Clone(trickyKeys)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("list:\n got %q\nwant %q", listed, want)
	}
	// Prefix listing with a tricky prefix.
	keys, _, err := c.List(ctx, "a/", "", 0)
	if err != nil || len(keys) != 2 {
		t.Errorf("list a/ = %v, %v; want a//b and a/../../b", keys, err)
	}
}

func TestE2EKeysRoundTrip(t *testing.T) {
	for _, http1 := range []bool{false, true} {
		t.Run("bolt/"+map[bool]string{false: "h2", true: "http1"}[http1], func(t *testing.T) {
			d := testPKI(t, false)
			roundTripKeys(t, d, startServer(t, d, nil, nil), http1)
		})
	}
	t.Run("postgres/h2", func(t *testing.T) {
		db := pgtest.Database(t)
		st := openPostgres(t, db, pgtest.Schema(t, db), postgres.Options{MaxConns: 2})
		t.Cleanup(func() { st.Close() })
		d := testPKI(t, false)
		roundTripKeys(t, d, startServer(t, d, st, nil), false)
	})
}

// TestE2EWireKeys sends raw escaped paths, as curl or another client
// would, and checks which key they address.
func TestE2EWireKeys(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, nil)
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), true)
	for _, tc := range []struct{ path, key string }{
		{"/v1/kv/..%2Fx", "../x"},
		{"/v1/kv/a%2F..%2F..%2Fb", "a/../../b"},
		{"/v1/kv/%252F", "%2F"},
		{"/v1/kv/a/b", "a/b"},
		{"/v1/kv/%E6%97%A5%E6%9C%AC", "日本"},
		{"/v1/kv/';%20DROP%20TABLE%20kv;%20--", "'; DROP TABLE kv; --"},
	} {
		req, _ := http.NewRequest("PUT", serverURL(ts.addr)+tc.path, strings.NewReader(tc.path))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("PUT %s: %d", tc.path, resp.StatusCode)
			continue
		}
		if e, err := ts.store.Get(context.Background(), tc.key); err != nil || string(e.Value) != tc.path {
			t.Errorf("PUT %s did not write key %q: %v", tc.path, tc.key, err)
		}
	}
}

// TestE2EAuditLog checks the audit line of each operation: identity,
// serial, operation, key, status, sizes, duration, peer; never the value.
func TestE2EAuditLog(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, nil)
	c := newTestClient(t, d, ts.addr, nil)
	ctx := context.Background()
	const secret = "TOP-SECRET-VALUE-3141"
	if _, err := c.Put(ctx, "audit/k", []byte(secret), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "audit/k"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "audit/k", []byte(secret), kvs.Cond{CreateOnly: true}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "audit/k", kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	cert, err := pki.LoadCert(d.ClientCert())
	if err != nil {
		t.Fatal(err)
	}
	recs := logRecords(t, ts, "request")
	want := []struct {
		op     string
		status float64
	}{{"put", 200}, {"get", 200}, {"put", 412}, {"delete", 204}}
	if len(recs) != len(want) {
		t.Fatalf("%d audit lines, want %d: %v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		for k, v := range map[string]any{"identity": "client", "serial": pki.SerialHex(cert), "op": want[i].op, "key": "audit/k", "status": want[i].status} {
			if r[k] != v {
				t.Errorf("audit line %d: %s = %v, want %v", i, k, r[k], v)
			}
		}
		for _, k := range []string{"bytes_in", "bytes_out", "duration", "peer"} {
			if _, ok := r[k]; !ok {
				t.Errorf("audit line %d has no %s: %v", i, k, r)
			}
		}
	}
	if recs[0]["bytes_in"] != float64(len(secret)) || recs[1]["bytes_out"] != float64(len(secret)) {
		t.Errorf("sizes: put in %v, get out %v; want %d", recs[0]["bytes_in"], recs[1]["bytes_out"], len(secret))
	}
	if strings.Contains(ts.Logs(), secret) {
		t.Error("the log shows the value")
	}
}

// metricValue reads one sample from the Prometheus text format.
func metricValue(text, sample string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func TestE2EHealthAndMetrics(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, nil)
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := hc.Get(serverURL(ts.addr) + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("/healthz: %d %s", code, body)
	}
	get("/v1/kv/missing")
	_, before := get("/metrics")
	// Counters with labels appear once they have a sample: the refusal
	// counter below, the store error counter in the PostgreSQL outage test.
	for _, name := range []string{
		"kvs_requests_total", "kvs_request_duration_seconds_bucket", "kvs_open_connections", "go_goroutines",
	} {
		if !strings.Contains(before, "# TYPE "+name) && !strings.Contains(before, name+"{") {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if metricValue(before, `kvs_requests_total{code="404",op="get"}`) != 1 {
		t.Errorf("requests counter: %v", metricValue(before, `kvs_requests_total{code="404",op="get"}`))
	}

	// A rogue client without a certificate moves the refusal counter.
	const sample = `kvs_tls_handshakes_refused_total{reason="no_certificate"}`
	n0 := metricValue(before, sample)
	rogue := freshClient(t, ts.addr, clientTLS(t, clientFiles(t, d), func(c *tls.Config) { c.Certificates = nil }), false)
	expectRejected(t, "no certificate", rogue.Ping(context.Background()))
	waitFor(t, 5*time.Second, "the refusal counter to move", func() bool {
		_, m := get("/metrics")
		return metricValue(m, sample) > n0
	})
}
