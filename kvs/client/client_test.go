package client_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/kvstest"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/kvs/server/servertest"
)

// TestClientOverBolt runs the Store conformance suite through the client
// against a real server on a bolt store: what the suite checks of a store
// must hold the same over the wire.
func TestClientOverBolt(t *testing.T) {
	d := servertest.PKI(t, false)
	kvstest.Run(t, func(t *testing.T) kvs.Store {
		s, err := bolt.Open(t.Context(), filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return servertest.Start(t, d, server.Config{Store: s}).Client(t, d, nil)
	})
}

// TestClientOverPostgres is the same through a server on PostgreSQL.
func TestClientOverPostgres(t *testing.T) {
	db := pgtest.Database(t)
	d := servertest.PKI(t, false)
	kvstest.Run(t, func(t *testing.T) kvs.Store {
		s, err := postgres.Open(t.Context(), db, postgres.Options{Schema: pgtest.Schema(t, db), MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		return servertest.Start(t, d, server.Config{Store: s}).Client(t, d, nil)
	})
}

// TestClientWatchOverBolt runs the watch conformance suite through the
// client's server-sent events against a server on bolt.
func TestClientWatchOverBolt(t *testing.T) {
	d := servertest.PKI(t, false)
	kvstest.RunWatch(t, func(t *testing.T) kvs.Store {
		s, err := bolt.Open(t.Context(), filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return servertest.Start(t, d, server.Config{Store: s}).Client(t, d, nil)
	})
}

// TestClientWatchOverPostgres is the same through a server on PostgreSQL.
func TestClientWatchOverPostgres(t *testing.T) {
	db := pgtest.Database(t)
	d := servertest.PKI(t, false)
	kvstest.RunWatch(t, func(t *testing.T) kvs.Store {
		s, err := postgres.Open(t.Context(), db, postgres.Options{Schema: pgtest.Schema(t, db), MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		return servertest.Start(t, d, server.Config{Store: s}).Client(t, d, nil)
	})
}

// TestClientLeaseOverBolt runs the lease suite through the client against
// a server on bolt (whose sweeper runs), sleeping through the TTLs.
func TestClientLeaseOverBolt(t *testing.T) {
	d := servertest.PKI(t, false)
	kvstest.RunLease(t, func(t *testing.T) (kvs.Store, func(time.Duration)) {
		s, err := bolt.Open(t.Context(), filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return servertest.Start(t, d, server.Config{Store: s}).Client(t, d, nil), time.Sleep
	})
}

// TestClientLeaseOverPostgres is the same through a server on PostgreSQL.
func TestClientLeaseOverPostgres(t *testing.T) {
	db := pgtest.Database(t)
	d := servertest.PKI(t, false)
	kvstest.RunLease(t, func(t *testing.T) (kvs.Store, func(time.Duration)) {
		s, err := postgres.Open(t.Context(), db, postgres.Options{Schema: pgtest.Schema(t, db), MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		return servertest.Start(t, d, server.Config{Store: s}).Client(t, d, nil), time.Sleep
	})
}
