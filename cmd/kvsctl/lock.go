package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// kvsctl lock NAME [--ttl 15s] -- CMD ARGS.

func lockCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:            "lock",
		HideHelpCommand: true,
		Usage:           "run a command while holding a lock",
		UsageText:       "kvsctl lock [--ttl 15s] NAME -- CMD [ARGS...]",
		Description: "Waits until it holds the lock NAME (a key), runs CMD, and releases the lock when CMD\n" +
			"exits; kvsctl exits with CMD's exit code. The lock is a key created only if it does not\n" +
			"exist, bound to a lease of --ttl that kvsctl keeps alive while CMD runs: if kvsctl dies\n" +
			"(even with SIGKILL) the lock is free again after the TTL. Waiters are woken by a watch\n" +
			"of the key, not by polling. CMD gets KVS_LOCK_NAME and KVS_LOCK_REVISION, the version of\n" +
			"the lock key, which grows with every holder: a resource can refuse writes carrying a\n" +
			"revision older than one it has seen (fencing). If the lease cannot be kept alive, CMD\n" +
			"gets SIGTERM and kvsctl exits 1: another holder may have the lock.\n\n" +
			"Example:\n  kvsctl lock locks/migrate -- ./migrate.sh\n  kvsctl lock --ttl 30s locks/backup -- sh -c 'pg_dump db > db.sql'",
		Flags: clientFlags(&cli.DurationFlag{Name: "ttl", Value: client.DefaultLockTTL, Usage: "lease `TTL` of the lock (how long a dead holder keeps it)"}),
		Action: func(c *cli.Context) error {
			a, err := args(c, 2, -1)
			if err != nil {
				return usagef("want the lock NAME and the command: kvsctl lock NAME -- CMD ARGS")
			}
			name, argv := a[0], a[1:]
			if err := kvs.ValidateKey(name); err != nil {
				return usagef("%w", err)
			}
			ttl := c.Duration("ttl")
			if err := kvs.CheckTTL(ttl); err != nil {
				return usagef("--ttl %s must be from %s to %s", ttl, kvs.MinTTL, kvs.MaxTTL)
			}
			var code int
			err = withClient(c, fmt.Sprintf("lock %q", name), func(cl *client.Client) error {
				l, err := cl.Lock(c.Context, name, ttl)
				if err != nil {
					return err
				}
				code, err = runLocked(c, l, argv)
				if uerr := l.Unlock(context.WithoutCancel(c.Context)); err == nil {
					err = uerr
				}
				return err
			})
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code, errors.New("")}
			}
			return nil
		},
	})
}

// runLocked runs argv until it exits, or until the lock is lost (then it
// gets SIGTERM, and after 10s SIGKILL). It returns the command's exit code.
func runLocked(c *cli.Context, l *client.Lock, argv []string) (int, error) {
	cmd := exec.CommandContext(l.Context(), argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.App.Reader, c.App.Writer, c.App.ErrWriter
	cmd.Env = append(os.Environ(), "KVS_LOCK_NAME="+l.Key, "KVS_LOCK_REVISION="+strconv.FormatInt(l.Revision, 10))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if cause := context.Cause(l.Context()); errors.Is(cause, client.ErrLockLost) {
		return 1, cause
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil // as a shell reports it
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, fmt.Errorf("run %s: %w", argv[0], err)
	}
	return 0, nil
}
