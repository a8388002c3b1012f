// Command kvsctl is a certificate toolkit and a mutual-TLS key-value store in
// one binary. Run 'kvsctl help' for the commands.
//
// This package parses flags into a configuration, makes one library call
// per command and prints the result (text, or JSON with --json); the work
// is done in the pki, kvs and attack packages. Only main chooses an exit
// code and prints an error, with a hint line for the usual mistakes
// (hints.go). The command list is explicit below, one file per command
// group; flags shared by several commands live in flags.go.
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
	if err := app.RunContext(ctx, interleave(app, args)); err != nil {
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
			"Flags may come before or after the arguments; '--' ends the flags. Every flag a\n" +
			"deployment sets can also come from the environment (KVS_ and the flag's name, e.g.\n" +
			"KVS_STORE, KVS_SERVER) or, for serve and the client commands, from --config FILE\n" +
			"(YAML): a flag wins over the environment, which wins over the file.\n\n" +
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
			watchCommand(),
			leaseCommand(),
			lockCommand(),
			txnCommand(),
			exportCommand(),
			importCommand(),
			snapshotCommand(),
			healthCommand(),
			attackCommand(),
			benchCommand(),
			completionCommand(),
			manCommand(),
		},
		// main decides exit codes; never let cli call os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	app.OnUsageError = onUsageError
	markUsageErrors(app.Commands)
	return app
}
