package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes, documented in the README.
const (
	exitOK           = 0
	exitFailure      = 1
	exitUsage        = 2
	exitNotFound     = 3
	exitPrecondition = 4
	exitRejected     = 5
)

// usageError marks a mistake in the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usage error with a formatted message.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitError carries an explicit exit code (for example 'pki verify' failing a
// check).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func onUsageError(c *cli.Context, err error, _ bool) error {
	help := "kvsctl --help"
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		help = "kvsctl " + c.Command.FullName() + " --help"
	}
	return usageError{fmt.Errorf("%w (see '%s')", err, help)}
}

// markUsageErrors makes every command report flag errors as usage errors.
func markUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
		markUsageErrors(c.Subcommands)
	}
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var ee exitError
	var ue usageError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return exitUsage
	case strings.HasPrefix(err.Error(), "flag provided but not defined"),
		strings.HasPrefix(err.Error(), "Required flag"),
		strings.HasPrefix(err.Error(), "No help topic"):
		return exitUsage
	}
	return classify(err)
}

// report prints the error as one line on stderr, "kvsctl: <message>", and
// returns its exit code.
func report(stderr io.Writer, err error) int {
	msg := err.Error()
	if msg != "" {
		fmt.Fprintf(stderr, "kvsctl: %s\n", msg)
	}
	return exitCode(err)
}
