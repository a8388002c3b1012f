package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/kvsctl/kvsctl/kvs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
)

// The statements behind each operation, one per operation where possible.
// Names are unqualified: every pool connection has search_path set to the
// store's schema. They are kept plain so that `kvsctl bench` can replay
// them with pgbench.
const (
	sqlGet = `SELECT value, version, updated FROM kv WHERE key = $1 AND (expires IS NULL OR expires > now())`

	// sqlGetMany is sqlGet for the distinct keys of a batch of Gets ($1 is
	// a text array).
	sqlGetMany = `SELECT key, value, version, updated FROM kv WHERE key = ANY($1) AND (expires IS NULL OR expires > now())`

	// sqlUpsert is an unconditional Put. An update draws its version
	// again once it holds the row lock: the one in the proposed row was
	// drawn before waiting for the lock, so a Put that waited behind a
	// later one would otherwise commit a lower version over a higher one
	// (TestPostgresPutVersionsGrow). The insert's draw is then unused.
	// Like every write it logs the change in kv_changes in the same
	// statement (see changes.go).
	sqlUpsert = `WITH w AS (INSERT INTO kv (key, value, version, updated) VALUES ($1, $2, nextval('kv_revision'), now())
ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = nextval('kv_revision'), updated = excluded.updated, lease = NULL, expires = NULL
RETURNING key, value, version)
INSERT INTO kv_changes (rev, key, kind, value) SELECT version, key, 'p', value FROM w RETURNING rev`

	// sqlPutIfVersion is a Put with kvs.Cond.IfVersion; no row means
	// kvs.ErrPrecondition (the key is missing or has another version). $4
	// and $5 are the lease and its deadline (NULL for none).
	sqlPutIfVersion = `WITH w AS (UPDATE kv SET value = $2, version = nextval('kv_revision'), updated = now(), lease = $4, expires = $5
WHERE key = $1 AND version = $3 AND (expires IS NULL OR expires > now()) RETURNING key, value, version)
INSERT INTO kv_changes (rev, key, kind, value) SELECT version, key, 'p', value FROM w RETURNING rev`

	// sqlPutCreateOnly is a Put with kvs.Cond.CreateOnly; no row means the key
	// exists (a key whose lease expired counts as missing and is replaced).
	// $3 and $4 are the lease and its deadline (NULL for none).
	sqlPutCreateOnly = `WITH w AS (INSERT INTO kv (key, value, version, updated, lease, expires) VALUES ($1, $2, nextval('kv_revision'), now(), $3, $4)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = nextval('kv_revision'), updated = excluded.updated,
    lease = excluded.lease, expires = excluded.expires
  WHERE kv.expires <= now()
RETURNING key, value, version)
INSERT INTO kv_changes (rev, key, kind, value) SELECT version, key, 'p', value FROM w RETURNING rev`

	// sqlUpsertLease is sqlUpsert binding the key to lease $3 until $4.
	sqlUpsertLease = `WITH w AS (INSERT INTO kv (key, value, version, updated, lease, expires) VALUES ($1, $2, nextval('kv_revision'), now(), $3, $4)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = nextval('kv_revision'), updated = excluded.updated,
    lease = excluded.lease, expires = excluded.expires
RETURNING key, value, version)
INSERT INTO kv_changes (rev, key, kind, value) SELECT version, key, 'p', value FROM w RETURNING rev`

	// sqlDelete and sqlDeleteIfVersion delete a key and log the delete
	// with a revision of its own; the command tag counts the rows.
	sqlDelete = `WITH d AS (DELETE FROM kv WHERE key = $1 AND (expires IS NULL OR expires > now()) RETURNING key)
INSERT INTO kv_changes (rev, key, kind) SELECT nextval('kv_revision'), key, 'd' FROM d`
	sqlDeleteIfVersion = `WITH d AS (DELETE FROM kv WHERE key = $1 AND version = $2 AND (expires IS NULL OR expires > now()) RETURNING key)
INSERT INTO kv_changes (rev, key, kind) SELECT nextval('kv_revision'), key, 'd' FROM d`

	// sqlVersion tells kvs.ErrNotFound from kvs.ErrPrecondition after a
	// conditional Delete removed nothing.
	sqlVersion = `SELECT version FROM kv WHERE key = $1 AND (expires IS NULL OR expires > now())`

	// sqlListRange lists keys in [$2, $3) after $1: $3 is the least string
	// greater than every string starting with the prefix $2 (see
	// prefixUpperBound), so the primary key index bounds the scan on both
	// sides even in a generic plan. LIMIT is the page size plus one, to
	// learn whether more remain.
	sqlListRange = `SELECT key, version, octet_length(value), updated FROM kv
WHERE key > $1 AND key >= $2 AND key < $3 AND (expires IS NULL OR expires > now()) ORDER BY key LIMIT $4`

	// sqlListFrom lists keys >= $2 after $1: used for an empty prefix, and
	// for a prefix with no upper bound (all U+10FFFF), where every greater
	// key starts with the prefix.
	sqlListFrom = `SELECT key, version, octet_length(value), updated FROM kv
WHERE key > $1 AND key >= $2 AND (expires IS NULL OR expires > now()) ORDER BY key LIMIT $3`
)

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Store is a kvs.Store kept in PostgreSQL.
type Store struct {
	pool    *pgxpool.Pool
	timeout time.Duration     // per-operation context deadline
	puts    *pgBatcher[pgPut] // groups concurrent unconditional Puts
	gets    *pgBatcher[pgGet] // groups concurrent Gets
	feed    *changeFeed       // the head of the change log and its waiters
	log     *slog.Logger
}

var _ kvs.Store = (*Store)(nil)

// DefaultStatementTimeout bounds each operation when
// Options.StatementTimeout is zero.
const DefaultStatementTimeout = 5 * time.Second

// Options configures Open. The zero value is usable.
type Options struct {
	// MaxConns caps the connection pool (0: pgxpool's default,
	// max(4, GOMAXPROCS)).
	MaxConns int32

	// StatementTimeout bounds every operation (0: DefaultStatementTimeout).
	// It is sent as statement_timeout and enforced again with a context
	// deadline slightly later, so a dead or hung server cannot hold a
	// request much longer; it is also the connect timeout.
	StatementTimeout time.Duration

	// Schema is the schema holding the tables ("": "public"). It is
	// created if missing. Letters, digits and '_' only. Tests use a schema
	// each for isolation.
	Schema string

	// Logger receives migration notices and the reloads of the TLS files
	// (see Open); nil discards.
	Logger *slog.Logger
}

// Open connects to the database of rawURL (postgres:// or postgresql://,
// with any parameter pgx accepts, sslmode and the ssl* files included) and
// brings the schema up to date. Errors never contain a password.
//
// The client certificate, its key and the CA bundle (sslcert, sslkey,
// sslrootcert) are read again by every new connection once they changed on
// disk, as libpq does, so a renewed certificate or a rotated root needs no
// restart; connections already open keep theirs until the pool retires
// them (pool_max_conn_lifetime, one hour by default). A set of files that
// does not load (a key that does not match, a truncated file) is logged
// once and the previous one stays in use. A key file that group or others
// may read is refused, with libpq's rule.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	if err := kvs.CtxErr(ctx, "open postgres store"); err != nil {
		return nil, err
	}
	schema := opts.Schema
	if schema == "" {
		schema = "public"
	}
	if !schemaName.MatchString(schema) {
		return nil, fmt.Errorf("open postgres store: invalid schema name %q: want letters, digits and '_', at most 63", schema)
	}
	files := tlsFilesOf(rawURL)
	if files.key != "" {
		if err := checkKeyFile(files.key); err != nil {
			return nil, fmt.Errorf("open postgres store: %w", err)
		}
	}
	stamp := files.stamp() // before pgx reads the files
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, parseError(rawURL, err)
	}
	where := fmt.Sprintf("host=%s:%d db=%s user=%s schema=%s",
		cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, cfg.ConnConfig.User, schema)
	timeout := opts.StatementTimeout
	if timeout <= 0 {
		timeout = DefaultStatementTimeout
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = timeout
	}
	rp := cfg.ConnConfig.RuntimeParams
	rp["search_path"] = pgx.Identifier{schema}.Sanitize()
	rp["statement_timeout"] = strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	if rp["application_name"] == "" {
		rp["application_name"] = "kvsctl"
	}

	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r := newTLSReloader(rawURL, files, stamp, cfg, log); r != nil {
		cfg.BeforeConnect = r.beforeConnect
	}

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	// The server's statement_timeout fires first and leaves the
	// connection usable; the client deadline is the backstop for a server
	// that does not answer at all.
	s := &Store{pool: pool, timeout: timeout + max(timeout/5, 100*time.Millisecond), feed: newChangeFeed(schema), log: log}
	s.puts = &pgBatcher[pgPut]{max: pgBatchSlots(cfg.MaxConns), run: s.putBatch}
	s.gets = &pgBatcher[pgGet]{max: pgBatchSlots(cfg.MaxConns), run: s.getBatch}
	if err := s.migrate(ctx, schema, log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	return s, nil
}

// parseError describes a bad connection URL without the URL's password.
// pgconn's ParseConfigError is not wrapped: it keeps the raw URL.
func parseError(rawURL string, err error) error {
	return fmt.Errorf("open postgres store: parse URL %s: %s", kvs.RedactURL(rawURL), parseReason(rawURL, err))
}

// parseReason is why pgx could not parse rawURL, without the URL.
func parseReason(rawURL string, err error) string {
	reason := "invalid connection settings"
	if inner := errors.Unwrap(err); inner != nil {
		reason = inner.Error()
	}
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) && pce.ConnString == rawURL {
		// Best effort: url.Parse failed, the reason may quote the URL.
		if strings.Contains(reason, rawURL) || strings.Contains(reason, "@") {
			reason = "malformed URL"
		}
	}
	return reason
}

// Get implements Store.
func (s *Store) Get(ctx context.Context, key string) (kvs.Entry, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return kvs.Entry{}, err
	}
	if err := kvs.CtxErr(ctx, "postgres get"); err != nil {
		return kvs.Entry{}, err
	}
	return s.get(ctx, key)
}

// Put implements Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, c kvs.Cond) (int64, error) {
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
		value = []byte{} // nil would be SQL NULL
	}
	if !c.CreateOnly && c.IfVersion == 0 {
		return s.put(ctx, key, value)
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	version, err := putTx(qctx, s.pool, key, value, c, pgLease{})
	if err != nil && !errors.Is(err, kvs.ErrPrecondition) {
		return 0, s.fail(ctx, "postgres put", err)
	}
	return version, err
}

// Delete implements Store.
func (s *Store) Delete(ctx context.Context, key string, c kvs.Cond) error {
	if err := kvs.ValidateKey(key); err != nil {
		return err
	}
	if err := kvs.CtxErr(ctx, "postgres delete"); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := deleteTx(qctx, s.pool, key, c)
	if err != nil && !errors.Is(err, kvs.ErrPrecondition) && !errors.Is(err, kvs.ErrNotFound) {
		return s.fail(ctx, "postgres delete", err)
	}
	return err
}

// List implements Store.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) ([]kvs.KeyInfo, string, error) {
	if err := kvs.CheckList(prefix, after); err != nil {
		return nil, "", err
	}
	if err := kvs.CtxErr(ctx, "postgres list"); err != nil {
		return nil, "", err
	}
	if limit < 1 {
		limit = kvs.MaxPageSize
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var (
		rows pgx.Rows
		err  error
	)
	if upper, ok := prefixUpperBound(prefix); ok {
		rows, err = s.pool.Query(qctx, sqlListRange, after, prefix, upper, limit+1)
	} else {
		rows, err = s.pool.Query(qctx, sqlListFrom, after, prefix, limit+1)
	}
	if err != nil {
		return nil, "", s.fail(ctx, "postgres list", err)
	}
	defer rows.Close()
	out := make([]kvs.KeyInfo, 0, min(limit, 256))
	more := false
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		var ki kvs.KeyInfo
		if err := rows.Scan(&ki.Key, &ki.Version, &ki.Size, &ki.Updated); err != nil {
			return nil, "", s.fail(ctx, "postgres list", err)
		}
		ki.Updated = ki.Updated.UTC()
		out = append(out, ki)
	}
	if err := rows.Err(); err != nil {
		return nil, "", s.fail(ctx, "postgres list", err)
	}
	next := ""
	if more {
		next = out[len(out)-1].Key
	}
	return out, next, nil
}

// prefixUpperBound returns the least valid UTF-8 string greater than every
// string that starts with prefix, or false when there is none (prefix is
// empty or all U+10FFFF). UTF-8 byte order is code point order and no
// encoding is a prefix of another, so bumping the last code point that can
// be bumped (skipping surrogates) gives the bound.
func prefixUpperBound(prefix string) (string, bool) {
	for p := prefix; p != ""; {
		r, size := utf8.DecodeLastRuneInString(p)
		p = p[:len(p)-size]
		if r == utf8.MaxRune {
			continue
		}
		r++
		if r == 0xD800 {
			r = 0xE000
		}
		return p + string(r), true
	}
	return "", false
}

// Ping implements Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := kvs.CtxErr(ctx, "postgres ping"); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.pool.Ping(qctx); err != nil {
		err = s.fail(ctx, "postgres ping", err)
		if !errors.Is(err, kvs.ErrUnavailable) && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", kvs.ErrUnavailable, err)
		}
		return err
	}
	return nil
}

// Close implements Store. It waits for connections in use to be returned.
func (s *Store) Close() error {
	s.feed.close()
	s.pool.Close()
	return nil
}

// fail translates err from an operation on behalf of ctx (the caller's
// context, not the one with the statement deadline): no rows is
// kvs.ErrNotFound; the caller giving up is the caller's context error; a dead,
// slow or overloaded server is kvs.ErrUnavailable with a short cause.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return kvs.ErrNotFound
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgUnavailable(pgErr.Code) {
			return fmt.Errorf("%s: %w: %w", op, kvs.ErrUnavailable, pgErr)
		}
		return fmt.Errorf("%s: %w", op, pgErr)
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		// Not wrapped: the caller's own deadline has not passed.
		return fmt.Errorf("%s: %w: no answer from the database within %s", op, kvs.ErrUnavailable, s.timeout)
	}
	var (
		connErr *pgconn.ConnectError
		netErr  net.Error
	)
	if errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%s: %w: %w", op, kvs.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// pgUnavailable reports whether a server error means the database cannot
// serve requests now, as opposed to a bad request.
func pgUnavailable(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection exception
		strings.HasPrefix(code, "53"), // insufficient resources: too many connections, disk full
		strings.HasPrefix(code, "57"), // query_canceled (statement timeout), admin/crash shutdown, cannot connect now
		strings.HasPrefix(code, "58"), // system error: I/O
		code == "25006",               // read_only_sql_transaction: a standby
		code == "55P03":               // lock_not_available
		return true
	}
	return false
}
