package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// TestPostgresWatchCommitOrder holds open a transaction that drew a
// revision, lets a later write (a higher revision) commit, and then
// commits the first: a watcher must deliver both, the lower first. The
// negative control reads the head without the lock and so delivers the
// higher revision first and never the lower one in order.
func TestPostgresWatchCommitOrder(t *testing.T) {
	db := pgtest.Database(t)
	for _, tc := range []struct {
		name   string
		unsafe bool
	}{{"locked", false}, {"unsafe", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, db, pgtest.Schema(t, db), postgres.Options{MaxConns: 6})
			defer s.Close()
			if tc.unsafe {
				postgres.UnsafeHead(s)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			start, err := s.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st, err := s.Watch(ctx, "o/", start)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()

			tx, err := postgres.Pool(s).Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background()) //nolint:errcheck // committed below
			sql, _ := postgres.Statement("put")
			var low int64
			if err := tx.QueryRow(ctx, sql, "o/low", []byte("l")).Scan(&low); err != nil {
				t.Fatal(err)
			}
			high, err := s.Put(ctx, "o/high", []byte("h"), kvs.Cond{})
			if err != nil {
				t.Fatal(err)
			}
			if high <= low {
				t.Fatalf("revisions %d then %d: want the later write higher", low, high)
			}
			got := make(chan kvs.Event, 2)
			go func() {
				for range 2 {
					e, err := st.Next()
					if err != nil {
						return
					}
					got <- e
				}
			}()
			var first kvs.Event
			select {
			case first = <-got:
			case <-time.After(700 * time.Millisecond):
			}
			commit(t, ctx, tx)
			if first.Version == 0 {
				first = recv(t, got)
			}
			if tc.unsafe {
				if first.Version != high {
					t.Fatalf("negative control: first event %+v, want the higher revision %d delivered before the lower commits", first, high)
				}
				return
			}
			second := recv(t, got)
			if first.Version != low || second.Version != high {
				t.Fatalf("events %d then %d, want %d then %d", first.Version, second.Version, low, high)
			}
		})
	}
}

func commit(t *testing.T, ctx context.Context, tx pgx.Tx) {
	t.Helper()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, ch <-chan kvs.Event) kvs.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
	}
	return kvs.Event{}
}
