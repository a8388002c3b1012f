package server

// End-to-end tests of servers on PostgreSQL: two servers on one database
// behave as one store, compare-and-swap included; a database that hangs or
// goes away under a running server gives 503 within the statement timeout,
// and the server recovers by itself without losing an acknowledged write.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

func TestE2ETwoServersOnePostgres(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	d := testPKI(t, false)
	var clients [2]*client.Client
	for i := range clients {
		st := openPostgres(t, db, schema, postgres.Options{MaxConns: 3})
		t.Cleanup(func() { st.Close() })
		ts := startServer(t, d, st, nil)
		clients[i] = newTestClient(t, d, ts.addr, nil)
	}
	a, b := clients[0], clients[1]
	ctx := context.Background()

	va, err := a.Put(ctx, "shared", []byte("from a"), kvs.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := b.Get(ctx, "shared"); err != nil || string(e.Value) != "from a" || e.Version != va {
		t.Fatalf("b reads %q v%d, %v; want a's write v%d", e.Value, e.Version, err, va)
	}
	vb, err := b.Put(ctx, "shared", []byte("from b"), kvs.Cond{IfVersion: va})
	if err != nil {
		t.Fatalf("CAS through b with a's version: %v", err)
	}
	if _, err := a.Put(ctx, "shared", []byte("stale"), kvs.Cond{IfVersion: va}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("stale CAS through a: %v, want 412", err)
	}
	if _, err := a.Put(ctx, "shared", []byte("again"), kvs.Cond{CreateOnly: true}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("create-only through a on b's key: %v, want 412", err)
	}
	if err := a.Delete(ctx, "shared", kvs.Cond{IfVersion: va}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("stale delete through a: %v, want 412", err)
	}
	if err := a.Delete(ctx, "shared", kvs.Cond{IfVersion: vb}); err != nil {
		t.Errorf("delete through a with b's version: %v", err)
	}
	if _, err := b.Get(ctx, "shared"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("b still sees the key a deleted: %v", err)
	}

	// Concurrent read-modify-write increments through both servers with
	// If-Match: none may be lost.
	if _, err := a.Put(ctx, "counter", []byte("0"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 3, 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for _, c := range clients {
		for range workers {
			wg.Go(func() {
				for done := 0; done < each; {
					e, err := c.Get(ctx, "counter")
					if err != nil {
						errs <- err
						return
					}
					n, _ := strconv.Atoi(string(e.Value))
					_, err = c.Put(ctx, "counter", []byte(strconv.Itoa(n+1)), kvs.Cond{IfVersion: e.Version})
					switch {
					case err == nil:
						done++
					case !errors.Is(err, kvs.ErrPrecondition):
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e, err := b.Get(ctx, "counter")
	if err != nil || string(e.Value) != strconv.Itoa(2*workers*each) {
		t.Errorf("counter = %q, %v; want %d", e.Value, err, 2*workers*each)
	}
	keys, _, err := b.List(ctx, "", "", 0)
	if err != nil || len(keys) != 1 || keys[0].Key != "counter" {
		t.Errorf("list through b = %v, %v", keys, err)
	}
}

// TestE2EPostgresOutage runs a server whose store reaches PostgreSQL
// through the TCP proxy of store_postgres_test.go, then freezes it (a hung
// database) and stops it (a dead one).
func TestE2EPostgresOutage(t *testing.T) {
	db := pgtest.Database(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	p := pgtest.StartProxy(t, target)
	u.Host = p.Addr
	const timeout = 300 * time.Millisecond
	st := openPostgres(t, u.String(), pgtest.Schema(t, db), postgres.Options{StatementTimeout: timeout, MaxConns: 2})
	t.Cleanup(func() { st.Close() })
	d := testPKI(t, false)
	ts := startServer(t, d, st, nil)
	c := newTestClient(t, d, ts.addr, nil)
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	status := func(path string) int {
		t.Helper()
		resp, err := hc.Get(serverURL(ts.addr) + path)
		if err != nil {
			t.Fatalf("GET %s: %v (the server must stay up)", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	ctx := context.Background()

	acked := map[string]string{}
	put := func(k, v string) error {
		_, err := c.Put(ctx, k, []byte(v), kvs.Cond{})
		if err == nil {
			acked[k] = v
		}
		return err
	}
	if err := put("before", "1"); err != nil {
		t.Fatal(err)
	}

	unavailable := func(what string) {
		t.Helper()
		start := time.Now()
		_, err := c.Get(ctx, "before")
		if !errors.Is(err, kvs.ErrUnavailable) {
			t.Errorf("%s: get err = %v, want 503", what, err)
		}
		// A hang check, not a benchmark: the answer comes within about
		// the statement timeout, not the client's 10s.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: get took %v with a %v statement timeout", what, d, timeout)
		}
		if err := put("during/"+what, "x"); !errors.Is(err, kvs.ErrUnavailable) {
			t.Errorf("%s: put err = %v, want 503", what, err)
		}
		if s := status("/healthz"); s != http.StatusServiceUnavailable {
			t.Errorf("%s: /healthz = %d, want 503", what, s)
		}
		if s := status("/metrics"); s != http.StatusOK {
			t.Errorf("%s: /metrics = %d: the server must keep serving what needs no store", what, s)
		}
	}
	recovers := func(what string) {
		t.Helper()
		waitFor(t, 15*time.Second, "recovery "+what, func() bool { return c.Ping(ctx) == nil })
		if err := put("after/"+what, "y"); err != nil {
			t.Errorf("put %s: %v", what, err)
		}
	}

	p.Freeze()
	unavailable("hang")
	p.Thaw()
	recovers("hang")

	p.Stop()
	unavailable("down")
	p.Restart()
	recovers("down")

	for k, v := range acked {
		if e, err := c.Get(ctx, k); err != nil || string(e.Value) != v {
			t.Errorf("acknowledged write %s=%s lost: %q, %v", k, v, e.Value, err)
		}
	}
	resp, err := hc.Get(serverURL(ts.addr) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if v := metricValue(string(m), `kvs_store_errors_total{op="get"}`); v < 2 {
		t.Errorf("store error counter for get = %v, want at least 2", v)
	}
	if len(acked) != 3 {
		t.Errorf("acknowledged %d writes, want 3 (%v)", len(acked), acked)
	}
}
