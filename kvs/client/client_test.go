package client_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/kvstest"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
)

// newPKI makes a CA-mode PKI with fast keys for the servers of a test.
func newPKI(t *testing.T) pki.Dir {
	t.Helper()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(t.Context(), pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	return d
}

// serve runs a real server for store on 127.0.0.1 over mutual TLS until
// the test ends, and returns a client of it.
func serve(t *testing.T, d pki.Dir, store kvs.Store) *client.Client {
	t.Helper()
	sf, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Files: sf, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		store.Close()
	})
	cf, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c, err := client.New(client.Config{Server: "localhost:" + port, Files: cf, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientOverBolt runs the Store conformance suite through the client
// against a real server on a bolt store: what the suite checks of a store
// must hold the same over the wire.
func TestClientOverBolt(t *testing.T) {
	d := newPKI(t)
	kvstest.Run(t, func(t *testing.T) kvs.Store {
		s, err := bolt.Open(t.Context(), filepath.Join(t.TempDir(), "kvs.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return serve(t, d, s)
	})
}

// TestClientOverPostgres is the same through a server on PostgreSQL.
func TestClientOverPostgres(t *testing.T) {
	db := pgtest.Database(t)
	d := newPKI(t)
	kvstest.Run(t, func(t *testing.T) kvs.Store {
		s, err := postgres.Open(t.Context(), db, postgres.Options{Schema: pgtest.Schema(t, db), MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		return serve(t, d, s)
	})
}
