package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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

// migrate brings the schema up to date inside one transaction that holds
// an advisory lock on the schema, so servers starting together apply
// each migration once.
func (s *Store) migrate(ctx context.Context, schema string, log *slog.Logger) error {
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
