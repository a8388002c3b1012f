package postgres

import "github.com/jackc/pgx/v5/pgxpool"

// Pool returns the pool of s, for tests that look at its connections or
// reset them to make the next operation open a new one.
func Pool(s *Store) *pgxpool.Pool { return s.pool }

// UnsafeHead makes s read the head of its change log without the lock that
// waits for uncommitted writes: the negative control of
// TestPostgresWatchCommitOrder.
func UnsafeHead(s *Store) { s.feed.unsafe = true }
