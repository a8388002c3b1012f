package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name: "serve",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "serve the key-value store over mutual TLS",
		UsageText:       "kvsctl serve [--listen ADDR] [--dir DIR | --cert F --key F --ca F [--crl F]] [--store URL] [options]",
		Description: "Serves the HTTP API (/v1/kv, /healthz, /metrics) over HTTPS, HTTP/2 and HTTP/1.1,\n" +
			"to clients holding a certificate the CA bundle trusts. Revocation is checked on every\n" +
			"connection, resumed sessions included. Certificates, CRL and policy are reloaded on SIGHUP\n" +
			"and when their files change; SIGINT or SIGTERM stops gracefully.\n\n" +
			"Stores: bolt:PATH (embedded, the default) or postgres://USER@HOST/DB. Keep a database\n" +
			"password off the command line: put the URL in KVS_STORE, or leave the password out and\n" +
			"use PGPASSWORD or ~/.pgpass (PGPASSFILE). kvsctl never prints it.\n\n" +
			"Example:\n" +
			"  kvsctl pki init && kvsctl serve\n" +
			"  KVS_STORE=postgres://kvs@127.0.0.1/kvs kvsctl serve --listen 0.0.0.0:7443 --policy policy.yaml",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: kvs.DefaultListen, EnvVars: []string{"KVS_LISTEN"}, Usage: "address to listen on"},
			dirFlag(),
			&cli.StringFlag{Name: "cert", Usage: "server certificate (instead of --dir)"},
			&cli.StringFlag{Name: "key", Usage: "server private key (instead of --dir)"},
			&cli.StringFlag{Name: "ca", Usage: "CA bundle that signs client certificates (instead of --dir)"},
			&cli.StringFlag{Name: "crl", Usage: "CRL to check client certificates against (with --ca)"},
			&cli.StringFlag{Name: "tls-min", Value: "1.2", Usage: "minimum TLS version: 1.2 or 1.3"},
			&cli.StringFlag{Name: "store", Value: kvs.DefaultStoreURL, EnvVars: []string{"KVS_STORE"}, Usage: "store URL: bolt:PATH or postgres://..."},
			&cli.IntFlag{Name: "pool-size", Usage: "PostgreSQL connections (0: max(4, CPUs))"},
			&cli.DurationFlag{Name: "statement-timeout", Value: kvs.DefaultStatementTimeout, Usage: "bound on every store operation; a slower store answers 503"},
			&cli.StringFlag{Name: "policy", Usage: "access policy file (YAML or JSON); without one every client of the CA has full access"},
			&cli.StringFlag{Name: "max-value", Value: "1MiB", Usage: "largest value accepted (bytes, or with KiB/MiB)"},
			&cli.IntFlag{Name: "max-conns", Usage: "concurrent connections (0: unlimited)"},
			&cli.DurationFlag{Name: "read-header-timeout", Value: 5 * time.Second, Usage: "time to read request headers"},
			&cli.DurationFlag{Name: "read-timeout", Value: 30 * time.Second, Usage: "time to read a whole request"},
			&cli.DurationFlag{Name: "write-timeout", Value: 30 * time.Second, Usage: "time to write a response"},
			&cli.DurationFlag{Name: "idle-timeout", Value: 120 * time.Second, Usage: "how long an idle keep-alive connection stays open"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: kvs.DefaultShutdownTimeout, Usage: "how long in-flight requests get on shutdown"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log level: debug, info, warn or error"},
			&cli.DurationFlag{Name: "reload-interval", Value: 2 * time.Second, Usage: "how often to check certificate, CRL and policy files for changes (0: only on SIGHUP)"},
			pprofFlag(),
		},
		Action: serve,
	}
}

// serveConfig is the parsed command line of 'kvsctl serve'.
type serveConfig struct {
	listen         string
	dir            string // "" when the files are given explicitly
	files          kvs.TLSFiles
	mode           pki.Mode
	tlsMin         uint16
	store          string
	storeOpts      kvs.StoreOptions
	policy         string
	server         kvs.Config
	reloadInterval time.Duration
	logFormat      string
	logLevel       slog.Level
}

func parseServe(c *cli.Context) (serveConfig, error) {
	if c.NArg() > 0 {
		return serveConfig{}, usagef("serve takes no arguments, got %q", c.Args().First())
	}
	sc := serveConfig{
		listen:         c.String("listen"),
		store:          c.String("store"),
		policy:         c.String("policy"),
		reloadInterval: c.Duration("reload-interval"),
		logFormat:      c.String("log-format"),
	}
	var err error
	if sc.tlsMin, err = kvs.ParseTLSVersion(c.String("tls-min")); err != nil {
		return sc, usagef("--tls-min: %w", err)
	}
	if sc.logFormat != "text" && sc.logFormat != "json" {
		return sc, usagef("--log-format %q: use text or json", sc.logFormat)
	}
	if err := sc.logLevel.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return sc, usagef("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	maxValue, err := parseSize(c.String("max-value"))
	if err != nil {
		return sc, usagef("--max-value: %w", err)
	}
	for _, name := range []string{"pool-size", "max-conns"} {
		if c.Int(name) < 0 {
			return sc, usagef("--%s must not be negative", name)
		}
	}
	if c.Int("pool-size") > 1<<16 {
		return sc, usagef("--pool-size %d is too large", c.Int("pool-size"))
	}
	for _, name := range []string{"statement-timeout", "read-header-timeout", "read-timeout", "write-timeout", "idle-timeout", "shutdown-timeout", "reload-interval"} {
		if c.Duration(name) < 0 {
			return sc, usagef("--%s must not be negative", name)
		}
	}
	sc.storeOpts = kvs.StoreOptions{MaxConns: int32(c.Int("pool-size")), StatementTimeout: c.Duration("statement-timeout")}
	sc.server = kvs.Config{
		MaxValue:          maxValue,
		MaxConns:          c.Int("max-conns"),
		ReadHeaderTimeout: c.Duration("read-header-timeout"),
		ReadTimeout:       c.Duration("read-timeout"),
		WriteTimeout:      c.Duration("write-timeout"),
		IdleTimeout:       c.Duration("idle-timeout"),
		ShutdownTimeout:   c.Duration("shutdown-timeout"),
	}

	if explicit := c.String("cert") != "" || c.String("key") != "" || c.String("ca") != "" || c.String("crl") != ""; explicit {
		sc.files = kvs.TLSFiles{Cert: c.String("cert"), Key: c.String("key"), CA: c.String("ca"), CRL: c.String("crl")}
		if sc.files.Cert == "" || sc.files.Key == "" || sc.files.CA == "" {
			return sc, usagef("--cert, --key and --ca go together (--crl is optional); or use --dir")
		}
		return sc, nil
	}
	sc.dir = c.String("dir")
	if sc.mode, err = pki.Dir(sc.dir).Mode(); err != nil {
		return sc, err
	}
	sc.files, err = kvs.ServerFilesFromDir(sc.dir)
	return sc, err
}

// serve runs the server until the context ends (SIGINT or SIGTERM).
func serve(c *cli.Context) error {
	sc, err := parseServe(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	stderr := c.App.ErrWriter
	// Until the server is up, log records are held back: a start-up error
	// is then one line (and the warnings that explain it), not a list of
	// what loaded fine before it.
	held := &heldHandler{h: newLogHandler(stderr, sc.logFormat, sc.logLevel), state: &heldState{}}
	log := slog.New(held)
	started := false
	defer func() {
		if !started {
			held.release(slog.LevelWarn)
		}
	}()

	ln, err := kvs.Listen(sc.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	tlsm, err := kvs.NewServerTLS(sc.files, kvs.ServerTLSOptions{MinVersion: sc.tlsMin, Logger: log})
	if err != nil {
		return err
	}
	var policy *kvs.PolicyHolder
	if sc.policy != "" {
		if policy, err = kvs.LoadPolicy(sc.policy, log); err != nil {
			return err
		}
	}
	sc.storeOpts.Logger = log
	store, err := kvs.OpenStore(ctx, sc.store, sc.storeOpts)
	if err != nil {
		return oneLine(err) // the store's errors say which store, without the password
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()

	cfg := sc.server
	cfg.TLS, cfg.Store, cfg.Policy, cfg.Logger = tlsm, store, policy, log
	srv, err := kvs.NewServer(cfg)
	if err != nil {
		return err
	}

	// Reload on SIGHUP and when the files change.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading certificates, CRL and policy")
				_ = tlsm.Reload()
				if policy != nil {
					_ = policy.Reload()
				}
			}
		}
	}()
	if sc.reloadInterval > 0 {
		go tlsm.WatchTLS(ctx, sc.reloadInterval)
		go policy.Watch(ctx, sc.reloadInterval)
	}

	if err := startPprof(ctx, c.String("pprof"), log); err != nil {
		return err
	}
	started = true
	held.release(slog.LevelDebug)
	announce(stderr, log, sc, ln.Addr().String())
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}

// announce says where the server listens and how to call it: a few lines
// for a person with the text log format, one record with the JSON format.
func announce(w io.Writer, log *slog.Logger, sc serveConfig, addr string) {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
		host = "localhost"
	}
	server := net.JoinHostPort(host, port)
	var client, curl string
	if sc.dir != "" {
		var flags []string
		if server != kvs.DefaultServer {
			flags = append(flags, "--server "+server)
		}
		if sc.dir != "certs" {
			flags = append(flags, "--dir "+shellQuote(sc.dir))
		}
		// urfave/cli parses flags only before the arguments.
		client = strings.Join(append(append([]string{"kvsctl put"}, flags...), "hello world"), " ") + " && " +
			strings.Join(append(append([]string{"kvsctl get"}, flags...), "hello"), " ")
		if f, err := kvs.ClientFilesFromDir(sc.dir); err == nil {
			curl = fmt.Sprintf("curl --cert %s --key %s --cacert %s https://%s/v1/kv/hello",
				shellQuote(f.Cert), shellQuote(f.Key), shellQuote(f.CA), server)
		}
	}
	if sc.logFormat == "json" {
		log.Info("ready", "addr", addr, "url", "https://"+server, "mode", sc.mode.String(), "store", redactStoreURL(sc.store), "client", client, "curl", curl)
		return
	}
	mode := ""
	if sc.dir != "" {
		mode = fmt.Sprintf(", %s mode, certificates in %s", sc.mode, sc.dir)
	}
	fmt.Fprintf(w, "kvsctl serve: listening on https://%s (store %s%s)\n", addr, redactStoreURL(sc.store), mode)
	if client != "" {
		fmt.Fprintf(w, "  try:  %s\n", client)
	}
	if curl != "" {
		fmt.Fprintf(w, "  curl: %s\n", curl)
	}
}

func newLogHandler(w io.Writer, format string, level slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// heldHandler holds log records back until release, then passes them and
// every later record through.
type heldHandler struct {
	h     slog.Handler
	state *heldState
}

type heldState struct {
	released atomic.Bool // read without mu on every record once the server is up
	mu       sync.Mutex
	records  []heldRecord
}

type heldRecord struct {
	h   slog.Handler
	ctx context.Context
	r   slog.Record
}

func (h *heldHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *heldHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.state.released.Load() {
		h.state.mu.Lock()
		if !h.state.released.Load() {
			h.state.records = append(h.state.records, heldRecord{h.h, ctx, r.Clone()})
			h.state.mu.Unlock()
			return nil
		}
		h.state.mu.Unlock()
	}
	return h.h.Handle(ctx, r)
}

func (h *heldHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &heldHandler{h.h.WithAttrs(as), h.state}
}

func (h *heldHandler) WithGroup(name string) slog.Handler {
	return &heldHandler{h.h.WithGroup(name), h.state}
}

// release writes the held records at min or above, in order, and lets every
// later record through.
func (h *heldHandler) release(min slog.Level) {
	h.state.mu.Lock()
	defer h.state.mu.Unlock()
	for _, hr := range h.state.records {
		if hr.r.Level >= min {
			_ = hr.h.Handle(hr.ctx, hr.r)
		}
	}
	h.state.records = nil
	h.state.released.Store(true)
}

// redactStoreURL shows a store URL without its password (or, when it does
// not parse, only its scheme).
func redactStoreURL(raw string) string {
	if strings.HasPrefix(raw, "bolt:") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		scheme, _, _ := strings.Cut(raw, ":")
		return scheme + ":(not shown)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// parseSize parses a byte count: "1048576", "512KiB", "1MiB" (KB and MB are
// read as KiB and MiB).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 1 || n > (1<<40)/mult {
		return 0, fmt.Errorf("invalid size %q: use a positive number of bytes, optionally with KiB or MiB", s)
	}
	return n * mult, nil
}

// oneLine flattens a multi-line error (pgx lists each connection attempt on
// a line of its own) into one line, dropping repeated lines. It still wraps
// err.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "\n") {
		return err
	}
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(parts, l) {
			parts = append(parts, l)
		}
	}
	return flatError{strings.Join(parts, " "), err}
}

type flatError struct {
	msg string
	err error
}

func (e flatError) Error() string { return e.msg }
func (e flatError) Unwrap() error { return e.err }

// shellQuote quotes a path for a command line shown to the user when it
// needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
