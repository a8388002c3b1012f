package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvsctl/kvsctl/kvs"
)

// pgQuerier is what the write helpers run their statements on: a pgx.Tx
// (the statements join that transaction) or the pool (each statement is a
// transaction of its own).
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// The write helpers below are the only code that changes the kv table
// (besides the batched unconditional Puts, which run sqlUpsert itself), so
// that a transaction of several writes is made of the same statements as
// a single Put or Delete, and everything a write must record along with
// the key is written by those statements, in the caller's transaction.
// They return kvs.ErrPrecondition and kvs.ErrNotFound as outcomes and any
// other error as PostgreSQL returned it, for the caller to translate (see
// Store.fail). The key must already be valid (kvs.ValidateKey) and value
// non-nil.

// putTx stores value under key if c holds and returns the new version, or
// kvs.ErrPrecondition when c does not hold. A key whose lease expired
// counts as missing. The key is bound to l (the zero pgLease: to none).
func putTx(ctx context.Context, q pgQuerier, key string, value []byte, c kvs.Cond, l pgLease) (int64, error) {
	if !c.Satisfiable() {
		return 0, kvs.ErrPrecondition
	}
	lease, expires := l.args()
	var row pgx.Row
	switch {
	case c.CreateOnly:
		row = q.QueryRow(ctx, sqlPutCreateOnly, key, value, lease, expires)
	case c.IfVersion > 0:
		row = q.QueryRow(ctx, sqlPutIfVersion, key, value, c.IfVersion, lease, expires)
	case l.id != 0:
		row = q.QueryRow(ctx, sqlUpsertLease, key, value, lease, expires)
	default:
		row = q.QueryRow(ctx, sqlUpsert, key, value)
	}
	var version int64
	if err := row.Scan(&version); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, kvs.ErrPrecondition
		}
		return 0, err
	}
	return version, nil
}

// deleteTx removes key if c holds. It returns kvs.ErrNotFound when the key
// does not exist and kvs.ErrPrecondition when it exists but c does not
// hold.
func deleteTx(ctx context.Context, q pgQuerier, key string, c kvs.Cond) error {
	if !c.CreateOnly {
		var tag pgconn.CommandTag
		var err error
		if c.IfVersion == 0 {
			tag, err = q.Exec(ctx, sqlDelete, key)
		} else {
			tag, err = q.Exec(ctx, sqlDeleteIfVersion, key, c.IfVersion)
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		if c.IfVersion == 0 {
			return kvs.ErrNotFound
		}
	}
	// Nothing deleted: tell a missing key from a version mismatch.
	var v int64
	if err := q.QueryRow(ctx, sqlVersion, key).Scan(&v); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return kvs.ErrNotFound
		}
		return err
	}
	return kvs.ErrPrecondition
}

// Compile-time checks: both a transaction and the pool run the helpers.
var (
	_ pgQuerier = pgx.Tx(nil)
	_ pgQuerier = (*pgxpool.Pool)(nil)
)
