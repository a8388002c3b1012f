// Command kvsctl is a certificate toolkit and a mutual-TLS key-value store in
// one binary. Run 'kvsctl help' for the commands.
//
// This package only parses flags, calls one library function per command and
// prints; the work is done in the pki, kvs and attack packages.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code. Tests call it
// directly, so they exercise the same code path as the binary.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		return report(stderr, err)
	}
	return exitOK
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "kvsctl",
		Usage:   "a certificate toolkit and a mutual-TLS key-value store",
		Version: version,
		Description: "kvsctl creates a local CA and certificates (kvsctl pki), serves a key-value store\n" +
			"that only talks to clients holding one of them (kvsctl serve, get, put, delete, list),\n" +
			"and proves that rogue clients and servers are refused (kvsctl attack).\n\n" +
			"Quick start:\n  kvsctl pki init && kvsctl serve &\n  kvsctl put hello world && kvsctl get hello",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			pkiCommand(),
			serveCommand(),
			getCommand(),
			putCommand(),
			deleteCommand(),
			listCommand(),
			healthCommand(),
			attackCommand(),
			benchCommand(),
		},
		// main decides exit codes; never let cli call os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	app.OnUsageError = onUsageError
	markUsageErrors(app.Commands)
	return app
}
