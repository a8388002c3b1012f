package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// kvsctl lease grant|keepalive|revoke|show.

func leaseCommand() *cli.Command {
	return &cli.Command{
		Name:  "lease",
		Usage: "leases: a TTL shared by keys that live and die together",
		Description: "A lease expires TTL after it was granted or last kept alive; then, or when it is revoked,\n" +
			"its keys are deleted (watchers see expire, or delete for a revoke). Bind keys with\n" +
			"kvsctl put --lease ID. A lease belongs to the identity that granted it.\n\n" +
			"Example:\n  id=$(kvsctl lease grant 30s) && kvsctl put --lease $id services/web/1 10.0.0.5:80\n" +
			"  kvsctl lease keepalive $id\n  kvsctl lease show $id\n  kvsctl lease revoke $id",
		Subcommands: []*cli.Command{
			leaseGrantCommand(), leaseIDCommand("keepalive", "start a lease's TTL again"),
			leaseIDCommand("revoke", "end a lease now and delete its keys"), leaseIDCommand("show", "print a lease's TTL, remaining time and keys"),
		},
	}
}

func leaseGrantCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:      "grant",
		Usage:     "create a lease and print its id",
		UsageText: "kvsctl lease grant [--json] TTL",
		Flags:     clientFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			ttl, err := parseTTLArg(a[0])
			if err != nil {
				return err
			}
			var l kvs.Lease
			if err := withClient(c, "grant lease", func(cl *client.Client) (err error) {
				l, err = cl.Grant(c.Context, ttl, "")
				return err
			}); err != nil {
				return err
			}
			return printLease(c, l, true)
		},
	})
}

func parseTTLArg(s string) (ttl time.Duration, err error) {
	ttl, err = time.ParseDuration(s)
	if err != nil {
		return 0, usagef("TTL %q: want a duration like 30s", s)
	}
	if err := kvs.CheckTTL(ttl); err != nil {
		return 0, usagef("TTL %s must be from %s to %s", ttl, kvs.MinTTL, kvs.MaxTTL)
	}
	return ttl, nil
}

func leaseIDCommand(name, usage string) *cli.Command {
	return withConfig(&cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "kvsctl lease " + name + " [--json] ID",
		Flags:     clientFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			id, err := strconv.ParseInt(a[0], 10, 64)
			if err != nil || id <= 0 {
				return usagef("lease id %q: want a number above 0", a[0])
			}
			var l kvs.Lease
			if err := withClient(c, fmt.Sprintf("%s lease %d", name, id), func(cl *client.Client) (err error) {
				switch name {
				case "keepalive":
					l, err = cl.KeepAlive(c.Context, id)
				case "revoke":
					err = cl.Revoke(c.Context, id)
				default:
					l, err = cl.LeaseInfo(c.Context, id)
				}
				return err
			}); err != nil {
				return err
			}
			if name == "revoke" {
				return nil
			}
			return printLease(c, l, false)
		},
	})
}

// printLease prints the id alone (grant) or the lease, or its JSON.
func printLease(c *cli.Context, l kvs.Lease, idOnly bool) error {
	if c.Bool("json") {
		return printJSON(c.App.Writer, kvs.LeaseResponseOf(l))
	}
	if idOnly {
		_, err := fmt.Fprintln(c.App.Writer, l.ID)
		return err
	}
	_, err := fmt.Fprintf(c.App.Writer, "lease %d: ttl %s, remaining %s, owner %s, keys: %s\n",
		l.ID, l.TTL, l.Remaining.Round(time.Millisecond), l.Owner, strings.Join(l.Keys, " "))
	return err
}
