package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/pki"
)

// TestServePostgresTLS follows docs/postgres-tls.md with the commands it
// shows: one PKI for kvsctl serve and for its PostgreSQL, the store URL
// with sslmode=verify-full and the kvs client certificate, a renewal of
// that certificate and the revocation of the old one while serve runs.
// The serve process is never restarted; after its database sessions are
// ended, every new one presents the renewed certificate.
func TestServePostgresTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	for _, args := range [][]string{
		{"pki", "init", "--dir", dir},
		{"pki", "issue", "server", "postgres", "--hosts", "127.0.0.1,localhost", "--dir", dir},
		{"pki", "issue", "client", "kvs", "--dir", dir},
	} {
		if code, _, stderr := execKV(t, nil, args...); code != 0 {
			t.Fatalf("kvsctl %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	d := pki.Dir(dir)
	c := pgtest.TLSCluster(t, dir)
	store := "postgres://kvs@" + c.Addr() + "/kvs?sslmode=verify-full&sslrootcert=" + d.CACert() +
		"&sslcert=" + d.IssuedCert("kvs") + "&sslkey=" + d.IssuedKey("kvs")
	srv := startServeCLI(t, dir, "--store", store, "--pool-size", "2")
	kv := func(args ...string) string {
		t.Helper()
		code, out, stderr := execKV(t, nil, append([]string{args[0], "--dir", dir, "--server", srv.server}, args[1:]...)...)
		if code != 0 {
			t.Fatalf("kvsctl %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return out
	}
	kv("put", "greeting", "hello over verify-full")
	if got := kv("get", "greeting"); got != "hello over verify-full" {
		t.Fatalf("get: %q", got)
	}
	if got := kv("list"); !strings.Contains(got, "greeting") {
		t.Fatalf("list: %q", got)
	}
	kv("delete", "greeting")
	if log := srv.stderr.String(); !strings.Contains(log, "sslkey="+d.IssuedKey("kvs")) || strings.Contains(log, "PRIVATE KEY") {
		t.Errorf("the start-up lines should show the store URL with its key's path, and no key:\n%s", log)
	}

	old, err := pki.LoadCert(d.IssuedCert("kvs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"pki", "renew", d.IssuedCert("kvs"), "--dir", dir},
		{"pki", "revoke", pki.SerialHex(old), "--dir", dir},
	} {
		if code, _, stderr := execKV(t, nil, args...); code != 0 {
			t.Fatalf("kvsctl %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	renewed, err := pki.LoadCert(d.IssuedCert("kvs"))
	if err != nil {
		t.Fatal(err)
	}
	c.Reload(t) // PostgreSQL reads the new crl.pem

	// End serve's sessions, as the docs advise after a revocation: the old
	// certificate's sessions would otherwise last until the pool retires
	// them. The pool reconnects with the files as they are now.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, c.Superuser("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_ssl WHERE client_serial = $1::numeric", old.SerialNumber.String()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // pgxpool pings a connection idle for over a second before using it
	kv("put", "after-renewal", "still serving")
	if got := kv("get", "after-renewal"); got != "still serving" {
		t.Fatalf("get after the renewal: %q", got)
	}
	rows, err := admin.Query(ctx, "SELECT s.client_serial::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'kvs'")
	if err != nil {
		t.Fatal(err)
	}
	serials, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(serials) == 0 {
		t.Fatal("serve has no database session")
	}
	for _, s := range serials {
		if s != renewed.SerialNumber.String() {
			t.Errorf("a session of serve presents serial %s, want the renewed %s (old %s)", s, renewed.SerialNumber, old.SerialNumber)
		}
	}
	reloaded := false
	for line := range strings.Lines(srv.stderr.String()) {
		if strings.Contains(line, "postgres tls files reloaded for new connections") {
			reloaded = true
			t.Logf("serve: %s", strings.TrimSpace(line))
		}
	}
	if !reloaded {
		t.Errorf("serve did not log the reload:\n%s", srv.stderr.String())
	}
}
