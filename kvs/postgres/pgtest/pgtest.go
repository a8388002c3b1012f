// Package pgtest gives tests a real PostgreSQL to run against: the URL from
// KVS_TEST_DATABASE and a fresh schema per test that is dropped when the
// test ends, so tests run in parallel and leave nothing behind.
//
// Without KVS_TEST_DATABASE a test that asks for the database skips with a
// loud message; under CI=true it fails instead, because there a missing
// database is a broken pipeline rather than a choice. Only tests import
// this package.
//
// TLSCluster (cluster.go) instead starts a private server of the test's
// own, with initdb and pg_ctl, that accepts only TLS connections with a
// client certificate of a kvsctl PKI; without the server binaries it skips
// loudly, or fails under CI=true, the same way. Proxy (proxy.go) forwards
// TCP to a server, for outage tests.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the variable that holds the test database's URL.
const EnvVar = "KVS_TEST_DATABASE"

// loudSkip prints the missing-database warning once per test binary, on
// stderr, where go test shows it even without -v.
var loudSkip sync.Once

// Database returns $KVS_TEST_DATABASE. Without it the test skips loudly,
// or fails under CI=true.
func Database(t testing.TB) string {
	t.Helper()
	if db := os.Getenv(EnvVar); db != "" {
		return db
	}
	const msg = EnvVar + " is not set: PostgreSQL tests NOT RUN " +
		"(e.g. " + EnvVar + "=postgres://postgres@127.0.0.1:5432/test)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true requires them")
	}
	loudSkip.Do(func() { fmt.Fprintln(os.Stderr, "!!! "+msg+" !!!") })
	t.Skip("!!! " + msg + " !!!")
	return ""
}

// Schema returns a fresh schema name and drops the schema (if something
// created it) when the test ends.
func Schema(t testing.TB, db string) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "kvstest_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if err := DropSchema(context.Background(), db, schema); err != nil {
			t.Errorf("%v", err)
		}
	})
	return schema
}

// DropSchema drops schema and everything in it.
func DropSchema(ctx context.Context, db, schema string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	return nil
}

// NewDatabase creates a database of its own on the server of
// $KVS_TEST_DATABASE, for a program that works in the public schema (a
// kvsctl serve started as a user would), and drops it when the test ends.
// It returns the new database's URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	db := Database(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "kvstest_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(db)
	if err != nil {
		t.Fatalf("%s: %v", EnvVar, err)
	}
	u.Path = "/" + name
	return u.String()
}
