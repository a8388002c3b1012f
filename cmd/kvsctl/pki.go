package main

import (
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"github.com/urfave/cli/v2"
)

// pkiCommand is 'kvsctl pki': the certificate toolkit.
//
// Every text output of the pki commands shows certificate, CSR and CRL
// text through safe (values) or safeText (prose and errors), so that a
// subject or a SAN cannot carry an escape sequence to the terminal; JSON
// output is exact.
func pkiCommand() *cli.Command {
	cmd := &cli.Command{
		Name:  "pki",
		Usage: "create and manage the certificates of kvsctl (a CA hierarchy, a flat CA, or self-signed pairs)",
		Description: "The pki commands keep a PKI in one directory (--dir, env KVS_CERTS, default certs):\n" +
			"a root CA, the issuing intermediate it signed, the server and client certificates, a\n" +
			"signed CRL per CA and an inventory of everything the CAs issued. Keys are written 0600,\n" +
			"certificates 0644, the directory 0700. certs/README.md describes every file.\n\n" +
			"Start with 'kvsctl pki init', then 'kvsctl serve'.",
		Subcommands: []*cli.Command{
			pkiInitCommand(),
			pkiIssueCommand(),
			pkiSignCommand(),
			pkiInspectCommand(),
			pkiVerifyCommand(),
			pkiListCommand(),
			pkiRevokeCommand(),
			pkiCRLCommand(),
			pkiRenewCommand(),
			pkiExportCommand(),
			pkiTrustCommand(),
			pkiCSRCommand(),
			pkiCACommand(),
			pkiRootCommand(),
			pkiServeCommand(),
			pkiTokenCommand(),
			pkiEnrollCommand(),
		},
	}
	safeErrors(cmd.Subcommands)
	return cmd
}

func pkiKeyTypeFlag() *cli.StringFlag {
	names := make([]string, len(pki.KeyTypes))
	for i, t := range pki.KeyTypes {
		names[i] = string(t)
	}
	return &cli.StringFlag{Name: "key-type", Value: string(pki.RSA2048), Usage: "key algorithm: " + strings.Join(names, ", ")}
}

func pkiDaysFlag(usage string) *cli.IntFlag {
	return &cli.IntFlag{Name: "days", Usage: usage}
}

func pkiForceFlag(usage string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: "force", Usage: usage}
}

func pkiCRLDaysFlag() *cli.IntFlag {
	return &cli.IntFlag{Name: "crl-days", Value: pki.DefaultCRLDays, Usage: "lifetime of the CRL written, in days"}
}

func pkiHostsFlag(usage string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: "hosts", Usage: usage + " (repeatable or comma-separated)"}
}

func pkiRootCRLDaysFlag() *cli.IntFlag {
	return &cli.IntFlag{Name: "root-crl-days", Value: pki.DefaultRootCRLDays, Usage: "lifetime of a root's CRL, in days (the root key is offline most of the time)"}
}

func pkiTTLFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "ttl", Usage: "validity as a duration instead of --days: 5m, 24h, 90d, 1d12h (at least 5m)"}
}

// pkiValidity reads --days and --ttl, of which at most one may be given.
func pkiValidity(c *cli.Context) (int, time.Duration, error) {
	days, ttl := c.Int("days"), c.String("ttl")
	if days < 0 || days > pki.MaxLeafDays {
		return 0, 0, usagef("--days must be 1 to %d", pki.MaxLeafDays)
	}
	if ttl == "" {
		return days, 0, nil
	}
	if days != 0 {
		return 0, 0, usagef("give --days or --ttl, not both")
	}
	d, err := pki.ParseTTL(ttl)
	if err != nil {
		return 0, 0, usageError{err}
	}
	if d < pki.MinLeafTTL {
		return 0, 0, usagef("--ttl %s is too short: use at least %s", ttl, pki.MinLeafTTL)
	}
	if d > time.Duration(pki.MaxLeafDays)*24*time.Hour {
		return 0, 0, usagef("--ttl %s is too long: use at most %dd", ttl, pki.MaxLeafDays)
	}
	return 0, d, nil
}

// pkiConstraintFlags are the name constraints of a new CA.
func pkiConstraintFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "permit-dns", Usage: "DNS domain " + what + " may sign for (example.com: it and every name below it; repeatable)"},
		&cli.StringSliceFlag{Name: "permit-ip", Usage: "IP range " + what + " may sign for, as CIDR (127.0.0.0/8, ::1/128; repeatable)"},
		&cli.StringSliceFlag{Name: "permit-email", Usage: "e-mail constraint: an address, a host (example.com) or .example.com (repeatable)"},
		&cli.StringSliceFlag{Name: "permit-uri", Usage: "domain the host of a URI SAN must be: example.org, or .example.org for hosts below it (repeatable)"},
		&cli.BoolFlag{Name: "constrain-root", Usage: "put the name constraints on the root too (recommended before 'pki trust install')"},
	}
}

// pkiConstraints parses the --permit-* flags; nil when none is given.
func pkiConstraints(c *cli.Context) (*pki.NameConstraints, error) {
	nc, err := pki.ParseNameConstraints(c.StringSlice("permit-dns"), c.StringSlice("permit-ip"), c.StringSlice("permit-email"), c.StringSlice("permit-uri"))
	if err != nil {
		return nil, usageError{err}
	}
	if nc.Empty() {
		if c.Bool("constrain-root") {
			return nil, usagef("--constrain-root needs name constraints: give --permit-dns, --permit-ip, --permit-email or --permit-uri")
		}
		return nil, nil
	}
	return &nc, nil
}
