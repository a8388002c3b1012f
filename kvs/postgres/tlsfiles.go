package postgres

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgx reads sslcert, sslkey and sslrootcert once, when it parses the
// connection string; libpq reads them for every connection. A tlsReloader
// gives the pool libpq's behaviour: before each new connection it compares
// the files' size and modification time with those of the last load and,
// when they changed, parses the connection string again with pgx, so the
// new material is exactly what pgx would build from the files (sslmode,
// sslpassword, verify-ca and verify-full included). Only the fields the
// files determine are replaced in the connection's tls.Config (the client
// certificate chain, the root pool and pgx's verify-ca callback, which
// holds the pool); ServerName, InsecureSkipVerify and everything else stay
// as pgx set them, so verify-full still checks the chain and the host name
// with crypto/tls's own verification. A set of files that does not load
// keeps the previous material, logged once per distinct error, and is
// tried again when the files change.

// tlsFileSet names the TLS files of a connection string, "" for none.
type tlsFileSet struct {
	cert, key, root string
}

// paths returns the files to watch.
func (f tlsFileSet) paths() []string {
	var out []string
	for _, p := range []string{f.cert, f.key, f.root} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// stamp identifies the state of the files: size and modification time of
// each, or that it is missing.
func (f tlsFileSet) stamp() string {
	var b strings.Builder
	for _, p := range f.paths() {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", p)
		}
	}
	return b.String()
}

// tlsFilesOf finds the TLS files rawURL makes pgx read, the way pgx looks
// for them: the URL's sslcert, sslkey and sslrootcert parameters, else
// PGSSLCERT, PGSSLKEY and PGSSLROOTCERT, else ~/.postgresql/postgresql.crt,
// postgresql.key and root.crt when they exist. sslrootcert=system names no
// file. Files named by a service file (service=, PGSERVICE) are not found,
// nor any file of a keyword/value connection string: pgx reads those once.
func tlsFilesOf(rawURL string) tlsFileSet {
	q := urlParams(rawURL)
	if q == nil {
		return tlsFileSet{}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = ""
	}
	find := func(key, env, def string) string {
		if v, ok := q[key]; ok {
			return v
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		if home == "" {
			return ""
		}
		p := filepath.Join(home, ".postgresql", def)
		if _, err := os.Stat(p); err != nil {
			return ""
		}
		return p
	}
	f := tlsFileSet{
		cert: find("sslcert", "PGSSLCERT", "postgresql.crt"),
		key:  find("sslkey", "PGSSLKEY", "postgresql.key"),
		root: find("sslrootcert", "PGSSLROOTCERT", "root.crt"),
	}
	if f.root == "system" {
		f.root = ""
	}
	return f
}

// urlParams returns the query parameters of a postgres:// or postgresql://
// URL as pgx reads them (percent-decoded, '+' kept, the last occurrence
// wins), or nil for a keyword/value connection string. It does not use
// net/url.Parse, which refuses the multi-host URLs pgx accepts.
func urlParams(rawURL string) map[string]string {
	rest, ok := strings.CutPrefix(rawURL, "postgres://")
	if !ok {
		if rest, ok = strings.CutPrefix(rawURL, "postgresql://"); !ok {
			return nil
		}
	}
	_, query, ok := strings.Cut(rest, "?")
	if !ok {
		return map[string]string{}
	}
	out := map[string]string{}
	for pair := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if dk, err := url.PathUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// tlsConfigsOf returns the TLS configuration of every connection attempt of
// c, in order: the first host's, then each fallback's (nil where that
// attempt is without TLS).
func tlsConfigsOf(c *pgconn.Config) []*tls.Config {
	out := []*tls.Config{c.TLSConfig}
	for _, fb := range c.Fallbacks {
		out = append(out, fb.TLSConfig)
	}
	return out
}

// tlsReloader reloads the TLS files of one pool's connection string for
// its new connections (see the comment at the top of this file).
type tlsReloader struct {
	rawURL string
	files  tlsFileSet
	log    *slog.Logger

	mu     sync.Mutex
	stamp  string        // the files' state when last loaded or tried
	cur    []*tls.Config // pgx's configurations from the last good load, by attempt; read-only
	logged string        // the reload error last logged; "" after a good load
}

// newTLSReloader returns the reloader of cfg, parsed from rawURL when the
// files were in the state stamp, or nil when no connection attempt uses
// TLS or no file is involved.
func newTLSReloader(rawURL string, files tlsFileSet, stamp string, cfg *pgxpool.Config, log *slog.Logger) *tlsReloader {
	if len(files.paths()) == 0 {
		return nil
	}
	cur := tlsConfigsOf(&cfg.ConnConfig.Config)
	usesTLS := false
	for _, c := range cur {
		usesTLS = usesTLS || c != nil
	}
	if !usesTLS {
		return nil
	}
	return &tlsReloader{rawURL: rawURL, files: files, log: log, stamp: stamp, cur: cur}
}

// beforeConnect is the pool's BeforeConnect hook: it puts the current
// certificate chain and root pool into cc, a copy of the pool's connection
// configuration made for one new connection.
func (r *tlsReloader) beforeConnect(_ context.Context, cc *pgx.ConnConfig) error {
	cur := r.current()
	dst := tlsConfigsOf(&cc.Config)
	if len(dst) != len(cur) {
		return nil // not the configuration the reloader was made for: leave it as pgx made it
	}
	for i, c := range dst {
		if c == nil || cur[i] == nil {
			continue
		}
		c.Certificates = cur[i].Certificates
		c.RootCAs = cur[i].RootCAs
		c.ClientCAs = cur[i].ClientCAs
		// pgx's verify-ca check is a closure over its own root pool; with
		// verify-full it is nil and crypto/tls verifies against RootCAs.
		c.VerifyPeerCertificate = cur[i].VerifyPeerCertificate
	}
	return nil
}

// current reloads the files when they changed since the last attempt and
// returns the configurations of the last good load.
func (r *tlsReloader) current() []*tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.files.stamp() // before reading: what is read is at least this new
	if st == r.stamp {
		return r.cur
	}
	r.stamp = st
	next, err := r.load()
	if err != nil {
		if msg := err.Error(); msg != r.logged {
			r.logged = msg
			r.log.Warn("postgres tls files not reloaded: new connections keep using the previous ones",
				"files", r.files.paths(), "err", err)
		}
		return r.cur
	}
	r.cur, r.logged = next, ""
	attrs := []any{"files", r.files.paths()}
	if c := next[0]; c != nil && len(c.Certificates) > 0 && c.Certificates[0].Leaf != nil {
		leaf := c.Certificates[0].Leaf
		attrs = append(attrs, "cert_subject", leaf.Subject.String(), "cert_serial", leaf.SerialNumber.Text(16),
			"cert_not_after", leaf.NotAfter.UTC())
	}
	r.log.Info("postgres tls files reloaded for new connections", attrs...)
	return r.cur
}

// load parses the connection string again and returns its TLS
// configurations when they have the shape of the current ones.
func (r *tlsReloader) load() ([]*tls.Config, error) {
	if r.files.key != "" {
		if err := checkKeyFile(r.files.key); err != nil {
			return nil, err
		}
	}
	cfg, err := pgxpool.ParseConfig(r.rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse connection settings: %s", parseReason(r.rawURL, err))
	}
	next := tlsConfigsOf(&cfg.ConnConfig.Config)
	if len(next) != len(r.cur) {
		return nil, fmt.Errorf("parse connection settings: %d connection attempts instead of %d", len(next), len(r.cur))
	}
	for i := range next {
		if (next[i] == nil) != (r.cur[i] == nil) {
			return nil, fmt.Errorf("parse connection settings: attempt %d changed between TLS and plain text", i+1)
		}
	}
	return next, nil
}
