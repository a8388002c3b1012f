package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// export and import: keys as JSON lines, for people and scripts.

// exportLine is one line of kvsctl export and kvsctl import.
type exportLine struct {
	Key     string `json:"key"`
	Value   string `json:"value"`             // base64
	Version int64  `json:"version,omitempty"` // export: the key's version; import ignores it
	Lease   int64  `json:"lease,omitempty"`
}

func exportCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:            "export",
		HideHelpCommand: true,
		Usage:           "print keys and values as JSON lines",
		UsageText:       "kvsctl export [PREFIX] > keys.jsonl",
		Description: "Prints one line per key that starts with PREFIX (all keys without one), in byte order:\n" +
			"{\"key\", \"value\" (base64), \"version\"}. It pages through the keys and reads each (the\n" +
			"policy's list and read): keys written meanwhile may or may not be in it. For a copy of\n" +
			"the whole store at one revision use 'kvsctl snapshot save'.\n\n" +
			"Example:\n  kvsctl export config/ > config.jsonl",
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			a, err := args(c, 0, 1)
			if err != nil {
				return err
			}
			var prefix string
			if len(a) == 1 {
				prefix = a[0]
			}
			w := bufio.NewWriter(c.App.Writer)
			err = withClient(c, fmt.Sprintf("export %q", prefix), func(cl *client.Client) error {
				for k, err := range cl.Keys(c.Context, prefix, kvs.MaxPageSize, 0) {
					if err != nil {
						return err
					}
					e, err := cl.Get(c.Context, k.Key)
					if errors.Is(err, kvs.ErrNotFound) {
						continue // deleted since it was listed
					}
					if err != nil {
						return err
					}
					b, err := json.Marshal(exportLine{Key: e.Key, Value: base64.StdEncoding.EncodeToString(e.Value), Version: e.Version})
					if err != nil {
						return err
					}
					if _, err := w.Write(append(b, '\n')); err != nil {
						return err
					}
				}
				return nil
			})
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	})
}

func importCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:            "import",
		HideHelpCommand: true,
		Usage:           "store the keys of a JSON lines file (kvsctl export's format)",
		UsageText:       "kvsctl import [--batch N] [--json] keys.jsonl|-",
		Description: "Reads lines {\"key\", \"value\" (base64)} (a version is ignored; blank lines are skipped)\n" +
			"and stores them with one transaction per batch of N lines. A malformed line stops the\n" +
			"import with its line number before its batch is sent: nothing of that batch is\n" +
			"written, the batches before it are. Prints the number of keys stored.\n\n" +
			"Example:\n  kvsctl import config.jsonl",
		Flags: clientFlags(jsonFlag(),
			&cli.IntFlag{Name: "batch", Value: kvs.DefaultMaxTxnOps, Usage: "keys per transaction, at most the server's --max-txn-ops"}),
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			batch := c.Int("batch")
			if batch < 1 {
				return usagef("--batch must be at least 1")
			}
			var r io.Reader = c.App.Reader
			if a[0] != "-" {
				f, err := os.Open(a[0])
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer f.Close()
				r = f
			}
			var n int64
			err = withClient(c, "import", func(cl *client.Client) error {
				var err error
				n, err = importLines(c, cl, r, batch)
				return err
			})
			if err != nil {
				return fmt.Errorf("%w (%d keys stored before)", err, n)
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, map[string]int64{"imported": n})
			}
			_, err = fmt.Fprintln(c.App.Writer, n)
			return err
		},
	})
}

// importLines stores the lines of r in transactions of batch puts and
// returns how many keys it stored.
func importLines(c *cli.Context, cl *client.Client, r io.Reader, batch int) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	var (
		n    int64
		ops  []kvs.Op
		line int
	)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if _, err := cl.Txn(c.Context, kvs.Txn{Success: ops}); err != nil {
			return fmt.Errorf("lines %d-%d: %w", line-len(ops)+1, line, err)
		}
		n += int64(len(ops))
		ops = ops[:0]
		return nil
	}
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			if err := flush(); err != nil { // keep line numbers of a batch contiguous
				return n, err
			}
			continue
		}
		var l exportLine
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return n, fmt.Errorf("line %d: not a JSON object {\"key\", \"value\"}: %w", line, err)
		}
		if dec.More() {
			return n, fmt.Errorf("line %d: more than one JSON value", line)
		}
		if err := kvs.ValidateKey(l.Key); err != nil {
			return n, fmt.Errorf("line %d: %w", line, err)
		}
		v, err := base64.StdEncoding.DecodeString(l.Value)
		if err != nil {
			return n, fmt.Errorf("line %d: value is not base64: %w", line, err)
		}
		ops = append(ops, kvs.Op{Kind: kvs.OpPut, Key: l.Key, Value: v, Lease: l.Lease})
		if len(ops) == batch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("line %d: %w", line+1, err)
	}
	return n, flush()
}
