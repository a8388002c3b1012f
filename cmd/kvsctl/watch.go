package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// kvsctl watch: print (or run a command for) every change under a prefix.

func watchCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:            "watch",
		HideHelpCommand: true,
		Usage:           "print every change of the keys under a prefix as it happens",
		UsageText:       "kvsctl watch [--rev N] [--json] [--exec CMD] [--no-values] PREFIX",
		Description: "Streams the changes of the keys that start with PREFIX (\"\" for all): one line per\n" +
			"change, TYPE VERSION KEY VALUE separated by tabs (TYPE is put, delete or expire; the\n" +
			"value is quoted when it is not plain text), or with --json one JSON object per line\n" +
			"with the value in base64. --rev N resumes strictly after revision N (without it, from\n" +
			"now). When the connection breaks or the server restarts, the watch reconnects and\n" +
			"resumes after the last change it printed, so nothing is missed or repeated. Ctrl-C\n" +
			"stops it (exit 0). A revision older than the server's --watch-retention exits 1 and\n" +
			"says the oldest revision still kept.\n\n" +
			"--exec CMD runs CMD with sh -c for each change instead of printing it, with\n" +
			"KVS_EVENT_TYPE, KVS_EVENT_KEY, KVS_EVENT_VERSION and KVS_EVENT_VALUE_BASE64 in its\n" +
			"environment (and KVS_EVENT_VALUE when the value is text); one change at a time, in order.\n\n" +
			"Example:\n  kvsctl watch config/\n  kvsctl watch --rev 41 --json config/ | jq .\n" +
			"  kvsctl watch config/ --exec 'echo \"$KVS_EVENT_KEY changed\"; systemctl reload app'",
		Flags: clientFlags(jsonFlag(),
			&cli.Int64Flag{Name: "rev", Value: -1, Usage: "resume after revision `N` (default: from now)"},
			&cli.StringFlag{Name: "exec", Usage: "run `CMD` (with sh -c) for each change instead of printing it"},
			&cli.BoolFlag{Name: "no-values", Usage: "leave the values out"},
		),
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			prefix := a[0]
			if err := kvs.CheckList(prefix, ""); err != nil {
				return usagef("%w", err)
			}
			rev := c.Int64("rev")
			if c.IsSet("rev") && rev < 0 {
				return usagef("--rev must be a revision, a number >= 0")
			}
			req := client.WatchRequest{Prefix: prefix, After: rev, NoValues: c.Bool("no-values")}
			return withClient(c, fmt.Sprintf("watch %q", prefix), func(cl *client.Client) error {
				return runWatch(c.Context, cl, req, func(e kvs.Event) error {
					if cmd := c.String("exec"); cmd != "" {
						return execEvent(c.Context, cmd, e, c.App.Writer, c.App.ErrWriter)
					}
					return printEvent(c.App.Writer, e, c.Bool("json"))
				})
			})
		},
	})
}

// runWatch hands every change of req to fn until ctx ends (then it
// returns nil). A watch the server dropped for falling behind resumes
// after the last change handed out.
func runWatch(ctx context.Context, cl *client.Client, req client.WatchRequest, fn func(kvs.Event) error) error {
	for {
		w, err := cl.WatchWith(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for {
			e, err := w.Next()
			if err != nil {
				w.Close()
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, kvs.ErrWatchDropped) {
					req.After = w.Last()
					break
				}
				return err
			}
			if err := fn(e); err != nil {
				w.Close()
				return err
			}
		}
	}
}

// eventJSON is the --json form of a change.
type eventJSON struct {
	Type    kvs.EventType `json:"type"`
	Key     string        `json:"key"`
	Version int64         `json:"version"`
	Value   *string       `json:"value,omitempty"` // base64; puts only
}

func printEvent(w io.Writer, e kvs.Event, asJSON bool) error {
	if asJSON {
		out := eventJSON{Type: e.Type, Key: e.Key, Version: e.Version}
		if e.Type == kvs.EventPut && e.Value != nil {
			v := base64.StdEncoding.EncodeToString(e.Value)
			out.Value = &v
		}
		return json.NewEncoder(w).Encode(out) // one object per line
	}
	line := string(e.Type) + "\t" + strconv.FormatInt(e.Version, 10) + "\t" + e.Key
	if e.Type == kvs.EventPut && e.Value != nil {
		line += "\t" + textValue(e.Value)
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// textValue is the value as it is when it is plain text on one line, else
// quoted Go-style.
func textValue(v []byte) string {
	s := string(v)
	if utf8.ValidString(s) && !strings.ContainsAny(s, "\t\n\r\x00") && strconv.CanBackquote(s) && !strings.HasPrefix(s, `"`) {
		return s
	}
	return strconv.Quote(s)
}

// execEvent runs cmd for one change and waits for it. A command that fails
// is reported on stderr; the watch goes on.
func execEvent(ctx context.Context, cmd string, e kvs.Event, stdout, stderr io.Writer) error {
	x := exec.CommandContext(ctx, "sh", "-c", cmd)
	x.Stdout, x.Stderr = stdout, stderr
	x.Env = append(os.Environ(),
		"KVS_EVENT_TYPE="+string(e.Type),
		"KVS_EVENT_KEY="+e.Key,
		"KVS_EVENT_VERSION="+strconv.FormatInt(e.Version, 10),
		"KVS_EVENT_VALUE_BASE64="+base64.StdEncoding.EncodeToString(e.Value),
	)
	if utf8.Valid(e.Value) && !strings.ContainsRune(string(e.Value), 0) {
		x.Env = append(x.Env, "KVS_EVENT_VALUE="+string(e.Value))
	}
	if err := x.Run(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			fmt.Fprintf(stderr, "kvsctl: --exec for %s %q at revision %d: %v\n", e.Type, e.Key, e.Version, err)
			return nil
		}
		return fmt.Errorf("run --exec: %w", err)
	}
	return nil
}
