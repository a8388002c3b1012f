package postgres

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kvsctl/kvsctl/kvs"
)

// The change log (migration 0002): every write statement inserts its change
// into kv_changes in the same statement, so a change is visible exactly
// when the write is.
//
// Revisions are drawn from a sequence before their transactions commit, and
// transactions commit in any order: a write that drew revision 10 may
// commit after one that drew 11. A reader that delivered 11 and went on
// after it would never see 10. So the head, the revision up to which the
// log is complete, is read under LOCK TABLE kv_changes IN SHARE MODE: every
// writer holds ROW EXCLUSIVE on kv_changes from before its statement draws a
// revision (PostgreSQL locks the tables of a statement before running it)
// until it commits, so the lock is granted only once every revision drawn
// so far is committed or rolled back, and the sequence's last value is then
// complete. The lock waits at most pgSettleLockTimeout, so that a slow
// writer never holds up the others behind a waiting reader for long; then
// the last head read so (s.settled) is used, which is complete too, only
// older. TestPostgresWatchCommitOrder holds a write open to check this.
//
// A trigger notifies the channel kvs_changes_<md5 of the schema> at the
// commit of every write, on which one connection per store listens, so
// waiters wake at once; they also poll every pgWaitPoll, in case the
// listening connection is being re-established.
const (
	pgSettleLockTimeout = "200ms"
	pgWaitPoll          = time.Second

	sqlHead = `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM kv_revision`

	sqlCompacted = `SELECT rev FROM kv_compacted`

	sqlChangesRange = `SELECT rev, n, key, kind, value FROM kv_changes
WHERE rev > $1 AND rev <= $2 AND key >= $3 AND key < $4 ORDER BY rev, n LIMIT $5`
	sqlChangesFrom = `SELECT rev, n, key, kind, value FROM kv_changes
WHERE rev > $1 AND rev <= $2 AND key >= $3 ORDER BY rev, n LIMIT $4`

	// sqlChangesRest completes a full page with the rest of its last
	// revision: a page never ends inside a revision.
	sqlChangesRest = `SELECT rev, n, key, kind, value FROM kv_changes
WHERE rev = $1 AND n > $2 AND key >= $3 AND ($4 = '' OR key < $4) ORDER BY n`
)

var (
	_ kvs.ChangeLog = (*Store)(nil)
	_ kvs.Watcher   = (*Store)(nil)
)

// changeFeed is the store's side of watches: the last settled head, and
// the listener that wakes waiters.
type changeFeed struct {
	channel string // the NOTIFY channel of the schema
	settled atomic.Int64
	unsafe  bool // tests: read the head without the lock (the negative control)

	once    sync.Once
	mu      sync.Mutex
	wake    chan struct{} // closed at the next notification
	stop    context.CancelFunc
	stopped sync.WaitGroup
}

func newChangeFeed(schema string) *changeFeed {
	sum := md5.Sum([]byte(schema))
	return &changeFeed{channel: "kvs_changes_" + hex.EncodeToString(sum[:])}
}

// wait returns a channel closed at the next notification.
func (f *changeFeed) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wake == nil {
		f.wake = make(chan struct{})
	}
	return f.wake
}

func (f *changeFeed) notify() {
	f.mu.Lock()
	if f.wake != nil {
		close(f.wake)
		f.wake = nil
	}
	f.mu.Unlock()
}

// close stops the listener, if it runs.
func (f *changeFeed) close() {
	f.mu.Lock()
	stop := f.stop
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
	f.stopped.Wait()
}

// listen starts, once, the goroutine that LISTENs for the store's
// notifications.
func (s *Store) listen() {
	f := s.feed
	f.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		f.mu.Lock()
		f.stop = cancel
		f.mu.Unlock()
		f.stopped.Add(1)
		go func() {
			defer f.stopped.Done()
			for ctx.Err() == nil {
				err := s.listenOnce(ctx)
				f.notify() // a notification may have been missed
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("postgres change notifications interrupted; retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	})
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.feed.channel}.Sanitize()); err != nil {
		return err
	}
	// This connection is spent: LISTEN state must not go back to the pool.
	defer conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // closing a connection we drop
	s.feed.notify()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		s.feed.notify()
	}
}

// settle returns the head read under the SHARE lock in tx, or ok false
// when the lock was not granted in time (tx is then aborted).
func (s *Store) settle(ctx context.Context, tx pgx.Tx) (head int64, ok bool, err error) {
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+pgSettleLockTimeout+"'"); err != nil {
		return 0, false, err
	}
	if s.feed.unsafe {
		err := tx.QueryRow(ctx, sqlHead).Scan(&head)
		return head, err == nil, err
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE kv_changes IN SHARE MODE"); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
			return 0, false, nil
		}
		return 0, false, err
	}
	if err := tx.QueryRow(ctx, sqlHead).Scan(&head); err != nil {
		return 0, false, err
	}
	for {
		old := s.feed.settled.Load()
		if head <= old || s.feed.settled.CompareAndSwap(old, head) {
			break
		}
	}
	return head, true, nil
}

// Head implements kvs.ChangeLog.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := kvs.CtxErr(ctx, "postgres head"); err != nil {
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.pool.Begin(qctx)
	if err != nil {
		return 0, s.fail(ctx, "postgres head", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	head, ok, err := s.settle(qctx, tx)
	if err != nil {
		return 0, s.fail(ctx, "postgres head", err)
	}
	if !ok {
		return s.feed.settled.Load(), nil
	}
	return head, nil
}

// Changes implements kvs.ChangeLog.
func (s *Store) Changes(ctx context.Context, prefix string, after int64, limit int) ([]kvs.Event, int64, error) {
	if err := kvs.CheckList(prefix, ""); err != nil {
		return nil, 0, err
	}
	if err := kvs.CtxErr(ctx, "postgres changes"); err != nil {
		return nil, 0, err
	}
	if limit < 1 {
		limit = kvs.MaxPageSize
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	evs, next, err := s.changes(qctx, prefix, after, limit)
	if err != nil && !errors.Is(err, kvs.ErrCompacted) && !errors.Is(err, kvs.ErrFutureRevision) {
		return nil, 0, s.fail(ctx, "postgres changes", err)
	}
	return evs, next, err
}

func (s *Store) changes(ctx context.Context, prefix string, after int64, limit int) ([]kvs.Event, int64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	head, ok, err := s.settle(ctx, tx)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		// The lock was not granted in time: read up to the last settled
		// head, in one snapshot.
		_ = tx.Rollback(ctx)
		if tx, err = s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}); err != nil {
			return nil, 0, err
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
		head = s.feed.settled.Load()
		if after > head {
			return nil, after, nil // maybe not in the future: not known yet
		}
	}
	var compacted int64
	if err := tx.QueryRow(ctx, sqlCompacted).Scan(&compacted); err != nil {
		return nil, 0, err
	}
	switch {
	case after < compacted:
		return nil, 0, &kvs.CompactedError{Requested: after, Oldest: compacted}
	case after > head:
		return nil, 0, fmt.Errorf("%w: %d is after the current revision %d", kvs.ErrFutureRevision, after, head)
	}
	upper, bounded := prefixUpperBound(prefix)
	var rows pgx.Rows
	if bounded {
		rows, err = tx.Query(ctx, sqlChangesRange, after, head, prefix, upper, limit)
	} else {
		rows, err = tx.Query(ctx, sqlChangesFrom, after, head, prefix, limit)
	}
	if err != nil {
		return nil, 0, err
	}
	out, lastN, err := scanChanges(rows, nil)
	if err != nil {
		return nil, 0, err
	}
	if len(out) == limit {
		last := out[len(out)-1].Version
		if rows, err = tx.Query(ctx, sqlChangesRest, last, lastN, prefix, upper); err != nil {
			return nil, 0, err
		}
		if out, _, err = scanChanges(rows, out); err != nil {
			return nil, 0, err
		}
		head = last
	}
	return out, head, nil
}

// scanChanges appends the changes of rows to out and returns the n of the
// last one.
func scanChanges(rows pgx.Rows, out []kvs.Event) ([]kvs.Event, int64, error) {
	defer rows.Close()
	var lastN int64
	for rows.Next() {
		var (
			e    kvs.Event
			kind byte
		)
		if err := rows.Scan(&e.Version, &lastN, &e.Key, &kind, &e.Value); err != nil {
			return nil, 0, err
		}
		switch kind {
		case 'p':
			e.Type = kvs.EventPut
			if e.Value == nil {
				e.Value = []byte{}
			}
		case 'd':
			e.Type, e.Value = kvs.EventDelete, nil
		case 'e':
			e.Type, e.Value = kvs.EventExpire, nil
		default:
			return nil, 0, fmt.Errorf("unknown change kind %q at revision %d", kind, e.Version)
		}
		out = append(out, e)
	}
	return out, lastN, rows.Err()
}

// WaitHead implements kvs.ChangeLog. It reads the sequence without the
// lock: the head it returns may not be settled yet, which Changes (under
// the lock) then settles. So waiting costs writers nothing.
func (s *Store) WaitHead(ctx context.Context, after int64) (int64, error) {
	s.listen()
	for {
		wake := s.feed.wait() // before reading the head: no wake-up lost
		h, err := s.drawn(ctx)
		if err != nil || h > after {
			return h, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("postgres wait: %w", ctx.Err())
		case <-wake:
		case <-time.After(pgWaitPoll):
		}
	}
}

// drawn is the last revision drawn, committed or not.
func (s *Store) drawn(ctx context.Context) (int64, error) {
	if err := kvs.CtxErr(ctx, "postgres head"); err != nil {
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var h int64
	if err := s.pool.QueryRow(qctx, sqlHead).Scan(&h); err != nil {
		return 0, s.fail(ctx, "postgres head", err)
	}
	return h, nil
}

// Watch implements kvs.Watcher.
func (s *Store) Watch(ctx context.Context, prefix string, after int64) (kvs.EventStream, error) {
	return kvs.PollWatch(ctx, s, prefix, after)
}

// Prune implements kvs.ChangeLog. Servers sharing the database may prune at
// the same time: kv_compacted only grows.
func (s *Store) Prune(ctx context.Context, r kvs.Retention) (int64, error) {
	if err := kvs.CtxErr(ctx, "postgres prune"); err != nil {
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var compacted int64
	err := pgx.BeginFunc(qctx, s.pool, func(tx pgx.Tx) error {
		var upTo int64
		if r.Revisions > 0 {
			err := tx.QueryRow(qctx, `SELECT rev FROM kv_changes ORDER BY rev DESC OFFSET $1 LIMIT 1`, r.Revisions).Scan(&upTo)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		if r.Age > 0 {
			var byAge int64
			err := tx.QueryRow(qctx, `SELECT coalesce(max(rev), 0) FROM kv_changes WHERE at < now() - $1 * interval '1 microsecond'`,
				r.Age.Microseconds()).Scan(&byAge)
			if err != nil {
				return err
			}
			upTo = max(upTo, byAge)
		}
		if err := tx.QueryRow(qctx, `UPDATE kv_compacted SET rev = greatest(rev, $1) RETURNING rev`, upTo).Scan(&compacted); err != nil {
			return err
		}
		_, err := tx.Exec(qctx, `DELETE FROM kv_changes WHERE rev <= $1`, compacted)
		return err
	})
	if err != nil {
		return 0, s.fail(ctx, "postgres prune", err)
	}
	return compacted, nil
}
