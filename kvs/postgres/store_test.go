package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/kvstest"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// openStore opens a store on db in schema, with a small pool (the server is
// shared), and closes it when the test ends.
func openStore(t testing.TB, db, schema string, opts postgres.Options) *postgres.Store {
	t.Helper()
	opts.Schema = schema
	if opts.MaxConns == 0 {
		opts.MaxConns = 4
	}
	s, err := postgres.Open(t.Context(), db, opts)
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	return s
}

func TestPostgresStore(t *testing.T) {
	db := pgtest.Database(t)
	kvstest.Run(t, func(t *testing.T) kvs.Store {
		return openStore(t, db, pgtest.Schema(t, db), postgres.Options{})
	})
}

func TestPostgresStorePersistence(t *testing.T) {
	db := pgtest.Database(t)
	kvstest.RunPersistence(t, func(t *testing.T) func() (kvs.Store, error) {
		opts := postgres.Options{Schema: pgtest.Schema(t, db), MaxConns: 2}
		return func() (kvs.Store, error) { return postgres.Open(t.Context(), db, opts) }
	})
}

// TestPostgresConcurrentOpen starts four stores at once on a new schema:
// the advisory lock must make the migration run exactly once.
func TestPostgresConcurrentOpen(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	const n = 4
	stores := make([]kvs.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(t.Context(), db, postgres.Options{Schema: schema, MaxConns: 2})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("OpenStore %d: %v", i, errs[i])
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows, distinct int
	err = conn.QueryRow(t.Context(), fmt.Sprintf(`SELECT count(*), count(DISTINCT version) FROM %s.kvs_schema_version`,
		pgx.Identifier{schema}.Sanitize())).Scan(&rows, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if rows == 0 || rows != distinct {
		t.Errorf("kvs_schema_version has %d rows for %d versions", rows, distinct)
	}
	v, err := stores[0].Put(t.Context(), "k", []byte("x"), kvs.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := stores[3].Get(t.Context(), "k"); err != nil || e.Version != v {
		t.Errorf("Get through another store = %+v, %v", e, err)
	}
}

// TestPostgresCASAcrossPools checks If-Match between two servers sharing
// one database.
func TestPostgresCASAcrossPools(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	a := openStore(t, db, schema, postgres.Options{MaxConns: 2})
	defer a.Close()
	b := openStore(t, db, schema, postgres.Options{MaxConns: 2})
	defer b.Close()
	ctx := t.Context()

	v1, err := a.Put(ctx, "k", []byte("a1"), kvs.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := b.Put(ctx, "k", []byte("b1"), kvs.Cond{IfVersion: v1})
	if err != nil {
		t.Fatalf("CAS through b with a's version: %v", err)
	}
	if _, err := a.Put(ctx, "k", []byte("a2"), kvs.Cond{IfVersion: v1}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("stale CAS through a err = %v, want ErrPrecondition", err)
	}
	if err := a.Delete(ctx, "k", kvs.Cond{IfVersion: v1}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("stale Delete through a err = %v, want ErrPrecondition", err)
	}
	if _, err := b.Put(ctx, "k", []byte("x"), kvs.Cond{CreateOnly: true}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("CreateOnly through b err = %v, want ErrPrecondition", err)
	}
	if e, err := a.Get(ctx, "k"); err != nil || string(e.Value) != "b1" || e.Version != v2 {
		t.Errorf("Get through a = %q version %d, %v; want b1 version %d", e.Value, e.Version, err, v2)
	}
}

// TestPostgresStatementTimeout holds a row lock so that a Put waits: the
// server's statement_timeout must end it with ErrUnavailable, and the pool
// must stay usable.
func TestPostgresStatementTimeout(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	s := openStore(t, db, schema, postgres.Options{StatementTimeout: 300 * time.Millisecond, MaxConns: 2})
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Put(ctx, "locked", []byte("x"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT 1 FROM %s.kv WHERE key = 'locked' FOR UPDATE`, pgx.Identifier{schema}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Put(ctx, "locked", []byte("y"), kvs.Cond{})
	if !errors.Is(err, kvs.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put on a locked row err = %v, want ErrUnavailable (statement timeout)", err)
	}
	if strings.Contains(err.Error(), "INSERT") {
		t.Errorf("error shows SQL: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Put waited %v with a 300ms statement timeout", d) // a hang check, not a benchmark
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "locked", []byte("z"), kvs.Cond{}); err != nil {
		t.Errorf("Put after the lock is released: %v", err)
	}
}

// TestPostgresOutage puts a TCP proxy between the store and PostgreSQL and
// cuts it two ways: a hung server (bytes stop flowing) and a dead one
// (connections refused). Requests must fail with ErrUnavailable within
// about the statement timeout, and the pool must recover by itself.
func TestPostgresOutage(t *testing.T) {
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
	s := openStore(t, u.String(), pgtest.Schema(t, db), postgres.Options{StatementTimeout: 300 * time.Millisecond, MaxConns: 2})
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Put(ctx, "k", []byte("x"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}

	failsQuickly := func(what string) {
		t.Helper()
		start := time.Now()
		_, err := s.Get(ctx, "k")
		if !errors.Is(err, kvs.ErrUnavailable) {
			t.Errorf("%s: Get err = %v, want ErrUnavailable", what, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: Get took %v with a 300ms statement timeout", what, d) // a hang check
		}
		if err := s.Ping(ctx); !errors.Is(err, kvs.ErrUnavailable) {
			t.Errorf("%s: Ping err = %v, want ErrUnavailable", what, err)
		}
	}
	recovers := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := s.Get(ctx, "k")
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: store did not recover: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	p.Freeze()
	failsQuickly("hung server")
	p.Thaw()
	recovers("after the hang")

	p.Stop()
	failsQuickly("dead server")
	p.Restart()
	recovers("after restart")
	if _, err := s.Put(ctx, "k", []byte("y"), kvs.Cond{}); err != nil {
		t.Errorf("Put after recovery: %v", err)
	}
}

// TestPostgresURLNotShown checks that errors never show the password.
func TestPostgresURLNotShown(t *testing.T) {
	const pw = "s3cr3t-Pw"
	for _, raw := range []string{
		"postgres://kvs:" + pw + "@127.0.0.1:1/kvs?connect_timeout=2",   // refused
		"postgresql://kvs:" + pw + "@127.0.0.1:1/kvs?connect_timeout=2", // refused
		"postgres://kvs:" + pw + "@127.0.0.1:notaport/kvs",              // bad port
		"postgres://kvs:" + pw + "@[::1/kvs",                            // unparsable
		"postgres://kvs:" + pw + "@127.0.0.1/kvs?sslmode=bogus",         // bad setting
	} {
		_, err := postgres.Open(t.Context(), raw, postgres.Options{StatementTimeout: time.Second})
		if err == nil {
			t.Errorf("OpenStore succeeded on %s", strings.ReplaceAll(raw, pw, "xxx"))
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
		t.Logf("%v", err)
	}
	_, err := postgres.Open(t.Context(), "postgres://kvs:"+pw+"@127.0.0.1:1/kvs", postgres.Options{StatementTimeout: time.Second})
	if !errors.Is(err, kvs.ErrUnavailable) {
		t.Errorf("connection refused: err = %v, want ErrUnavailable", err)
	}
}

func TestPostgresBadSchemaName(t *testing.T) {
	for _, schema := range []string{"a-b", "1abc", `x"; DROP SCHEMA public; --`, strings.Repeat("s", 64)} {
		_, err := postgres.Open(t.Context(), "postgres://u@127.0.0.1:1/db", postgres.Options{Schema: schema})
		if err == nil || !strings.Contains(err.Error(), "invalid schema name") {
			t.Errorf("Schema %q: err = %v, want invalid schema name", schema, err)
		}
	}
}

func BenchmarkPostgresGet(b *testing.B) {
	db := pgtest.Database(b)
	s := openStore(b, db, pgtest.Schema(b, db), postgres.Options{})
	defer s.Close()
	if _, err := s.Put(b.Context(), "bench/key", make([]byte, 256), kvs.Cond{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(b.Context(), "bench/key"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPostgresPut(b *testing.B) {
	db := pgtest.Database(b)
	s := openStore(b, db, pgtest.Schema(b, db), postgres.Options{})
	defer s.Close()
	value := make([]byte, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Put(b.Context(), fmt.Sprintf("bench/%d", i%1000), value, kvs.Cond{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPostgresWatch(t *testing.T) {
	db := pgtest.Database(t)
	open := func(t *testing.T) kvs.Store {
		return openStore(t, db, pgtest.Schema(t, db), postgres.Options{MaxConns: 4})
	}
	kvstest.RunWatch(t, open)
	kvstest.RunChangeLog(t, open)
}

// TestPostgresLease runs the lease suite on the database's clock: it
// sleeps through the TTLs.
func TestPostgresLease(t *testing.T) {
	db := pgtest.Database(t)
	kvstest.RunLease(t, func(t *testing.T) (kvs.Store, func(time.Duration)) {
		return openStore(t, db, pgtest.Schema(t, db), postgres.Options{MaxConns: 4}), time.Sleep
	})
}
