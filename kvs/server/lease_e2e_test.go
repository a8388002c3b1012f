package server

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// TestE2ELeaseAcrossServers: two servers on one PostgreSQL with their
// sweepers stopped. A key put with ?ttl= through A disappears for GET and
// LIST through B at its deadline (PostgreSQL's clock), before any sweep;
// the sweep then reaches a watcher on B as an expire event. A keep-alive
// through B extends a lease granted through A (without a policy any client
// may use any lease).
func TestE2ELeaseAcrossServers(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	d := testPKI(t, false)
	noSweep := func(c *Config) { c.SweepInterval = -1 }
	storeA := openPostgres(t, db, schema, postgres.Options{MaxConns: 4})
	a := newTestClient(t, d, startServer(t, d, storeA, noSweep).addr, nil)
	b := newTestClient(t, d, startServer(t, d, openPostgres(t, db, schema, postgres.Options{MaxConns: 4}), noSweep).addr, nil)
	ctx := t.Context()

	st, err := b.Watch(ctx, "ttl/", kvs.WatchFromNow)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, err := a.PutTTL(ctx, "ttl/short", []byte("x"), kvs.Cond{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := a.Grant(ctx, 2*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutLease(ctx, "ttl/kept", []byte("k"), kvs.Cond{}, ls.ID); err != nil {
		t.Fatal(err)
	}
	if e, err := b.Get(ctx, "ttl/short"); err != nil || e.Version != v {
		t.Fatalf("b reads the TTL key before its deadline: %+v, %v", e, err)
	}
	for range 3 {
		time.Sleep(900 * time.Millisecond)
		if _, err := b.KeepAlive(ctx, ls.ID); err != nil {
			t.Fatalf("keep-alive through b: %v", err)
		}
	}
	if _, err := b.Get(ctx, "ttl/short"); !errors.Is(err, kvs.ErrNotFound) {
		t.Fatalf("b reads the TTL key after its deadline, sweepers stopped: %v", err)
	}
	keys, _, err := b.List(ctx, "ttl/", "", 0)
	if err != nil || len(keys) != 1 || keys[0].Key != "ttl/kept" {
		t.Fatalf("b lists %v, %v; want only ttl/kept (kept alive)", keys, err)
	}
	if n, err := storeA.(kvs.Leaser).Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v; want the one expired key", n, err)
	}
	for _, want := range []struct {
		typ kvs.EventType
		key string
	}{{kvs.EventPut, "ttl/short"}, {kvs.EventPut, "ttl/kept"}, {kvs.EventExpire, "ttl/short"}} {
		e, err := st.Next()
		if err != nil || e.Type != want.typ || e.Key != want.key {
			t.Fatalf("watch on b: %+v, %v; want %s %s", e, err, want.typ, want.key)
		}
	}
}

// TestE2ELeasePolicy: a lease belongs to the identity that granted it;
// another may not bind keys to it, keep it alive, show or revoke it (403),
// and nobody puts a TTL key outside their prefixes. The negative control
// is the owner doing the same.
func TestE2ELeasePolicy(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) {
		c.PolicyFile = writePolicy(t, "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n  eve:\n    prefixes: [\"eve/\"]\n    operations: [read, write, list]\n  reader:\n    prefixes: [\"\"]\n    operations: [read]\n")
	})
	ctx := t.Context()
	owner := newTestClient(t, d, ts.addr, nil)
	eve := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.Files = signLeaf(t, d, "eve", nil) })
	reader := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.Files = signLeaf(t, d, "reader", nil) })
	ls, err := owner.Grant(ctx, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.PutLease(ctx, "client/svc", []byte("x"), kvs.Cond{}, ls.ID); err != nil {
		t.Fatalf("the owner binds a key: %v", err)
	}
	for name, err := range map[string]error{
		"bind":      func() error { _, err := eve.PutLease(ctx, "eve/x", []byte("x"), kvs.Cond{}, ls.ID); return err }(),
		"keepalive": func() error { _, err := eve.KeepAlive(ctx, ls.ID); return err }(),
		"show":      func() error { _, err := eve.LeaseInfo(ctx, ls.ID); return err }(),
		"revoke":    eve.Revoke(ctx, ls.ID),
		"ttl put":   func() error { _, err := eve.PutTTL(ctx, "client/y", []byte("y"), kvs.Cond{}, time.Minute); return err }(),
		"grant":     func() error { _, err := reader.Grant(ctx, time.Minute, ""); return err }(),
	} {
		if !errors.Is(err, kvs.ErrForbidden) {
			t.Errorf("eve/reader %s: %v, want 403", name, err)
		}
	}
	if _, err := owner.Get(ctx, "client/svc"); err != nil {
		t.Fatalf("eve's refused revoke deleted the owner's key: %v", err)
	}
	// Negative control: eve's own lease, in her prefix, and the owner's revoke.
	mine, err := eve.Grant(ctx, time.Minute, "")
	if err != nil {
		t.Fatalf("eve grants: %v", err)
	}
	if _, err := eve.PutLease(ctx, "eve/x", []byte("x"), kvs.Cond{}, mine.ID); err != nil {
		t.Fatalf("eve binds her key to her lease: %v", err)
	}
	if err := owner.Revoke(ctx, ls.ID); err != nil {
		t.Fatalf("the owner revokes: %v", err)
	}
	if _, err := owner.Get(ctx, "client/svc"); !errors.Is(err, kvs.ErrNotFound) {
		t.Fatalf("after the revoke: %v", err)
	}
	// Bad input on the lease endpoints.
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/v1/lease", `{"ttl":"0s"}`, "ttl 0s must be from"},
		{"POST", "/v1/lease", `{"ttl":"banana"}`, "must be a duration"},
		{"POST", "/v1/lease", `{"ttl":"30s","extra":1}`, "the body must be"},
		{"POST", "/v1/lease?x=1", `{"ttl":"30s"}`, "unknown parameter"},
		{"GET", "/v1/lease/abc", "", "lease id must be a number"},
		{"GET", "/v1/lease/999999", "", "lease not found"},
		{"PUT", "/v1/kv/k?ttl=1s&lease=1", "v", "ttl or lease, not both"},
		{"PUT", "/v1/kv/k?bogus=1", "v", "unknown parameter"},
	} {
		req, _ := http.NewRequest(tc.method, serverURL(ts.addr)+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s: %d %s, want an error saying %q", tc.method, tc.path, resp.StatusCode, body, tc.want)
		}
	}
}
