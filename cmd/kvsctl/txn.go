package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// The transaction command, and delete --prefix.

// maxTxnFile bounds a transaction file read by kvsctl txn; the server has
// its own, lower, limit.
const maxTxnFile = 64 << 20

func txnCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:      "txn",
		Usage:     "run a transaction: compares, then the success or the failure operations, atomically",
		UsageText: "kvsctl txn --file txn.json|- [--fail-on-compare] [--json]",
		Description: "Sends the transaction in FILE ('-': stdin) to the server (POST /v1/txn, docs/api.md) and\n" +
			"prints which branch ran, the revision of its writes and the result of each operation.\n" +
			"Values are base64. With --fail-on-compare, exits 4 when a compare failed (the failure\n" +
			"branch ran); without it that is a success.\n\n" +
			"Example (move a value from one key to another, only if neither changed):\n" +
			"  {\"compare\": [{\"key\": \"a\", \"version\": 7}, {\"key\": \"b\", \"exists\": false}],\n" +
			"   \"success\": [{\"op\": \"put\", \"key\": \"b\", \"value\": \"aGVsbG8=\"}, {\"op\": \"delete\", \"key\": \"a\"}],\n" +
			"   \"failure\": [{\"op\": \"get\", \"key\": \"a\"}]}\n" +
			"  kvsctl txn --file move.json --fail-on-compare",
		Flags: clientFlags(jsonFlag(),
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the transaction from `FILE` ('-': stdin)"},
			&cli.BoolFlag{Name: "fail-on-compare", Usage: "exit 4 when a compare failed"}),
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			file := c.String("file")
			if file == "" {
				return usagef("give the transaction with --file FILE, or --file - for stdin")
			}
			body, err := readTxnFile(c, file)
			if err != nil {
				return err
			}
			var res kvs.TxnResult
			if err := withClient(c, "txn", func(cl *client.Client) (err error) {
				res, err = cl.TxnJSON(c.Context, body)
				return err
			}); err != nil {
				return err
			}
			if c.Bool("json") {
				err = printJSON(c.App.Writer, res.Response())
			} else {
				err = printTxn(c.App.Writer, res)
			}
			if err != nil {
				return err
			}
			if !res.Succeeded && c.Bool("fail-on-compare") {
				return exitError{exitPrecondition, errors.New("txn: a compare failed: the failure branch ran")}
			}
			return nil
		},
	})
}

func readTxnFile(c *cli.Context, file string) ([]byte, error) {
	var r io.Reader = c.App.Reader
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("read transaction: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTxnFile+1))
	if err != nil {
		return nil, fmt.Errorf("read transaction: %w", err)
	}
	if len(b) > maxTxnFile {
		return nil, fmt.Errorf("read transaction: more than %d bytes", maxTxnFile)
	}
	return b, nil
}

// printTxn prints a transaction's result for people: the branch and the
// revision, then one line per operation.
func printTxn(w io.Writer, res kvs.TxnResult) error {
	branch := "success"
	if !res.Succeeded {
		branch = "failure"
	}
	if _, err := fmt.Fprintf(w, "%s (revision %d)\n", branch, res.Revision); err != nil {
		return err
	}
	for _, r := range res.Results {
		var line string
		switch r.Kind {
		case kvs.OpPut:
			line = fmt.Sprintf("put %s: version %d", safe(r.Key), r.Version)
		case kvs.OpDelete:
			line = fmt.Sprintf("delete %s: %d deleted", safe(r.Key), r.Deleted)
		case kvs.OpDeletePrefix:
			line = fmt.Sprintf("delete_prefix %s: %d deleted", safe(r.Key), r.Deleted)
		case kvs.OpGet:
			if !r.Found {
				line = fmt.Sprintf("get %s: not found", safe(r.Key))
			} else {
				line = fmt.Sprintf("get %s: version %d: %s", safe(r.Key), r.Version, strconv.Quote(string(r.Value)))
			}
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix is kvsctl delete --prefix P.
func deletePrefix(c *cli.Context, prefix string) error {
	if c.NArg() > 0 {
		return usagef("give a KEY or --prefix, not both")
	}
	if c.IsSet("if-version") {
		return usagef("--if-version does not go with --prefix")
	}
	if prefix == "" {
		return usagef("--prefix must not be empty (deleting every key is not supported)")
	}
	if err := kvs.CheckList(prefix, ""); err != nil {
		return usagef("%w", err)
	}
	var n int64
	if err := withClient(c, fmt.Sprintf("delete --prefix %q", prefix), func(cl *client.Client) (err error) {
		n, err = cl.DeletePrefix(c.Context, prefix)
		return err
	}); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, kvs.DeletePrefixResponse{Prefix: prefix, Deleted: n})
	}
	_, err := fmt.Fprintln(c.App.Writer, n)
	return err
}
