package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// The client commands: get, put, delete, list and health.

// keyArg returns the KEY argument (and up to max-1 more).
func keyArg(c *cli.Context, max int) (string, error) {
	a, err := args(c, 1, max)
	if err != nil {
		return "", err
	}
	if err := kvs.ValidateKey(a[0]); err != nil {
		return "", usagef("%w", err)
	}
	return a[0], nil
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

// withClient runs fn with a client built from the flags, closed after it;
// an error of fn is wrapped by clientError with what.
func withClient(c *cli.Context, what string, fn func(*client.Client) error) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := fn(cl); err != nil {
		return clientError(what, err)
	}
	return nil
}

// clientError says what was being done; main adds the hint for the usual
// mistakes. The error still matches the kvs sentinels, for the exit code.
func clientError(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return hintError{err, "is 'kvsctl serve' running there? set --server or KVS_SERVER"}
	}
	return err
}

func getCommand() *cli.Command {
	return withConfig(&cli.Command{
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
			var e kvs.Entry
			if err := withClient(c, fmt.Sprintf("get %q", key), func(cl *client.Client) (err error) {
				e, err = cl.Get(c.Context, key)
				return err
			}); err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, struct {
					Key     string `json:"key"`
					Version int64  `json:"version"`
					Value   string `json:"value"`
				}{key, e.Version, base64.StdEncoding.EncodeToString(e.Value)})
			}
			_, err = c.App.Writer.Write(e.Value)
			return err
		},
	})
}

func putCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name: "put",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "store a value under a key",
		UsageText:       "kvsctl put [--if-version N | --create] [--ttl D | --lease ID] [--json] KEY VALUE | KEY - | --file FILE KEY",
		Description: "Stores VALUE, or stdin with '-', or the contents of FILE, and prints the new version.\n" +
			"--if-version N writes only if the key's current version is N; --create only if the key\n" +
			"does not exist. Either exits 4 when its condition does not hold, and nothing is written.\n" +
			"A value that starts with '-' goes after '--': kvsctl put k -- -v.\n" +
			"--ttl D makes the key expire D after the write (a lease of its own); --lease ID binds it to\n" +
			"a lease of kvsctl lease grant, to live and die with its other keys. A lease that does not\n" +
			"exist (or expired) exits 3.\n\n" +
			"Example:\n  kvsctl put hello world\n  v=$(kvsctl put config - < config.yaml) && kvsctl put config --if-version $v --file new.yaml",
		Flags: clientFlags(append(condFlags(true), jsonFlag(),
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the value from `FILE`"},
			&cli.DurationFlag{Name: "ttl", Usage: "delete the key after `DURATION` (e.g. 30s; from 1s to 720h)"},
			&cli.Int64Flag{Name: "lease", Usage: "bind the key to lease `ID` (kvsctl lease grant)"})...),
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
			var v int64
			ttl, lease := c.Duration("ttl"), c.Int64("lease")
			switch {
			case c.IsSet("ttl") && c.IsSet("lease"):
				return usagef("--ttl and --lease cannot be combined")
			case c.IsSet("ttl") && (ttl < kvs.MinTTL || ttl > kvs.MaxTTL):
				return usagef("--ttl %s must be from %s to %s", ttl, kvs.MinTTL, kvs.MaxTTL)
			case c.IsSet("lease") && lease <= 0:
				return usagef("--lease must be a lease id, a number above 0")
			}
			if err := withClient(c, fmt.Sprintf("put %q", key), func(cl *client.Client) (err error) {
				switch {
				case c.IsSet("ttl"):
					v, err = cl.PutTTL(c.Context, key, value, cond, ttl)
				case c.IsSet("lease"):
					v, err = cl.PutLease(c.Context, key, value, cond, lease)
				default:
					v, err = cl.Put(c.Context, key, value, cond)
				}
				return err
			}); err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, kvs.PutResponse{Key: key, Version: v})
			}
			_, err = fmt.Fprintln(c.App.Writer, v)
			return err
		},
	})
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
	return withConfig(&cli.Command{
		Name: "delete",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "delete a key",
		UsageText:       "kvsctl delete [--if-version N] KEY | kvsctl delete --prefix P [--json]",
		Description: "Deletes the key. Exits 3 when it does not exist; with --if-version N, exits 4 and\n" +
			"deletes nothing when the key's current version is not N.\n" +
			"With --prefix P, deletes every key that starts with P, atomically, and prints how many\n" +
			"(the policy's delete on P).\n\n" +
			"Example:\n  kvsctl delete hello\n  kvsctl delete --prefix tmp/",
		Flags: clientFlags(append(condFlags(false), jsonFlag(),
			&cli.StringFlag{Name: "prefix", Usage: "delete every key that starts with `P`"})...),
		Action: func(c *cli.Context) error {
			if c.IsSet("prefix") {
				return deletePrefix(c, c.String("prefix"))
			}
			key, err := keyArg(c, 1)
			if err != nil {
				return err
			}
			cond, err := condOf(c)
			if err != nil {
				return err
			}
			return withClient(c, fmt.Sprintf("delete %q", key), func(cl *client.Client) error {
				return cl.Delete(c.Context, key, cond)
			})
		},
	})
}

func listCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name: "list",
		// Keys like "help" and "h" are keys, not a request for help.
		HideHelpCommand: true,
		Usage:           "list keys",
		UsageText:       "kvsctl list [--limit N] [--json] [PREFIX]",
		Description: "Prints the keys that start with PREFIX (all keys without one), in byte order, one per\n" +
			"line, paging through the server's answers until the last key, or until --limit keys.\n" +
			"A key with control or bidirectional-formatting characters is printed quoted, Go style;\n" +
			"--json prints exactly [{\"key\", \"version\", \"size\", \"updated\"}, ...].\n\n" +
			"Example:\n  kvsctl list\n  kvsctl list --json config/",
		Flags: clientFlags(jsonFlag(),
			&cli.IntFlag{Name: "limit", Usage: "print at most `N` keys (0: all)"},
			&cli.IntFlag{Name: "page-size", Value: kvs.MaxPageSize, Usage: fmt.Sprintf("keys per request, 1 to %d", kvs.MaxPageSize)}),
		Action: func(c *cli.Context) error {
			a, err := args(c, 0, 1)
			if err != nil {
				return err
			}
			var prefix string
			if len(a) == 1 {
				prefix = a[0]
			}
			limit, page := c.Int("limit"), c.Int("page-size")
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			if page < 1 || page > kvs.MaxPageSize {
				return usagef("--page-size must be from 1 to %d", kvs.MaxPageSize)
			}
			out := &jsonArray{w: c.App.Writer}
			err = withClient(c, fmt.Sprintf("list %q", prefix), func(cl *client.Client) error {
				for k, err := range cl.Keys(c.Context, prefix, page, limit) {
					if err != nil {
						return err
					}
					if c.Bool("json") {
						err = out.add(k)
					} else {
						_, err = fmt.Fprintln(c.App.Writer, safe(k.Key))
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil || !c.Bool("json") {
				return err
			}
			return out.close()
		},
	})
}

func healthCommand() *cli.Command {
	return withConfig(&cli.Command{
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
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			deadline := time.Now().Add(c.Duration("wait"))
			for {
				err = cl.Ping(c.Context)
				if err == nil {
					_, err = fmt.Fprintln(c.App.Writer, "ok")
					return err
				}
				retry := !errors.Is(err, client.ErrRejected) && !errors.Is(err, client.ErrUntrustedServer) && c.Context.Err() == nil
				if !retry || time.Now().After(deadline) {
					return clientError("health", err)
				}
				select {
				case <-c.Context.Done():
					return clientError("health", err)
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	})
}
