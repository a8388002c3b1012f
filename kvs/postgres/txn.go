package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kvsctl/kvsctl/kvs"
)

var (
	_ kvs.Txner         = (*Store)(nil)
	_ kvs.PrefixDeleter = (*Store)(nil)
)

// The statements of a transaction.
const (
	// sqlTxnLock reads and locks, in key order, the existing rows of the
	// keys a transaction compares or writes: a conflicting transaction
	// waits here rather than deadlock later, and one that changed a row
	// since this transaction's snapshot makes it fail to serialize.
	sqlTxnLock = `SELECT key, value, version, updated FROM kv WHERE key = ANY($1) AND (expires IS NULL OR expires > now())
ORDER BY key FOR UPDATE`

	// sqlTxnLockChanges comes before the branch's revision is drawn: the
	// transaction must hold kv_changes from then on (see changes.go).
	sqlTxnLockChanges = `LOCK TABLE kv_changes IN ROW EXCLUSIVE MODE`

	// sqlTxnRevision draws the one revision of a branch's writes.
	sqlTxnRevision = `SELECT nextval('kv_revision')`

	// sqlTxnCurrent is the revision of a branch without writes: the last
	// one drawn.
	sqlTxnCurrent = `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM kv_revision`

	// sqlTxnPut writes a put of the branch and logs it as change $4 of
	// the branch's revision $3.
	sqlTxnPut = `WITH w AS (INSERT INTO kv (key, value, version, updated) VALUES ($1, $2, $3, now())
ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, updated = excluded.updated, lease = NULL, expires = NULL
RETURNING key, value, version)
INSERT INTO kv_changes (rev, n, key, kind, value) SELECT version, $4, key, 'p', value FROM w`

	// The deletes of a prefix are logged as changes $3 + 1, $3 + 2... of
	// revision $4, in key order; keys whose lease expired go without a
	// change (the sweep would have logged their expiry).
	sqlTxnDeletePrefixRange = `WITH d AS (DELETE FROM kv WHERE key >= $1 AND key < $2 RETURNING key, expires)
INSERT INTO kv_changes (rev, n, key, kind)
SELECT $4, $3 + row_number() OVER (ORDER BY key), key, 'd' FROM d WHERE expires IS NULL OR expires > now()`
	sqlTxnDeletePrefixFrom = `WITH d AS (DELETE FROM kv WHERE key >= $1 RETURNING key, expires)
INSERT INTO kv_changes (rev, n, key, kind)
SELECT $3, $2 + row_number() OVER (ORDER BY key), key, 'd' FROM d WHERE expires IS NULL OR expires > now()`
)

// pgTxnAttempts bounds how often Txn runs a transaction that failed to
// serialize against a concurrent one.
const pgTxnAttempts = 100

// Txn implements kvs.Txner with one SERIALIZABLE PostgreSQL transaction:
// the compared and written keys' rows are locked in key order, the
// compares evaluated, one revision drawn for the branch's writes and the
// branch sent in one pipelined batch. Several servers on one database may
// run transactions on the same keys: one that fails to serialize (or
// deadlocks) against another is rolled back and run again from the start,
// up to pgTxnAttempts times, so the compares always judge the state the
// writes replace.
func (s *Store) Txn(ctx context.Context, t kvs.Txn) (kvs.TxnResult, error) {
	if err := kvs.ValidateTxn(t, 0); err != nil {
		return kvs.TxnResult{}, err
	}
	if err := kvs.NoLeases(t); err != nil {
		return kvs.TxnResult{}, err
	}
	if err := kvs.CtxErr(ctx, "postgres txn"); err != nil {
		return kvs.TxnResult{}, err
	}
	for attempt := 1; ; attempt++ {
		res, err := s.txnOnce(ctx, t)
		if err == nil {
			return res, nil
		}
		var pgErr *pgconn.PgError
		retry := errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
		if !retry || attempt == pgTxnAttempts || ctx.Err() != nil {
			if retry {
				return kvs.TxnResult{}, fmt.Errorf("postgres txn: %w: still conflicting after %d attempts: %w", kvs.ErrUnavailable, attempt, pgErr)
			}
			return kvs.TxnResult{}, s.fail(ctx, "postgres txn", err)
		}
		// Back off a little, at random, so that the same two do not
		// collide again at once.
		wait := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
		select {
		case <-ctx.Done():
			return kvs.TxnResult{}, fmt.Errorf("postgres txn: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

func (s *Store) txnOnce(ctx context.Context, t kvs.Txn) (kvs.TxnResult, error) {
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.pool.BeginTx(qctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return kvs.TxnResult{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit

	var keys []string
	for _, c := range t.Compare {
		keys = append(keys, c.Key)
	}
	for _, ops := range [][]kvs.Op{t.Success, t.Failure} {
		for _, op := range ops {
			if op.Kind == kvs.OpPut || op.Kind == kvs.OpDelete {
				keys = append(keys, op.Key)
			}
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	cur := map[string]kvs.Entry{}
	if len(keys) > 0 {
		rows, err := tx.Query(qctx, sqlTxnLock, keys)
		if err != nil {
			return kvs.TxnResult{}, err
		}
		for rows.Next() {
			var e kvs.Entry
			if err := rows.Scan(&e.Key, &e.Value, &e.Version, &e.Updated); err != nil {
				rows.Close()
				return kvs.TxnResult{}, err
			}
			cur[e.Key] = e
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return kvs.TxnResult{}, err
		}
	}
	res := kvs.TxnResult{Succeeded: true}
	for _, c := range t.Compare {
		e, found := cur[c.Key]
		if !c.Holds(e, found) {
			res.Succeeded = false
			break
		}
	}
	ops := t.Branch(res.Succeeded)
	writes := slices.ContainsFunc(ops, kvs.Op.Writes)
	rev := sqlTxnCurrent
	if writes {
		rev = sqlTxnRevision
		if _, err := tx.Exec(qctx, sqlTxnLockChanges); err != nil {
			return kvs.TxnResult{}, err
		}
	}
	if err := tx.QueryRow(qctx, rev).Scan(&res.Revision); err != nil {
		return kvs.TxnResult{}, err
	}
	res.Results = make([]kvs.OpResult, len(ops))
	if len(ops) > 0 {
		b := &pgx.Batch{}
		for i, op := range ops {
			r := &res.Results[i]
			r.Kind, r.Key = op.Kind, op.Key
			switch op.Kind {
			case kvs.OpPut:
				value := op.Value
				if value == nil {
					value = []byte{}
				}
				r.Version = res.Revision
				b.Queue(sqlTxnPut, op.Key, value, res.Revision, int64(i)<<32)
			case kvs.OpDelete:
				b.Queue(sqlDelete, op.Key).Exec(func(tag pgconn.CommandTag) error {
					r.Deleted = tag.RowsAffected()
					return nil
				})
			case kvs.OpDeletePrefix:
				var q *pgx.QueuedQuery
				if upper, ok := prefixUpperBound(op.Key); ok {
					q = b.Queue(sqlTxnDeletePrefixRange, op.Key, upper, int64(i)<<32, res.Revision)
				} else {
					q = b.Queue(sqlTxnDeletePrefixFrom, op.Key, int64(i)<<32, res.Revision)
				}
				q.Exec(func(tag pgconn.CommandTag) error {
					r.Deleted = tag.RowsAffected()
					return nil
				})
			case kvs.OpGet:
				b.Queue(sqlGet, op.Key).Query(func(rows pgx.Rows) error {
					for rows.Next() {
						var e kvs.Entry
						if err := rows.Scan(&e.Value, &e.Version, &e.Updated); err != nil {
							return err
						}
						r.Found, r.Value, r.Version, r.Updated = true, e.Value, e.Version, e.Updated.UTC()
					}
					return rows.Err()
				})
			}
		}
		if err := tx.SendBatch(qctx, b).Close(); err != nil {
			return kvs.TxnResult{}, err
		}
	}
	if err := tx.Commit(qctx); err != nil {
		return kvs.TxnResult{}, err
	}
	return res, nil
}

// DeletePrefix implements kvs.PrefixDeleter: a transaction of one
// delete_prefix.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) (int64, error) {
	res, err := s.Txn(ctx, kvs.Txn{Success: []kvs.Op{{Kind: kvs.OpDeletePrefix, Key: prefix}}})
	if err != nil {
		return 0, err
	}
	return res.Results[0].Deleted, nil
}
