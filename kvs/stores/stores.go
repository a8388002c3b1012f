// Package stores opens a kvs.Store by URL, for the programs that let their
// user choose the store: kvsctl serve, snapshot restore and attack demo.
//
//	bolt:PATH                            an embedded bbolt file (package kvs/bolt)
//	postgres://... or postgresql://...   a PostgreSQL database (package kvs/postgres)
//
// It is the one package that imports both stores; code that knows which
// store it wants imports that package alone.
package stores

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/postgres"
)

// DefaultURL is the store Open uses when given an empty URL.
const DefaultURL = "bolt:data/kvs.db"

// Options configures Open. The zero value is usable.
type Options struct {
	// MaxConns caps the PostgreSQL connection pool (0: pgxpool's default).
	// Ignored by bolt.
	MaxConns int32

	// StatementTimeout bounds every PostgreSQL operation (0:
	// postgres.DefaultStatementTimeout); for bolt, how long Open waits for
	// another process's lock on the file.
	StatementTimeout time.Duration

	// Schema is the PostgreSQL schema ("": public). Ignored by bolt.
	Schema string

	// Logger receives migration and degraded-mode notices; nil discards.
	Logger *slog.Logger
}

// Kind names the store a URL selects: "bolt" or "postgres", or "" when the
// URL names neither.
func Kind(rawURL string) string {
	switch {
	case strings.HasPrefix(rawURL, "bolt:"):
		return "bolt"
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		return "postgres"
	}
	return ""
}

// Open opens the store named by rawURL (see the package documentation); ""
// means DefaultURL. Errors never contain a database password.
func Open(ctx context.Context, rawURL string, opts Options) (kvs.Store, error) {
	if rawURL == "" {
		rawURL = DefaultURL
	}
	switch Kind(rawURL) {
	case "bolt":
		path := strings.TrimPrefix(rawURL, "bolt:")
		if path == "" || strings.HasPrefix(path, "//") {
			return nil, fmt.Errorf("kvs: store URL %q: want bolt:PATH, e.g. bolt:data/kvs.db or bolt:/var/lib/kvs/kvs.db", rawURL)
		}
		return bolt.Open(ctx, path, bolt.Options{LockTimeout: opts.StatementTimeout, Logger: opts.Logger})
	case "postgres":
		return postgres.Open(ctx, rawURL, postgres.Options{
			MaxConns: opts.MaxConns, StatementTimeout: opts.StatementTimeout, Schema: opts.Schema, Logger: opts.Logger,
		})
	}
	scheme, _, ok := strings.Cut(rawURL, ":")
	if !ok || strings.ContainsAny(scheme, "/@ ") {
		scheme = "(none)"
	}
	// Show only the scheme: the rest may hold a password.
	return nil, fmt.Errorf("kvs: unsupported store URL scheme %q: want bolt:PATH, postgres://HOST/DB or postgresql://HOST/DB", scheme)
}

// RestoreOptions configures Restore.
type RestoreOptions struct {
	Options
	// Force replaces a store that holds keys.
	Force bool
	// Progress, when set, is called now and then with the keys restored
	// so far.
	Progress func(keys int64)
}

// Restore writes the snapshot src into the store named by rawURL, offline
// (no server may be using it), keeping every key's version and the
// store's revision: bolt.Restore writes a new file and renames it over the
// old, postgres.Store.Restore copies in one transaction. On any error the
// target is left as it was; a store that holds keys is refused with
// kvs.ErrNotEmpty unless opts.Force is set.
func Restore(ctx context.Context, rawURL string, src kvs.SnapshotSource, opts RestoreOptions) (int64, error) {
	switch Kind(rawURL) {
	case "bolt":
		path := strings.TrimPrefix(rawURL, "bolt:")
		if path == "" || strings.HasPrefix(path, "//") {
			return 0, fmt.Errorf("kvs: store URL %q: want bolt:PATH, e.g. bolt:data/kvs.db or bolt:/var/lib/kvs/kvs.db", rawURL)
		}
		return bolt.Restore(ctx, path, src, bolt.RestoreOptions{Force: opts.Force, Progress: opts.Progress})
	case "postgres":
		s, err := postgres.Open(ctx, rawURL, postgres.Options{
			MaxConns: opts.MaxConns, StatementTimeout: opts.StatementTimeout, Schema: opts.Schema, Logger: opts.Logger,
		})
		if err != nil {
			return 0, err
		}
		defer s.Close()
		return s.Restore(ctx, src, postgres.RestoreOptions{Force: opts.Force, Progress: opts.Progress})
	}
	if rawURL == "" {
		return 0, errors.New("kvs: restore needs the URL of the target store")
	}
	_, err := Open(ctx, rawURL, opts.Options) // the error for an unknown scheme; opens nothing
	return 0, err
}
