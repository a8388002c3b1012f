package kvs

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

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
	sqlGet = `SELECT value, version, updated FROM kv WHERE key = $1`

	// sqlGetMany is sqlGet for the distinct keys of a batch of Gets ($1 is
	// a text array).
	sqlGetMany = `SELECT key, value, version, updated FROM kv WHERE key = ANY($1)`

	// sqlUpsert is an unconditional Put. An update draws its version
	// again once it holds the row lock: the one in the proposed row was
	// drawn before waiting for the lock, so a Put that waited behind a
	// later one would otherwise commit a lower version over a higher one
	// (TestPostgresPutVersionsGrow). The insert's draw is then unused.
	sqlUpsert = `INSERT INTO kv (key, value, version, updated) VALUES ($1, $2, nextval('kv_revision'), now())
ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = nextval('kv_revision'), updated = excluded.updated
RETURNING version`

	// sqlPutIfVersion is a Put with Cond.IfVersion; no row means
	// ErrPrecondition (the key is missing or has another version).
	sqlPutIfVersion = `UPDATE kv SET value = $2, version = nextval('kv_revision'), updated = now()
WHERE key = $1 AND version = $3 RETURNING version`

	// sqlPutCreateOnly is a Put with Cond.CreateOnly; no row means the key
	// exists.
	sqlPutCreateOnly = `INSERT INTO kv (key, value, version, updated) VALUES ($1, $2, nextval('kv_revision'), now())
ON CONFLICT (key) DO NOTHING RETURNING version`

	sqlDelete          = `DELETE FROM kv WHERE key = $1`
	sqlDeleteIfVersion = `DELETE FROM kv WHERE key = $1 AND version = $2`

	// sqlVersion tells ErrNotFound from ErrPrecondition after a
	// conditional Delete removed nothing.
	sqlVersion = `SELECT version FROM kv WHERE key = $1`

	// sqlListRange lists keys in [$2, $3) after $1: $3 is the least string
	// greater than every string starting with the prefix $2 (see
	// prefixUpperBound), so the primary key index bounds the scan on both
	// sides even in a generic plan. LIMIT is the page size plus one, to
	// learn whether more remain.
	sqlListRange = `SELECT key, version, octet_length(value), updated FROM kv
WHERE key > $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4`

	// sqlListFrom lists keys >= $2 after $1: used for an empty prefix, and
	// for a prefix with no upper bound (all U+10FFFF), where every greater
	// key starts with the prefix.
	sqlListFrom = `SELECT key, version, octet_length(value), updated FROM kv
WHERE key > $1 AND key >= $2 ORDER BY key LIMIT $3`
)

// migrations holds the schema, one numbered file per step (NNNN_name.sql),
// applied in order and recorded in kvs_schema_version.
//
//go:embed migrations/*.sql
var migrations embed.FS

// pgMigrateLockClass is the first key of the advisory lock migrations
// hold; the second is hashtext(schema), so stores on different schemas
// migrate in parallel.
const pgMigrateLockClass = 0x6b7673 // "kvs"

// pgMigrateTimeout bounds OpenStore's migration when ctx has no deadline.
// Migrations run without statement_timeout: they may wait for another
// server's migration or rewrite a large table.
const pgMigrateTimeout = time.Minute

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// postgresStore is the Store kept in PostgreSQL.
type postgresStore struct {
	pool    *pgxpool.Pool
	timeout time.Duration     // per-operation context deadline
	puts    *pgBatcher[pgPut] // groups concurrent unconditional Puts
	gets    *pgBatcher[pgGet] // groups concurrent Gets
}

var _ Store = (*postgresStore)(nil)

// openPostgres connects to rawURL and migrates the schema.
func openPostgres(ctx context.Context, rawURL string, opts StoreOptions) (*postgresStore, error) {
	if err := ctxErr(ctx, "open postgres store"); err != nil {
		return nil, err
	}
	schema := opts.Schema
	if schema == "" {
		schema = "public"
	}
	if !schemaName.MatchString(schema) {
		return nil, fmt.Errorf("open postgres store: invalid schema name %q: want letters, digits and '_', at most 63", schema)
	}
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, parseError(rawURL, err)
	}
	where := fmt.Sprintf("host=%s:%d db=%s user=%s schema=%s",
		cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, cfg.ConnConfig.User, schema)
	timeout := opts.timeout()
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

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	// The server's statement_timeout fires first and leaves the
	// connection usable; the client deadline is the backstop for a server
	// that does not answer at all.
	s := &postgresStore{pool: pool, timeout: timeout + max(timeout/5, 100*time.Millisecond)}
	s.puts = &pgBatcher[pgPut]{max: pgBatchSlots(cfg.MaxConns), run: s.putBatch}
	s.gets = &pgBatcher[pgGet]{max: pgBatchSlots(cfg.MaxConns), run: s.getBatch}
	if err := s.migrate(ctx, schema, opts.logger()); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	return s, nil
}

// parseError describes a bad connection URL without the URL's password.
// pgconn's ParseConfigError is not wrapped: it keeps the raw URL.
func parseError(rawURL string, err error) error {
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
	return fmt.Errorf("open postgres store: parse URL %s: %s", redactURL(rawURL), reason)
}

// migrate brings the schema up to date inside one transaction that holds
// an advisory lock on the schema, so servers starting together apply
// each migration once.
func (s *postgresStore) migrate(ctx context.Context, schema string, log *slog.Logger) error {
	steps, err := migrationSteps()
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pgMigrateTimeout)
		defer cancel()
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.fail(ctx, "migrate", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit

	var enc string
	if err := tx.QueryRow(ctx, `SELECT set_config('statement_timeout', '0', true), current_setting('server_encoding')`).Scan(new(string), &enc); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	if enc != "UTF8" && enc != "SQL_ASCII" {
		return fmt.Errorf("migrate: database encoding is %s, want UTF8", enc)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, pgMigrateLockClass, schema); err != nil {
		return s.fail(ctx, "migrate: lock", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return s.fail(ctx, "migrate: create schema", err)
		}
	}
	var current int
	_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS kvs_schema_version (
    version integer PRIMARY KEY,
    applied timestamptz NOT NULL DEFAULT now()
)`)
	if err != nil {
		return s.fail(ctx, "migrate: create kvs_schema_version", err)
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM kvs_schema_version`).Scan(&current); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	if latest := steps[len(steps)-1].version; current > latest {
		return fmt.Errorf("migrate: schema version %d is newer than this kvsctl knows (%d)", current, latest)
	}
	for _, st := range steps {
		if st.version <= current {
			continue
		}
		if _, err := tx.Exec(ctx, st.sql); err != nil {
			return s.fail(ctx, "migrate: apply "+st.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kvs_schema_version (version) VALUES ($1)`, st.version); err != nil {
			return s.fail(ctx, "migrate: record "+st.name, err)
		}
		log.Info("applied database migration", "schema", schema, "migration", st.name)
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail(ctx, "migrate: commit", err)
	}
	return nil
}

type migrationStep struct {
	version int
	name    string
	sql     string
}

// migrationSteps returns the embedded migrations in order.
func migrationSteps() ([]migrationStep, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var steps []migrationStep
	for _, name := range names {
		num, _, ok := strings.Cut(path.Base(name), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migrate: bad migration file name %s: want NNNN_name.sql", name)
		}
		b, err := migrations.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		steps = append(steps, migrationStep{version: v, name: path.Base(name), sql: string(b)})
	}
	slices.SortFunc(steps, func(a, b migrationStep) int { return a.version - b.version })
	for i := range steps {
		if steps[i].version != i+1 {
			return nil, fmt.Errorf("migrate: migrations must be numbered 1, 2, 3...: found %s", steps[i].name)
		}
	}
	if len(steps) == 0 {
		return nil, errors.New("migrate: no migrations embedded")
	}
	return steps, nil
}

// Get implements Store.
func (s *postgresStore) Get(ctx context.Context, key string) (Entry, error) {
	if err := ValidateKey(key); err != nil {
		return Entry{}, err
	}
	if err := ctxErr(ctx, "postgres get"); err != nil {
		return Entry{}, err
	}
	return s.get(ctx, key)
}

// Put implements Store.
func (s *postgresStore) Put(ctx context.Context, key string, value []byte, c Cond) (int64, error) {
	if err := ValidateKey(key); err != nil {
		return 0, err
	}
	if err := ctxErr(ctx, "postgres put"); err != nil {
		return 0, err
	}
	if !satisfiable(c) {
		return 0, ErrPrecondition
	}
	if value == nil {
		value = []byte{} // nil would be SQL NULL
	}
	if !c.CreateOnly && c.IfVersion == 0 {
		return s.put(ctx, key, value)
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var row pgx.Row
	if c.CreateOnly {
		row = s.pool.QueryRow(qctx, sqlPutCreateOnly, key, value)
	} else {
		row = s.pool.QueryRow(qctx, sqlPutIfVersion, key, value, c.IfVersion)
	}
	var version int64
	if err := row.Scan(&version); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, ErrPrecondition
		}
		return 0, s.fail(ctx, "postgres put", err)
	}
	return version, nil
}

// Delete implements Store.
func (s *postgresStore) Delete(ctx context.Context, key string, c Cond) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctxErr(ctx, "postgres delete"); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if c.IfVersion == 0 && !c.CreateOnly {
		tag, err := s.pool.Exec(qctx, sqlDelete, key)
		if err != nil {
			return s.fail(ctx, "postgres delete", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	}
	if !c.CreateOnly {
		tag, err := s.pool.Exec(qctx, sqlDeleteIfVersion, key, c.IfVersion)
		if err != nil {
			return s.fail(ctx, "postgres delete", err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
	}
	// Nothing deleted: tell a missing key from a version mismatch.
	var v int64
	if err := s.pool.QueryRow(qctx, sqlVersion, key).Scan(&v); err != nil {
		return s.fail(ctx, "postgres delete", err)
	}
	return ErrPrecondition
}

// List implements Store.
func (s *postgresStore) List(ctx context.Context, prefix, after string, limit int) ([]KeyInfo, string, error) {
	if err := validateKeyPart(prefix); err != nil {
		return nil, "", fmt.Errorf("list prefix: %w", err)
	}
	if err := validateKeyPart(after); err != nil {
		return nil, "", fmt.Errorf("list cursor: %w", err)
	}
	if err := ctxErr(ctx, "postgres list"); err != nil {
		return nil, "", err
	}
	if limit < 1 {
		limit = DefaultListLimit
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
	out := make([]KeyInfo, 0, min(limit, 256))
	more := false
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		var ki KeyInfo
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
func (s *postgresStore) Ping(ctx context.Context) error {
	if err := ctxErr(ctx, "postgres ping"); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.pool.Ping(qctx); err != nil {
		err = s.fail(ctx, "postgres ping", err)
		if !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	return nil
}

// Close implements Store. It waits for connections in use to be returned.
func (s *postgresStore) Close() error {
	s.pool.Close()
	return nil
}

// fail translates err from an operation on behalf of ctx (the caller's
// context, not the one with the statement deadline): no rows is
// ErrNotFound; the caller giving up is the caller's context error; a dead,
// slow or overloaded server is ErrUnavailable with a short cause.
func (s *postgresStore) fail(ctx context.Context, op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgUnavailable(pgErr.Code) {
			return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, pgErr)
		}
		return fmt.Errorf("%s: %w", op, pgErr)
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		// Not wrapped: the caller's own deadline has not passed.
		return fmt.Errorf("%s: %w: no answer from the database within %s", op, ErrUnavailable, s.timeout)
	}
	var (
		connErr *pgconn.ConnectError
		netErr  net.Error
	)
	if errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
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
