package main

import (
	"strings"

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
		Usage: "create and manage the certificates of kvsctl (a local CA, or self-signed pairs)",
		Description: "The pki commands keep a PKI in one directory (--dir, env KVS_CERTS, default certs):\n" +
			"a root CA, the server and client certificates, a signed CRL and an inventory of\n" +
			"everything the CA issued. Keys are written 0600, certificates 0644, the directory 0700.\n\n" +
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
