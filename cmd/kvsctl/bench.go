package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/loadgen"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
)

// benchCommand is 'kvsctl bench': a load generator on the kvs client. Its
// hidden subcommands are the other pieces of scripts/bench.sh: the bare
// ceiling server, the idle-connection holder and the pgbench scripts.
func benchCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:      "bench",
		Usage:     "load a server with mutual-TLS requests and report requests/s and latency",
		UsageText: "kvsctl bench [--op get|put|list|mixed|txn] [--clients N] [--duration D | --requests N] [--preload] [flags]",
		Description: "Each of --clients workers sends requests through a client (and connections) of its own,\n" +
			"on keys drawn from --keys keys, until --duration passes or --requests are sent.\n" +
			"A progress line goes to stderr; the summary (or --json) to stdout.\n\n" +
			"  kvsctl bench --preload --op get           # reads, 32 clients, 10s\n" +
			"  kvsctl bench --op mixed --mix get=90,put=10\n" +
			"  kvsctl bench --new-conn --no-resume         # full TLS handshakes per second\n" +
			"  kvsctl bench --http2                        # over HTTP/2 (default: HTTP/1.1)\n\n" +
			"'make bench' runs the side-by-side comparison (scripts/bench.sh, docs/performance.md).",
		Flags: benchFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := parseBench(c)
			if err != nil {
				return err
			}
			return runBench(c.Context, cfg, c.Bool("json"), c.Bool("quiet"), c.App.Writer, c.App.ErrWriter)
		},
		Subcommands: []*cli.Command{benchBareCommand(), benchHoldCommand(), benchPgbenchCommand()},
	})
}

func benchFlags() []cli.Flag {
	return clientFlags(
		&cli.StringFlag{Name: "op", Value: "get", Usage: "operation: get, put, list, mixed or txn (2 compares + 2 puts; with --preload)"},
		&cli.StringFlag{Name: "mix", Value: loadgen.DefaultMix.String(), Usage: "weights of a mixed run, `get=N,put=N,list=N`"},
		&cli.IntFlag{Name: "clients", Value: loadgen.DefaultClients, Usage: "concurrent clients, each with its own connections"},
		&cli.DurationFlag{Name: "duration", Usage: "how long to run (default 10s unless --requests)"},
		&cli.Int64Flag{Name: "requests", Usage: "total requests to send (instead of --duration)"},
		&cli.IntFlag{Name: "value-size", Value: loadgen.DefaultValueSize, Usage: "bytes per PUT value"},
		&cli.IntFlag{Name: "keys", Value: loadgen.DefaultKeys, Usage: "keyspace: keys 10000000 to 10000000+N-1"},
		&cli.BoolFlag{Name: "preload", Usage: "PUT every key once before the timed run"},
		&cli.BoolFlag{Name: "new-conn", Usage: "a new TLS connection for every request (measures handshakes)"},
		&cli.BoolFlag{Name: "no-resume", Usage: "disable TLS session resumption (with --new-conn: full handshakes)"},
		http2Flag(), http1Flag(),
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress line"},
		jsonFlag(),
	)
}

// benchClientConfig reads the client flags and the protocol flags.
func benchClientConfig(c *cli.Context) (client.Config, error) {
	cc, err := clientConfig(c)
	if err != nil {
		return cc, err
	}
	if c.Bool("http1") && c.Bool("http2") {
		return cc, usagef("--http1 and --http2 exclude each other")
	}
	cc.HTTP1, cc.HTTP2 = c.Bool("http1"), c.Bool("http2")
	cc.NewConn, cc.TLS.NoResume = c.Bool("new-conn"), c.Bool("no-resume")
	return cc, nil
}

// http2Flag opts in to HTTP/2; HTTP/1.1 on a pool of keep-alive
// connections is the client's default (client.Config.HTTP2 says why).
func http2Flag() cli.Flag {
	return &cli.BoolFlag{Name: "http2", Usage: "offer HTTP/2 (default: HTTP/1.1 on a pool of keep-alive connections)"}
}

// http1Flag is HTTP/1.1 only: the default, kept so that scripts that ask
// for it keep working.
func http1Flag() cli.Flag {
	return &cli.BoolFlag{Name: "http1", Usage: "HTTP/1.1 only (the default)"}
}

func parseBench(c *cli.Context) (loadgen.Config, error) {
	if _, err := args(c, 0, 0); err != nil {
		return loadgen.Config{}, err
	}
	op, err := loadgen.ParseOp(c.String("op"))
	if err != nil {
		return loadgen.Config{}, usageError{err}
	}
	mix, err := loadgen.ParseMix(c.String("mix"))
	if err != nil {
		return loadgen.Config{}, usageError{err}
	}
	if c.IsSet("mix") && op != loadgen.OpMixed {
		return loadgen.Config{}, usagef("--mix needs --op mixed")
	}
	cfg := loadgen.Config{
		Clients: c.Int("clients"), Duration: c.Duration("duration"), Requests: c.Int64("requests"),
		ValueSize: c.Int("value-size"), Keys: c.Int("keys"), Preload: c.Bool("preload"), Op: op, Mix: mix,
	}
	switch {
	case cfg.Clients < 1:
		return cfg, usagef("--clients must be at least 1")
	case cfg.Duration < 0 || cfg.Requests < 0:
		return cfg, usagef("--duration and --requests must not be negative")
	case c.IsSet("duration") && c.IsSet("requests"):
		return cfg, usagef("--duration and --requests exclude each other")
	case cfg.ValueSize < 0:
		return cfg, usagef("--value-size must not be negative")
	case cfg.Keys < 1:
		return cfg, usagef("--keys must be at least 1")
	case c.Bool("no-resume") && !c.Bool("new-conn"):
		// Allowed, but say what it does: only the first handshake of
		// each client happens, full either way.
	}
	if cfg.Client, err = benchClientConfig(c); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// runBench runs the load, with a progress line on stderr, and prints the
// result.
func runBench(ctx context.Context, cfg loadgen.Config, asJSON, quiet bool, stdout, stderr io.Writer) error {
	tty := isTerminal(stderr)
	if !quiet {
		cfg.Progress = func(p loadgen.Progress) {
			line := fmt.Sprintf("bench: %3.0f%%  %6.1fs  %10d requests  %6d errors  %9.0f req/s",
				p.Done*100, p.Elapsed.Seconds(), p.Requests, p.Errors, p.RPS)
			if tty {
				fmt.Fprintf(stderr, "\r%s", line)
			} else {
				fmt.Fprintln(stderr, line)
			}
		}
		if cfg.Preload {
			fmt.Fprintf(stderr, "bench: preloading %d keys\n", cfg.Keys)
		}
	}
	r, err := loadgen.Run(ctx, cfg)
	if !quiet && tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, r)
	}
	printBench(stdout, r)
	if r.OK == 0 && r.Errors > 0 {
		return fmt.Errorf("every request failed; the first error: %s", r.FirstError)
	}
	return nil
}

func printBench(w io.Writer, r *loadgen.Result) {
	conn := "keep-alive"
	if r.NewConn {
		conn = "new connection per request"
	}
	resume := "resumption on"
	if !r.Resume {
		resume = "resumption off"
	}
	op := string(r.Op)
	if r.Mix != "" {
		op += " (" + r.Mix + ")"
	}
	fmt.Fprintf(w, "%-12s %s\n", "server", r.Server)
	fmt.Fprintf(w, "%-12s %s, %d clients, %d keys, %d-byte values\n", "load", op, r.Clients, r.Keys, r.ValueSize)
	fmt.Fprintf(w, "%-12s %s, %s, TLS %s\n", "connections", orDash(r.Protocol), conn, resume)
	fmt.Fprintf(w, "%-12s %d ok, %d errors in %.2fs\n", "requests", r.OK, r.Errors, r.Elapsed)
	fmt.Fprintf(w, "%-12s %.0f requests/s\n", "throughput", r.RPS)
	fmt.Fprintf(w, "%-12s p50 %s  p90 %s  p99 %s  max %s\n", "latency",
		fmtMS(r.Latency.P50), fmtMS(r.Latency.P90), fmtMS(r.Latency.P99), fmtMS(r.Latency.Max))
	fmt.Fprintf(w, "%-12s %d (%d resumed)\n", "handshakes", r.Handshakes, r.Resumed)
	if r.Mix != "" {
		var parts []string
		for _, op := range []loadgen.Op{loadgen.OpGet, loadgen.OpPut, loadgen.OpList} {
			if n := r.ByOp[op]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", op, n))
			}
		}
		fmt.Fprintf(w, "%-12s %s\n", "ok by op", strings.Join(parts, ", "))
	}
	if r.Errors > 0 {
		kinds := make([]string, 0, len(r.ErrorKind))
		for k := range r.ErrorKind {
			kinds = append(kinds, k)
		}
		slices.SortFunc(kinds, func(a, b string) int { return int(r.ErrorKind[b] - r.ErrorKind[a]) })
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.ErrorKind[k]))
		}
		fmt.Fprintf(w, "%-12s %s\n", "errors", strings.Join(parts, ", "))
		fmt.Fprintf(w, "%-12s %s\n", "first error", r.FirstError)
	}
}

func fmtMS(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fms", ms)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// benchBareCommand serves the ceiling of the comparison: net/http with the
// same TLS material and listener as 'kvsctl serve' and a fixed 100-byte
// answer (server.ServeBare).
func benchBareCommand() *cli.Command {
	return &cli.Command{
		Name:   "bare-server",
		Usage:  "serve the bare mTLS ceiling for the comparison (a fixed 100-byte answer)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:7444", Usage: "address to listen on"},
			dirFlag(),
			&cli.StringFlag{Name: "cert", Usage: "server certificate (instead of --dir)"},
			&cli.StringFlag{Name: "key", Usage: "server private key (instead of --dir)"},
			&cli.StringFlag{Name: "ca", Usage: "CA bundle that signs client certificates (instead of --dir)"},
			&cli.StringSliceFlag{Name: "crl", Usage: "CRL file to check client certificates against (repeatable)"},
			&cli.IntFlag{Name: "body-size", Usage: "answer a GET with this many bytes (default: the 100-byte answer)"},
		},
		Action: func(c *cli.Context) error {
			files, err := pki.Dir(c.String("dir")).ServerFiles()
			if c.String("cert") != "" || c.String("key") != "" || c.String("ca") != "" {
				files, err = pki.Files{Cert: c.String("cert"), Key: c.String("key"), CA: c.String("ca"), CRLs: c.StringSlice("crl")}, nil
			}
			if err != nil {
				return err
			}
			ln, err := server.Listen(c.String("listen"))
			if err != nil {
				return err
			}
			defer ln.Close()
			fmt.Fprintf(c.App.ErrWriter, "bare server listening on %s\n", ln.Addr())
			var body []byte
			if n := c.Int("body-size"); n > 0 {
				body = bytes.Repeat([]byte{'x'}, n)
			} else if n < 0 {
				return usagef("--body-size must not be negative")
			}
			return server.ServeBareBody(c.Context, ln, files, server.TLSOptions{}, body)
		},
	}
}

// benchHoldCommand opens idle connections and keeps them until interrupted
// or --for passes, to measure the server's memory per connection.
func benchHoldCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:   "hold",
		Usage:  "open idle mTLS connections and hold them",
		Hidden: true,
		Flags: clientFlags(
			&cli.IntFlag{Name: "conns", Value: 5000, Usage: "connections to open"},
			&cli.DurationFlag{Name: "for", Value: time.Minute, Usage: "how long to hold them"},
			http2Flag(), http1Flag(),
		),
		Action: func(c *cli.Context) error {
			cc, err := benchClientConfig(c)
			if err != nil {
				return err
			}
			start := time.Now()
			h, err := loadgen.Hold(c.Context, loadgen.HoldConfig{Client: cc, Conns: c.Int("conns")})
			if err != nil {
				return err
			}
			defer h.Close()
			fmt.Fprintf(c.App.Writer, "holding %d connections (opened in %.1fs)\n", h.Len(), time.Since(start).Seconds())
			select {
			case <-c.Context.Done():
			case <-time.After(c.Duration("for")):
			}
			return nil
		},
	})
}

// benchPgbenchCommand prints a pgbench script that runs the PostgreSQL
// store's own statement for an operation on the bench keyspace.
func benchPgbenchCommand() *cli.Command {
	return &cli.Command{
		Name:      "pgbench-script",
		Usage:     "print a pgbench script running the PostgreSQL store's statement for get or put",
		UsageText: "kvsctl bench pgbench-script --op get|put [--keys N] > get.sql; pgbench -M prepared -f get.sql [-D v=\\\\x...]",
		Hidden:    true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "op", Value: "get", Usage: "get or put"},
			&cli.IntFlag{Name: "keys", Value: loadgen.DefaultKeys, Usage: "keyspace, as for bench"},
		},
		Action: func(c *cli.Context) error {
			op := loadgen.Op(c.String("op"))
			stmt, ok := postgres.Statement(string(op))
			if !ok {
				return usagef("pgbench script: unknown operation %q: use get or put", op)
			}
			s, err := loadgen.PgbenchScript(op, stmt, c.Int("keys"))
			if err != nil {
				return usageError{err}
			}
			_, err = io.WriteString(c.App.Writer, s)
			return err
		},
	}
}
