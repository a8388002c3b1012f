package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/kvs/stores"
	"github.com/kvsctl/kvsctl/pki"
)

// defaultMaxConns bounds the connections of kvsctl serve: at about 50 KiB
// per idle mutual-TLS connection (docs/performance.md), 10,000 cost some
// 500 MiB.
const defaultMaxConns = 10_000

func serveCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name: "serve",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "serve the key-value store over mutual TLS",
		UsageText:       "kvsctl serve [--listen ADDR] [--dir DIR | --cert F --key F --ca F [--crl F]] [--store URL] [--config FILE] [options]",
		Description: "Serves the HTTP API (/v1/kv, /healthz, /metrics) over HTTPS, HTTP/2 and HTTP/1.1,\n" +
			"to clients holding a certificate the CA bundle trusts. Revocation is checked on every\n" +
			"connection, resumed sessions included, and again on every request: every CA of --ca\n" +
			"needs its CRL (--crl, or crl.pem of --dir), or the server does not start; --no-crl is\n" +
			"the explicit opt-out, logged at warn on every start. Certificates, CRL and policy are reloaded on SIGHUP\n" +
			"and when their files change; SIGINT or SIGTERM stops gracefully.\n\n" +
			"Stores: bolt:PATH (embedded, the default) or postgres://USER@HOST/DB. Keep a database\n" +
			"password off the command line: put the URL in KVS_STORE, or leave the password out and\n" +
			"use PGPASSWORD or ~/.pgpass (PGPASSFILE). kvsctl never prints it.\n\n" +
			"Memory per client is bounded: at most --max-conns connections (default 10000), at most\n" +
			"100 concurrent HTTP/2 streams on each, headers of at most 64 KiB, and a request body is\n" +
			"buffered as its bytes arrive (never more than --max-value), not as its header announces.\n\n" +
			"Every flag can also be set as KVS_<FLAG> (KVS_LISTEN, KVS_STORE, KVS_POLICY, ...) or in\n" +
			"the YAML file of --config (listen: 0.0.0.0:7443); a flag wins over the environment,\n" +
			"which wins over the file.\n\n" +
			"Example:\n" +
			"  kvsctl pki init && kvsctl serve\n" +
			"  KVS_STORE=postgres://kvs@127.0.0.1/kvs kvsctl serve --listen 0.0.0.0:7443 --policy policy.yaml",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: server.DefaultListen, EnvVars: env("listen"), Usage: "address to listen on"},
			dirFlag(),
			&cli.StringFlag{Name: "cert", EnvVars: env("cert"), Usage: "server certificate (instead of --dir)"},
			&cli.StringFlag{Name: "key", EnvVars: env("key"), Usage: "server private key (instead of --dir)"},
			&cli.StringFlag{Name: "ca", EnvVars: env("ca"), Usage: "CA bundle that signs client certificates (instead of --dir)"},
			&cli.StringSliceFlag{Name: "crl", EnvVars: env("crl"), Usage: "CRL file to check client certificates against, one CRL per CA of --ca (repeatable; a file may hold several)"},
			&cli.StringFlag{Name: "intermediates", EnvVars: env("intermediates"), Usage: "bundle of the intermediate CAs under --ca whose CRLs --crl holds (with --cert/--key/--ca)"},
			&cli.StringSliceFlag{Name: "crl-url", EnvVars: env("crl-url"), Usage: "fetch the CRLs from this URL (the online CA's .../v1/pki/crls, or a distribution point; dp: those of the server's certificate chain), instead of crl.pem (repeatable)"},
			durationFlag("crl-refresh", server.DefaultCRLRefresh, "how often to fetch the --crl-url CRLs (and sooner when half of a CRL's life has passed)"),
			&cli.StringFlag{Name: "crl-cache", EnvVars: env("crl-cache"), Usage: "directory of the fetched CRLs, which outlive a restart (default: DIR/crl-cache)"},
			&cli.BoolFlag{Name: "no-crl", EnvVars: env("no-crl"), Usage: "serve CAs that have no CRL without checking revocation (logged at warn on every start; a CRL that appears later is enforced)"},
			&cli.StringFlag{Name: "tls-min", Value: "1.2", EnvVars: env("tls-min"), Usage: "minimum TLS version: 1.2 or 1.3"},
			&cli.StringFlag{Name: "store", Value: stores.DefaultURL, EnvVars: env("store"), Usage: "store URL: bolt:PATH or postgres://..."},
			&cli.IntFlag{Name: "pool-size", EnvVars: env("pool-size"), Usage: "PostgreSQL connections (0: max(4, CPUs))"},
			durationFlag("statement-timeout", postgres.DefaultStatementTimeout, "bound on every store operation; a slower store answers 503"),
			&cli.StringFlag{Name: "policy", EnvVars: env("policy"), Usage: "access policy file (YAML or JSON); without one every client of the CA has full access"},
			&cli.StringFlag{Name: "max-value", Value: "1MiB", EnvVars: env("max-value"), Usage: "largest value accepted (bytes, or with KiB/MiB)"},
			&cli.IntFlag{Name: "max-txn-ops", Value: kvs.DefaultMaxTxnOps, EnvVars: env("max-txn-ops"), Usage: "most compares, and operations per branch, of a transaction"},
			&cli.IntFlag{Name: "max-conns", Value: defaultMaxConns, EnvVars: env("max-conns"), Usage: "concurrent connections, handshakes included; more wait to be accepted (0: unlimited)"},
			durationFlag("read-header-timeout", server.DefaultReadHeaderTimeout, "time to read the TLS handshake and the request headers"),
			durationFlag("read-timeout", server.DefaultReadTimeout, "time to read a whole request"),
			durationFlag("write-timeout", server.DefaultWriteTimeout, "time to write a response"),
			durationFlag("idle-timeout", server.DefaultIdleTimeout, "how long an idle keep-alive connection stays open"),
			durationFlag("shutdown-timeout", server.DefaultShutdownTimeout, "how long in-flight requests get on shutdown"),
			durationFlag("watch-heartbeat", server.DefaultWatchHeartbeat, "how often an idle watch stream gets a heartbeat comment"),
			&cli.StringFlag{Name: "watch-retention", Value: "24h", EnvVars: env("watch-retention"), Usage: "history kept for watches: a duration (24h) or a number of changes (100000); older revisions answer 410 Gone"},
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: env("log-format"), Usage: "log format: text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: env("log-level"), Usage: "log level: debug, info, warn or error"},
			durationFlag("reload-interval", server.DefaultReloadInterval, "how often to check certificate, CRL and policy files for changes (0: only on SIGHUP)"),
			&cli.StringFlag{
				Name: "metrics-listen", EnvVars: env("metrics-listen"),
				Usage: "also serve /metrics, /healthz and /readyz in plain HTTP on `ADDR`, for Prometheus and load balancers (no key data; off by default)",
			},
			&cli.StringFlag{
				Name: "pprof", EnvVars: env("pprof"),
				Usage: "serve Go profiling endpoints (/debug/pprof/) on `ADDR`, a loopback address such as 127.0.0.1:6060; plain HTTP, no authentication",
			},
			configFlag(),
		},
		Action: serve,
	})
}

// serveConfig is the parsed command line of 'kvsctl serve'.
type serveConfig struct {
	listen    string
	dir       string // "" when the files are given explicitly
	mode      pki.Mode
	store     string
	storeOpts stores.Options
	server    server.Config
	logFormat string
	logLevel  slog.Level
}

func parseServe(c *cli.Context) (serveConfig, error) {
	if _, err := args(c, 0, 0); err != nil {
		return serveConfig{}, err
	}
	sc := serveConfig{listen: c.String("listen"), store: c.String("store"), logFormat: c.String("log-format")}
	tlsMin, err := pki.ParseTLSVersion(c.String("tls-min"))
	if err != nil {
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
	if c.Int("max-txn-ops") < 1 {
		return sc, usagef("--max-txn-ops must be at least 1")
	}
	for _, name := range []string{"pool-size", "max-conns"} {
		if c.Int(name) < 0 {
			return sc, usagef("--%s must not be negative", name)
		}
	}
	if c.Int("pool-size") > 1<<16 {
		return sc, usagef("--pool-size %d is too large", c.Int("pool-size"))
	}
	retention, err := kvs.ParseRetention(c.String("watch-retention"))
	if err != nil {
		return sc, usagef("--watch-retention: %w", err)
	}
	for _, name := range []string{"statement-timeout", "read-header-timeout", "read-timeout", "write-timeout", "idle-timeout", "shutdown-timeout", "reload-interval", "watch-heartbeat"} {
		if c.Duration(name) < 0 {
			return sc, usagef("--%s must not be negative", name)
		}
	}
	if p := c.String("pprof"); p != "" {
		if err := server.CheckPprofAddr(p); err != nil {
			return sc, usagef("--pprof: %w", err)
		}
	}
	sc.storeOpts = stores.Options{MaxConns: int32(c.Int("pool-size")), StatementTimeout: c.Duration("statement-timeout")}
	sc.server = server.Config{
		TLS:               server.TLSOptions{MinVersion: tlsMin},
		PolicyFile:        c.String("policy"),
		NoCRL:             c.Bool("no-crl"),
		MaxValue:          maxValue,
		MaxConns:          c.Int("max-conns"),
		MaxTxnOps:         c.Int("max-txn-ops"),
		ReadHeaderTimeout: c.Duration("read-header-timeout"),
		ReadTimeout:       c.Duration("read-timeout"),
		WriteTimeout:      c.Duration("write-timeout"),
		IdleTimeout:       c.Duration("idle-timeout"),
		ShutdownTimeout:   c.Duration("shutdown-timeout"),
		WatchHeartbeat:    c.Duration("watch-heartbeat"),
		WatchRetention:    retention,
		ReloadInterval:    c.Duration("reload-interval"),
		Pprof:             c.String("pprof"),
		MetricsListen:     c.String("metrics-listen"),
	}
	if c.String("cert") != "" || c.String("key") != "" || c.String("ca") != "" || len(c.StringSlice("crl")) > 0 || c.String("intermediates") != "" {
		sc.server.Files = pki.Files{Cert: c.String("cert"), Key: c.String("key"), CA: c.String("ca"), CRLs: c.StringSlice("crl"), Intermediates: c.String("intermediates")}
		if sc.server.Files.Cert == "" || sc.server.Files.Key == "" || sc.server.Files.CA == "" {
			return sc, usagef("--cert, --key and --ca go together (with --crl, or --no-crl); or use --dir")
		}
		return sc, crlFetching(c, &sc)
	}
	sc.dir = c.String("dir")
	d := pki.Dir(sc.dir)
	if sc.mode, err = d.Mode(); err != nil {
		return sc, err
	}
	if sc.server.Files, err = d.ServerFiles(); err != nil {
		return sc, err
	}
	return sc, crlFetching(c, &sc)
}

// crlFetching sets up --crl-url: the fetched CRLs' cache files replace
// crl.pem of --dir (and join --crl files).
func crlFetching(c *cli.Context, sc *serveConfig) error {
	urls := c.StringSlice("crl-url")
	if len(urls) == 0 {
		return nil
	}
	if i := slices.Index(urls, "dp"); i >= 0 {
		// The distribution points of the server's own chain: its issuer's
		// CRL, and its root's CRL of the intermediates.
		chain, err := pki.LoadCerts(sc.server.Files.Cert)
		if err != nil {
			return err
		}
		var dps []string
		for _, cert := range chain {
			for _, dp := range cert.CRLDistributionPoints {
				if !slices.Contains(dps, dp) {
					dps = append(dps, dp)
				}
			}
		}
		if len(dps) == 0 {
			return usagef("--crl-url dp: %s and its chain name no CRL distribution point (set one with 'kvsctl pki ca set --crl-url' on the CA host)", sc.server.Files.Cert)
		}
		urls = slices.Concat(urls[:i], dps, urls[i+1:])
	}
	for _, u := range urls {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return usagef("--crl-url %q: use an http or https URL, such as https://ca.example.com:7444/v1/pki/crls", u)
		}
	}
	cache := c.String("crl-cache")
	if cache == "" {
		if sc.dir == "" {
			return usagef("--crl-url with --cert/--key/--ca needs --crl-cache DIR")
		}
		cache = filepath.Join(sc.dir, "crl-cache")
	}
	if c.Duration("crl-refresh") < time.Second {
		return usagef("--crl-refresh must be at least 1s")
	}
	f := &server.CRLFetcher{URLs: urls, CacheDir: cache, Refresh: c.Duration("crl-refresh"), Files: sc.server.Files}
	if sc.dir != "" {
		sc.server.Files.CRLs = nil // crl.pem is the CA host's; this host fetches
	}
	sc.server.Files.CRLs = append(sc.server.Files.CRLs, f.CacheFiles()...)
	sc.server.CRLFetcher = f
	return nil
}

// serve runs the server until the context ends (SIGINT or SIGTERM).
func serve(c *cli.Context) error {
	sc, err := parseServe(c)
	if err != nil {
		return err
	}
	stderr := c.App.ErrWriter
	held := newHeldHandler(newLogHandler(stderr, sc.logFormat, sc.logLevel))
	log := slog.New(held)
	started := false
	defer func() {
		if !started {
			held.release(slog.LevelWarn)
		}
	}()

	ln, err := server.Listen(sc.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	sc.storeOpts.Logger = log
	store, err := stores.Open(c.Context, sc.store, sc.storeOpts)
	if err != nil {
		return err // the store's errors say which store, without the password
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()
	cfg := sc.server
	cfg.Store, cfg.Logger = store, log
	if f := cfg.CRLFetcher; f != nil {
		f.Logger = log
		fctx, cancel := context.WithTimeout(c.Context, 15*time.Second)
		if err := f.FetchAll(fctx); err != nil {
			log.Warn("fetching the CRLs at start-up failed: serving with the cached ones, if any", "err", err)
		}
		cancel()
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	started = true
	held.release(slog.LevelDebug)
	announce(stderr, log, sc, ln.Addr().String())
	err = srv.Run(c.Context, ln)
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
	srvAddr := net.JoinHostPort(host, port)
	var try, curl string
	if sc.dir != "" {
		var flags []string
		if srvAddr != client.DefaultServer {
			flags = append(flags, "--server "+srvAddr)
		}
		if sc.dir != "certs" {
			flags = append(flags, "--dir "+shellQuote(sc.dir))
		}
		try = strings.Join(append([]string{"kvsctl put hello world"}, flags...), " ") + " && " +
			strings.Join(append([]string{"kvsctl get hello"}, flags...), " ")
		if f, err := pki.Dir(sc.dir).ClientFiles(); err == nil {
			curl = fmt.Sprintf("curl --cert %s --key %s --cacert %s https://%s/v1/kv/hello",
				shellQuote(f.Cert), shellQuote(f.Key), shellQuote(f.CA), srvAddr)
		}
	}
	store := kvs.RedactURL(sc.store)
	if sc.logFormat == "json" {
		log.Info("ready", "addr", addr, "url", "https://"+srvAddr, "mode", sc.mode.String(), "store", store, "client", try, "curl", curl)
		return
	}
	mode := ""
	if sc.dir != "" {
		mode = fmt.Sprintf(", %s mode, certificates in %s", sc.mode, sc.dir)
	}
	fmt.Fprintf(w, "kvsctl serve: listening on https://%s (store %s%s)\n", addr, store, mode)
	if try != "" {
		fmt.Fprintf(w, "  try:  %s\n", try)
	}
	if curl != "" {
		fmt.Fprintf(w, "  curl: %s\n", curl)
	}
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
