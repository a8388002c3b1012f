package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

func pkiInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show the certificates, CSRs and CRLs in a file (PEM or DER)",
		UsageText: "kvsctl pki inspect FILE [--json]",
		Description: "Prints subject, issuer, serial, validity and time left, SANs, key type and size, key\n" +
			"usages, extended key usages, CA flag and path length and the SHA-256 fingerprint of each\n" +
			"certificate; the subject, SANs, requested extensions and signature state of a CSR; the\n" +
			"number, this and next update and the revoked serials of a CRL. Private keys are never shown.\n\n" +
			"Examples:\n  kvsctl pki inspect certs/server.crt\n  kvsctl pki inspect certs/crl.pem --json",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			args, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			ins, err := pki.InspectFile(c.Context, args[0], time.Now())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, ins)
			}
			pkiPrintInspection(c.App.Writer, args[0], ins)
			return nil
		},
	}
}

func pkiVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a certificate: chain, validity, revocation, usage and hostname",
		UsageText: "kvsctl pki verify CERT [--ca FILE] [--crl FILE] [--host NAME] [--usage server|client] [--json]",
		Description: "Runs every check and prints each result. The CA defaults to the directory's ca.crt, and\n" +
			"then the CRL to its crl.pem; the CRL's own signature and next update are checked too.\n" +
			"Exits 0 only when no check fails; otherwise exits 1 and names the failed check.\n\n" +
			"Examples:\n  kvsctl pki verify certs/server.crt --host localhost --usage server\n" +
			"  kvsctl pki verify client.crt --ca server.crt   # self-signed mode: the peer is the CA",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "ca", Usage: "trusted CA certificate(s) (default: DIR/ca.crt)"},
			&cli.StringFlag{Name: "crl", Usage: "CRL to check revocation against (default with the default CA: DIR/crl.pem)"},
			&cli.StringFlag{Name: "host", Usage: "DNS name or IP address the certificate must be valid for"},
			&cli.StringFlag{Name: "usage", Usage: "server or client: the usage the certificate must allow"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			args, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			var usage pki.Profile
			if u := c.String("usage"); u != "" {
				if usage, err = pkiProfile(u); err != nil {
					return err
				}
			}
			rep, err := pki.VerifyFiles(c.Context, pki.VerifyFileOptions{
				Dir: pki.Dir(c.String("dir")), CertFile: args[0], CAFile: c.String("ca"),
				CRLFile: c.String("crl"), Host: c.String("host"), Usage: usage,
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, rep); err != nil {
					return err
				}
			} else {
				pkiPrintVerify(c.App.Writer, args[0], rep)
			}
			if failed := rep.Failed(); len(failed) > 0 {
				msgs := make([]string, len(failed))
				for i, f := range failed {
					msgs[i] = f.Name + ": " + f.Detail
				}
				return exitError{exitFailure, fmt.Errorf("check failed: %s", strings.Join(msgs, "; "))}
			}
			return nil
		},
	}
}

func pkiListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list every certificate the CA issued, with its status, and the CRL's state",
		UsageText: "kvsctl pki list [--json] [--dir DIR]",
		Description: "Shows serial, name, kind, expiry and status (valid, expiring within 30 days, expired,\n" +
			"revoked) of every certificate in the inventory, then the CRL's number and next update.\n" +
			"Warns on stderr when the CRL has expired or expires within 2 days.\n\n" +
			"Example:\n  kvsctl pki list --json | jq -r '.certificates[] | select(.status==\"expiring\") | .name'",
		Flags: []cli.Flag{dirFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			l, err := pki.List(c.Context, pki.Dir(c.String("dir")), time.Now())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				err = printJSON(c.App.Writer, l)
			} else {
				pkiPrintList(c.App.Writer, l)
			}
			resign := false
			for _, st := range l.CRLs {
				if st.Warning != "" {
					fmt.Fprintf(c.App.ErrWriter, "kvsctl: warning: %s (the CRL of %s)\n", safeText(st.Warning), safe(st.Issuer))
					resign = resign || st.NeedsResign
				}
			}
			if resign {
				fmt.Fprintln(c.App.ErrWriter, "hint: run 'kvsctl pki crl' to re-sign it (a daily cron job keeps it fresh; a root's CRL needs the root key imported)")
			}
			return err
		},
	}
}
