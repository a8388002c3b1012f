package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
)

// clientFlags are the flags every client command takes.
func clientFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "server", Value: kvs.DefaultServer, EnvVars: []string{"KVS_SERVER"}, Usage: "server address, host:port"},
		dirFlag(),
		&cli.StringFlag{Name: "cert", Usage: "client certificate (instead of --dir)"},
		&cli.StringFlag{Name: "key", Usage: "client private key (instead of --dir)"},
		&cli.StringFlag{Name: "ca", Usage: "CA bundle (or, self-signed, the server's certificate) to verify the server with (instead of --dir)"},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "bound on each request"},
	}, extra...)
}

// newClient builds a client from the client flags. The server's certificate
// chain and host name are always verified: there is no flag to skip that.
func newClient(c *cli.Context) (*kvs.Client, error) {
	var files kvs.TLSFiles
	if c.String("cert") != "" || c.String("key") != "" || c.String("ca") != "" {
		files = kvs.TLSFiles{Cert: c.String("cert"), Key: c.String("key"), CA: c.String("ca")}
		if files.Cert == "" || files.Key == "" || files.CA == "" {
			return nil, usagef("--cert, --key and --ca go together; or use --dir")
		}
	} else {
		var err error
		if files, err = kvs.ClientFilesFromDir(c.String("dir")); err != nil {
			return nil, err
		}
	}
	if c.Duration("timeout") < 0 {
		return nil, usagef("--timeout must not be negative")
	}
	return kvs.NewClient(kvs.ClientConfig{Server: c.String("server"), Files: files, Timeout: c.Duration("timeout")})
}

// clientError adds what was being done and, for the usual mistakes, a hint
// line. The error still matches the kvs sentinels, for the exit code.
func clientError(c *cli.Context, what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	var hint string
	switch {
	case errors.Is(err, kvs.ErrUntrustedServer):
		hint = "the server's certificate does not chain to the CA bundle or does not name the host in --server"
	case errors.Is(err, kvs.ErrForbidden):
		hint = "the server's policy does not allow this certificate to do that"
	case errors.Is(err, kvs.ErrRejected):
		hint = "the server did not accept this client certificate: is it issued by the server's CA, current and not revoked?"
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = "is 'kvsctl serve' running at " + c.String("server") + "? set --server or KVS_SERVER"
	}
	if hint == "" {
		return err
	}
	return hintError{err, hint}
}

// hintError is an error with a second line that says what to do.
type hintError struct {
	err  error
	hint string
}

func (e hintError) Error() string { return e.err.Error() + "\nhint: " + e.hint }
func (e hintError) Unwrap() error { return e.err }

// misplacedFlag returns a usage error when an argument is one of the
// command's own flags: urfave/cli stops parsing flags at the first argument,
// so 'kvsctl put k v --create' would otherwise store or ignore "--create".
func misplacedFlag(c *cli.Context) error {
	for _, a := range c.Args().Slice() {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || a == "-" || name == "" {
			continue
		}
		for _, f := range c.Command.Flags {
			if slices.Contains(f.Names(), name) {
				return usagef("%s is an option: options go before the arguments, as in 'kvsctl %s %s ...' (to store it as a value, use '-' or --file)", a, c.Command.Name, a)
			}
		}
	}
	return nil
}

func keyArg(c *cli.Context, max int) (string, error) {
	if err := misplacedFlag(c); err != nil {
		return "", err
	}
	if c.NArg() < 1 {
		return "", usagef("missing KEY (see 'kvsctl %s --help')", c.Command.Name)
	}
	if c.NArg() > max {
		return "", usagef("too many arguments (see 'kvsctl %s --help'); quote a key or value that has spaces", c.Command.Name)
	}
	key := c.Args().First()
	if err := kvs.ValidateKey(key); err != nil {
		return "", usagef("%w", err)
	}
	return key, nil
}

func condFlags(create bool) []cli.Flag {
	f := []cli.Flag{&cli.Int64Flag{Name: "if-version", Usage: "only if the key's current version is `N` (compare-and-swap)"}}
	if create {
		f = append(f, &cli.BoolFlag{Name: "create", Usage: "only if the key does not exist yet"})
	}
	return f
}

func condOf(c *cli.Context) (kvs.Cond, error) {
	cond := kvs.Cond{IfVersion: c.Int64("if-version"), CreateOnly: c.Bool("create")}
	if c.IsSet("if-version") && cond.IfVersion <= 0 {
		return cond, usagef("--if-version must be a version, a number above 0")
	}
	if cond.IfVersion != 0 && cond.CreateOnly {
		return cond, usagef("--if-version and --create cannot be combined")
	}
	return cond, nil
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name: "get",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "print a key's value",
		UsageText:       "kvsctl get [--json] [--server HOST:PORT] [--dir DIR | --cert F --key F --ca F] KEY",
		Description: "Writes the raw value to stdout, byte for byte (nothing is added, not even a newline).\n" +
			"With --json, prints {\"key\", \"version\", \"value\"} with the value in base64.\n" +
			"Exits 3 when the key does not exist.\n\n" +
			"Example:\n  kvsctl get hello\n  kvsctl get images/logo.png > logo.png",
		Flags: clientFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			key, err := keyArg(c, 1)
			if err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			e, err := cl.Get(c.Context, key)
			if err != nil {
				return clientError(c, fmt.Sprintf("get %q", key), err)
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, struct {
					Key     string `json:"key"`
					Version int64  `json:"version"`
					Value   string `json:"value"`
				}{key, e.Version, base64.StdEncoding.EncodeToString(e.Value)})
			}
			_, err = c.App.Writer.Write(e.Value)
			return err
		},
	}
}

func putCommand() *cli.Command {
	return &cli.Command{
		Name: "put",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "store a value under a key",
		UsageText:       "kvsctl put [--if-version N | --create] [--json] KEY VALUE | KEY - | --file FILE KEY",
		Description: "Stores VALUE, or stdin with '-', or the contents of FILE, and prints the new version.\n" +
			"--if-version N writes only if the key's current version is N; --create only if the key\n" +
			"does not exist. Either exits 4 when its condition does not hold, and nothing is written.\n\n" +
			"Options go before KEY.\n\n" +
			"Example:\n  kvsctl put hello world\n  v=$(kvsctl put config - < config.yaml) && kvsctl put --if-version $v --file new.yaml config",
		Flags: clientFlags(append(condFlags(true), jsonFlag(),
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the value from `FILE`"})...),
		Action: func(c *cli.Context) error {
			key, err := keyArg(c, 2)
			if err != nil {
				return err
			}
			cond, err := condOf(c)
			if err != nil {
				return err
			}
			value, err := putValue(c)
			if err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			v, err := cl.Put(c.Context, key, value, cond)
			if err != nil {
				return clientError(c, fmt.Sprintf("put %q", key), err)
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, struct {
					Key     string `json:"key"`
					Version int64  `json:"version"`
				}{key, v})
			}
			_, err = fmt.Fprintln(c.App.Writer, v)
			return err
		},
	}
}

// putValue reads the value of put from its argument, stdin or --file.
func putValue(c *cli.Context) ([]byte, error) {
	file := c.String("file")
	switch {
	case file != "" && c.NArg() == 2:
		return nil, usagef("give the value as an argument or with --file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read value: %w", err)
		}
		return b, nil
	case c.NArg() < 2:
		return nil, usagef("missing VALUE: give it as an argument, '-' for stdin, or --file FILE")
	case c.Args().Get(1) == "-":
		b, err := io.ReadAll(c.App.Reader)
		if err != nil {
			return nil, fmt.Errorf("read value from stdin: %w", err)
		}
		return b, nil
	}
	return []byte(c.Args().Get(1)), nil
}

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name: "delete",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "delete a key",
		UsageText:       "kvsctl delete [--if-version N] KEY",
		Description: "Deletes the key. Exits 3 when it does not exist; with --if-version N, exits 4 and\n" +
			"deletes nothing when the key's current version is not N.\n\n" +
			"Example:\n  kvsctl delete hello",
		Flags: clientFlags(condFlags(false)...),
		Action: func(c *cli.Context) error {
			key, err := keyArg(c, 1)
			if err != nil {
				return err
			}
			cond, err := condOf(c)
			if err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := cl.Delete(c.Context, key, cond); err != nil {
				return clientError(c, fmt.Sprintf("delete %q", key), err)
			}
			return nil
		},
	}
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name: "list",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "list keys",
		UsageText:       "kvsctl list [--limit N] [--json] [PREFIX]",
		Description: "Prints the keys that start with PREFIX (all keys without one), in byte order, one per\n" +
			"line, paging through the server's answers until the last key, or until --limit keys.\n" +
			"A key with control characters is printed quoted, Go style; --json prints exactly\n" +
			"[{\"key\", \"version\", \"size\", \"updated\"}, ...].\n\n" +
			"Example:\n  kvsctl list\n  kvsctl list --json config/",
		Flags: clientFlags(jsonFlag(),
			&cli.IntFlag{Name: "limit", Usage: "print at most `N` keys (0: all)"},
			&cli.IntFlag{Name: "page-size", Value: kvs.MaxAPIListLimit, Usage: fmt.Sprintf("keys per request, 1 to %d", kvs.MaxAPIListLimit)}),
		Action: func(c *cli.Context) error {
			if err := misplacedFlag(c); err != nil {
				return err
			}
			if c.NArg() > 1 {
				return usagef("too many arguments: list takes one PREFIX")
			}
			prefix := c.Args().First()
			limit, page := c.Int("limit"), c.Int("page-size")
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			if page < 1 || page > kvs.MaxAPIListLimit {
				return usagef("--page-size must be from 1 to %d", kvs.MaxAPIListLimit)
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			out := newKeyWriter(c.App.Writer, c.Bool("json"))
			if err := listAll(c.Context, cl, prefix, limit, page, out.write); err != nil {
				return clientError(c, fmt.Sprintf("list %q", prefix), err)
			}
			return out.close()
		},
	}
}

// listAll pages through the keys with prefix, calling fn for each, until the
// last page or until limit keys (0: no limit).
func listAll(ctx context.Context, cl *kvs.Client, prefix string, limit, page int, fn func(kvs.KeyInfo) error) error {
	after, n := "", 0
	for {
		size := page
		if limit > 0 {
			size = min(size, limit-n)
		}
		keys, next, err := cl.List(ctx, prefix, after, size)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := fn(k); err != nil {
				return err
			}
			n++
		}
		if next == "" || (limit > 0 && n >= limit) {
			return nil
		}
		after = next
	}
}

// keyWriter prints keys as lines, or as one JSON array written as it goes
// (a listing of any length uses constant memory).
type keyWriter struct {
	w     io.Writer
	json  bool
	count int
}

func newKeyWriter(w io.Writer, asJSON bool) *keyWriter { return &keyWriter{w: w, json: asJSON} }

func (k *keyWriter) write(ki kvs.KeyInfo) error {
	defer func() { k.count++ }()
	if !k.json {
		key := ki.Key
		if strings.IndexFunc(key, unicode.IsControl) >= 0 {
			key = strconv.Quote(key)
		}
		_, err := fmt.Fprintln(k.w, key)
		return err
	}
	b, err := json.Marshal(ki)
	if err != nil {
		return err
	}
	sep := ",\n  "
	if k.count == 0 {
		sep = "[\n  "
	}
	_, err = fmt.Fprintf(k.w, "%s%s", sep, b)
	return err
}

func (k *keyWriter) close() error {
	if !k.json {
		return nil
	}
	end := "\n]\n"
	if k.count == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(k.w, end)
	return err
}

func healthCommand() *cli.Command {
	return &cli.Command{
		Name: "health",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "check that the server answers and its store works",
		UsageText:       "kvsctl health [--wait DURATION]",
		Description: "Calls /healthz over mutual TLS and prints ok. With --wait, retries while the server\n" +
			"is not up yet or its store is unavailable, for up to DURATION (for scripts that start\n" +
			"a server). A refused certificate is not retried.\n\n" +
			"Example:\n  kvsctl serve & kvsctl health --wait 10s && kvsctl put hello world",
		Flags: clientFlags(&cli.DurationFlag{Name: "wait", Usage: "retry for up to `DURATION`"}),
		Action: func(c *cli.Context) error {
			if err := misplacedFlag(c); err != nil {
				return err
			}
			if c.NArg() > 0 {
				return usagef("health takes no arguments")
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			deadline := time.Now().Add(c.Duration("wait"))
			for {
				err = cl.Health(c.Context)
				if err == nil {
					_, err = fmt.Fprintln(c.App.Writer, "ok")
					return err
				}
				retry := !errors.Is(err, kvs.ErrRejected) && !errors.Is(err, kvs.ErrUntrustedServer) && c.Context.Err() == nil
				if !retry || time.Now().After(deadline) {
					return clientError(c, "health", err)
				}
				select {
				case <-c.Context.Done():
					return clientError(c, "health", err)
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
