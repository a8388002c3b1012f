package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs"
)

var _ kvs.Snapshotter = (*Store)(nil)

// pgSnapshotFetch is how many rows each FETCH of a snapshot's cursor
// takes: memory is bounded by that many rows, whatever the table's size.
const pgSnapshotFetch = 1000

// Snapshot implements kvs.Snapshotter with one REPEATABLE READ, READ ONLY
// transaction that reads the table through a cursor, pgSnapshotFetch rows
// at a time. It runs without statement_timeout (a large store takes longer
// than one statement may) and ends with ctx. The revision is the last one
// drawn when the snapshot began: every version in the snapshot is at most
// that, and every write acknowledged before the snapshot began is in it;
// a write that drew a lower revision but committed after the snapshot
// began is not.
func (s *Store) Snapshot(ctx context.Context, begin func(kvs.SnapshotHeader) error, each func(kvs.SnapshotEntry) error) error {
	if err := kvs.CtxErr(ctx, "postgres snapshot"); err != nil {
		return err
	}
	var cbErr error
	err := func() error {
		tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
		// The first statement takes the transaction's snapshot; the
		// revision read in it is at least every version the snapshot holds.
		h := kvs.SnapshotHeader{Store: "postgres"}
		if err := tx.QueryRow(ctx, `SELECT set_config('statement_timeout', '0', true),
  (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM kv_revision), now()`).Scan(new(string), &h.Revision, &h.Time); err != nil {
			return err
		}
		h.Time = h.Time.UTC()
		if cbErr = begin(h); cbErr != nil {
			return cbErr
		}
		if _, err := tx.Exec(ctx, `DECLARE kvs_snapshot NO SCROLL CURSOR FOR SELECT key, value, version, updated FROM kv ORDER BY key`); err != nil {
			return err
		}
		fetch := fmt.Sprintf("FETCH FORWARD %d FROM kvs_snapshot", pgSnapshotFetch)
		for {
			rows, err := tx.Query(ctx, fetch)
			if err != nil {
				return err
			}
			n := 0
			var e kvs.SnapshotEntry
			for rows.Next() {
				n++
				if err := rows.Scan(&e.Key, &e.Value, &e.Version, &e.Updated); err != nil {
					rows.Close()
					return err
				}
				e.Updated = e.Updated.UTC()
				if cbErr = each(e); cbErr != nil {
					rows.Close()
					return cbErr
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if n < pgSnapshotFetch {
				return nil
			}
		}
	}()
	if cbErr != nil {
		return cbErr
	}
	if err != nil {
		return s.fail(ctx, "postgres snapshot", err)
	}
	return nil
}

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// Force replaces the keys of a store that holds some (without it
	// Restore returns kvs.ErrNotEmpty).
	Force bool
	// Progress, when set, is called every 10,000 keys with the keys
	// restored so far.
	Progress func(keys int64)
}

// Restore writes the snapshot src into the store, in one transaction that
// holds the table locked: a COPY of every key, with its version and time,
// then the revision set to the snapshot's (or kept, when the store had
// drawn a higher one, so that no version is ever drawn twice). It commits
// only once src has been read to its verified end, so on any error the
// store is left as it was. A store that holds keys is refused with
// kvs.ErrNotEmpty unless opts.Force is set, which replaces them. Servers
// on the store should be stopped: they would wait on the lock.
func (s *Store) Restore(ctx context.Context, src kvs.SnapshotSource, opts RestoreOptions) (int64, error) {
	if err := kvs.CtxErr(ctx, "restore postgres store"); err != nil {
		return 0, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, s.fail(ctx, "restore postgres store", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', '0', true), set_config('lock_timeout', '5s', true)`); err != nil {
		return 0, s.fail(ctx, "restore postgres store", err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE kv IN ACCESS EXCLUSIVE MODE`); err != nil {
		return 0, s.fail(ctx, "restore postgres store: lock the table (is a server using it?)", err)
	}
	var full bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kv)`).Scan(&full); err != nil {
		return 0, s.fail(ctx, "restore postgres store", err)
	}
	if full {
		if !opts.Force {
			return 0, fmt.Errorf("restore postgres store: it holds keys: %w", kvs.ErrNotEmpty)
		}
		if _, err := tx.Exec(ctx, `TRUNCATE kv`); err != nil {
			return 0, s.fail(ctx, "restore postgres store", err)
		}
	}
	var (
		n      int64
		srcErr error
	)
	rows := pgx.CopyFromFunc(func() ([]any, error) {
		e, err := src.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err == nil && e.Lease != 0 {
			err = fmt.Errorf("key %q has a lease: %w: this store keeps no leases", e.Key, kvs.ErrInvalidTxn)
		}
		if err != nil {
			srcErr = err
			return nil, err
		}
		n++
		if opts.Progress != nil && n%10000 == 0 {
			opts.Progress(n)
		}
		return []any{e.Key, e.Value, e.Version, e.Updated}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"kv"}, []string{"key", "value", "version", "updated"}, rows); err != nil {
		if srcErr != nil {
			return 0, fmt.Errorf("restore postgres store: %w", srcErr)
		}
		return 0, s.fail(ctx, "restore postgres store", err)
	}
	rev := src.Header().Revision
	if rev > 0 {
		if _, err := tx.Exec(ctx, `SELECT setval('kv_revision', greatest($1::bigint,
  (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM kv_revision)))`, rev); err != nil {
			return 0, s.fail(ctx, "restore postgres store", err)
		}
	}
	// The change log and the leases of what was replaced are gone: a watch
	// from before the restore answers 410 Gone.
	if _, err := tx.Exec(ctx, `TRUNCATE kv_changes, kv_leases`); err != nil {
		return 0, s.fail(ctx, "restore postgres store", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE kv_compacted SET rev = (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM kv_revision)`); err != nil {
		return 0, s.fail(ctx, "restore postgres store", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, s.fail(ctx, "restore postgres store", err)
	}
	if opts.Progress != nil {
		opts.Progress(n)
	}
	return n, nil
}
