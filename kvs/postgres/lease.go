package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs"
)

// Leases (migration 0003) live in kv_leases, with deadlines on the
// database's clock; a key bound to one carries its id and deadline in
// kv.lease and kv.expires, and every read and condition treats a key whose
// deadline passed as missing. Sweep deletes such keys, logging an expire
// change each, under a transaction-level advisory lock so that one server
// sweeps at a time (another that finds the lock taken skips its turn, and
// nothing depends on which server sweeps: the deadlines are in the
// database). Rows are also taken FOR UPDATE SKIP LOCKED, so a sweep never
// waits behind a write of the same key.
const (
	pgSweepLockClass = 0x6b7674 // "kvt"

	sqlLeaseFor = `SELECT deadline FROM kv_leases WHERE id = $1 AND deadline > now() FOR SHARE`

	sqlGrant = `INSERT INTO kv_leases (id, ttl_us, deadline, owner)
VALUES (nextval('kv_lease_id'), $1::bigint, now() + $1::bigint * interval '1 microsecond', $2) RETURNING id`

	sqlKeepAlive = `UPDATE kv_leases SET deadline = now() + ttl_us * interval '1 microsecond'
WHERE id = $1 AND deadline > now() RETURNING ttl_us, deadline, owner`

	sqlLeaseKeysMove = `UPDATE kv SET expires = $2 WHERE lease = $1 AND expires > now()`

	sqlLeaseInfo = `SELECT ttl_us, extract(epoch FROM deadline - now()) * 1e6, owner FROM kv_leases
WHERE id = $1 AND deadline > now()`

	sqlLeaseKeys = `SELECT key FROM kv WHERE lease = $1 AND expires > now() ORDER BY key LIMIT $2`

	sqlRevokeLease = `DELETE FROM kv_leases WHERE id = $1 AND deadline > now() RETURNING id`

	sqlRevokeKeys = `WITH d AS (DELETE FROM kv WHERE lease = $1 AND expires > now() RETURNING key)
INSERT INTO kv_changes (rev, key, kind) SELECT nextval('kv_revision'), key, 'd' FROM d`

	sqlSweepKeys = `WITH d AS (DELETE FROM kv WHERE key IN (
    SELECT key FROM kv WHERE expires <= now() ORDER BY expires LIMIT $1 FOR UPDATE SKIP LOCKED)
  AND expires <= now() RETURNING key)
INSERT INTO kv_changes (rev, key, kind) SELECT nextval('kv_revision'), key, 'e' FROM d`

	sqlSweepLeases = `DELETE FROM kv_leases WHERE deadline <= now()`
)

var _ kvs.Leaser = (*Store)(nil)

// pgLease is the lease a write binds its key to.
type pgLease struct {
	id       int64
	deadline time.Time
}

// args are the statement parameters of l: NULLs for none.
func (l pgLease) args() (any, any) {
	if l.id == 0 {
		return nil, nil
	}
	return l.id, l.deadline
}

// Grant implements kvs.Leaser.
func (s *Store) Grant(ctx context.Context, ttl time.Duration, owner string) (kvs.Lease, error) {
	if err := kvs.CheckTTL(ttl); err != nil {
		return kvs.Lease{}, err
	}
	if err := kvs.CtxErr(ctx, "postgres grant lease"); err != nil {
		return kvs.Lease{}, err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var id int64
	if err := s.pool.QueryRow(qctx, sqlGrant, ttl.Microseconds(), owner).Scan(&id); err != nil {
		return kvs.Lease{}, s.fail(ctx, "postgres grant lease", err)
	}
	return kvs.Lease{ID: id, TTL: ttl, Remaining: ttl, Owner: owner}, nil
}

// KeepAlive implements kvs.Leaser.
func (s *Store) KeepAlive(ctx context.Context, id int64) (kvs.Lease, error) {
	if err := kvs.CtxErr(ctx, "postgres keep lease alive"); err != nil {
		return kvs.Lease{}, err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var l kvs.Lease
	err := pgx.BeginFunc(qctx, s.pool, func(tx pgx.Tx) error {
		var ttlUS int64
		var deadline time.Time
		if err := tx.QueryRow(qctx, sqlKeepAlive, id).Scan(&ttlUS, &deadline, &l.Owner); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return kvs.ErrLeaseNotFound
			}
			return err
		}
		if _, err := tx.Exec(qctx, sqlLeaseKeysMove, id, deadline); err != nil {
			return err
		}
		l.ID, l.TTL = id, time.Duration(ttlUS)*time.Microsecond
		l.Remaining = l.TTL
		return nil
	})
	if errors.Is(err, kvs.ErrLeaseNotFound) {
		return kvs.Lease{}, kvs.ErrLeaseNotFound
	}
	if err != nil {
		return kvs.Lease{}, s.fail(ctx, "postgres keep lease alive", err)
	}
	return l, nil
}

// Revoke implements kvs.Leaser.
func (s *Store) Revoke(ctx context.Context, id int64) error {
	if err := kvs.CtxErr(ctx, "postgres revoke lease"); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := pgx.BeginFunc(qctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(qctx, sqlRevokeLease, id).Scan(new(int64)); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return kvs.ErrLeaseNotFound
			}
			return err
		}
		_, err := tx.Exec(qctx, sqlRevokeKeys, id)
		return err
	})
	if errors.Is(err, kvs.ErrLeaseNotFound) {
		return kvs.ErrLeaseNotFound
	}
	if err != nil {
		return s.fail(ctx, "postgres revoke lease", err)
	}
	return nil
}

// LeaseInfo implements kvs.Leaser.
func (s *Store) LeaseInfo(ctx context.Context, id int64) (kvs.Lease, error) {
	if err := kvs.CtxErr(ctx, "postgres lease"); err != nil {
		return kvs.Lease{}, err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	l := kvs.Lease{ID: id}
	var ttlUS int64
	var remUS float64
	if err := s.pool.QueryRow(qctx, sqlLeaseInfo, id).Scan(&ttlUS, &remUS, &l.Owner); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return kvs.Lease{}, kvs.ErrLeaseNotFound
		}
		return kvs.Lease{}, s.fail(ctx, "postgres lease", err)
	}
	l.TTL, l.Remaining = time.Duration(ttlUS)*time.Microsecond, time.Duration(remUS)*time.Microsecond
	rows, err := s.pool.Query(qctx, sqlLeaseKeys, id, kvs.MaxPageSize)
	if err != nil {
		return kvs.Lease{}, s.fail(ctx, "postgres lease", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return kvs.Lease{}, s.fail(ctx, "postgres lease", err)
	}
	l.Keys = keys
	return l, nil
}

// PutLease implements kvs.Leaser.
func (s *Store) PutLease(ctx context.Context, key string, value []byte, c kvs.Cond, lease int64) (int64, error) {
	if lease == 0 {
		return s.Put(ctx, key, value, c)
	}
	if err := kvs.ValidateKey(key); err != nil {
		return 0, err
	}
	if err := kvs.CtxErr(ctx, "postgres put"); err != nil {
		return 0, err
	}
	if !c.Satisfiable() {
		return 0, kvs.ErrPrecondition
	}
	if value == nil {
		value = []byte{}
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var version int64
	err := pgx.BeginFunc(qctx, s.pool, func(tx pgx.Tx) error {
		// FOR SHARE: a Revoke of the lease waits for this Put, which then
		// sees the lease gone or has bound its key before the Revoke runs.
		l := pgLease{id: lease}
		if err := tx.QueryRow(qctx, sqlLeaseFor, lease).Scan(&l.deadline); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return kvs.ErrLeaseNotFound
			}
			return err
		}
		var err error
		version, err = putTx(qctx, tx, key, value, c, l)
		return err
	})
	switch {
	case errors.Is(err, kvs.ErrLeaseNotFound), errors.Is(err, kvs.ErrPrecondition):
		return 0, err
	case err != nil:
		return 0, s.fail(ctx, "postgres put", err)
	}
	return version, nil
}

// Sweep implements kvs.Leaser.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if err := kvs.CtxErr(ctx, "postgres sweep"); err != nil {
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n := 0
	err := pgx.BeginFunc(qctx, s.pool, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(qctx, `SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))`, pgSweepLockClass).Scan(&got); err != nil {
			return err
		}
		if !got {
			return nil // another server sweeps
		}
		tag, err := tx.Exec(qctx, sqlSweepKeys, kvs.MaxPageSize)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		_, err = tx.Exec(qctx, sqlSweepLeases)
		return err
	})
	if err != nil {
		return 0, s.fail(ctx, "postgres sweep", fmt.Errorf("%w", err))
	}
	return n, nil
}
