package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

func pkiRevokeCommand() *cli.Command {
	return &cli.Command{
		Name:      "revoke",
		Usage:     "revoke a certificate and write a new CRL",
		UsageText: "kvsctl pki revoke SERIAL|CERTFILE [--reason R] [--crl-days N]",
		Description: "Marks the certificate revoked in the inventory and signs a new CRL with the next CRL\n" +
			"number. Reasons: keyCompromise, cACompromise, affiliationChanged, superseded,\n" +
			"cessationOfOperation, certificateHold, privilegeWithdrawn, unspecified (default).\n\n" +
			"Examples:\n  kvsctl pki revoke certs/issued/alice.crt --reason keyCompromise\n  kvsctl pki revoke 5d1c0e9a3f...",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "reason", Usage: "RFC 5280 revocation reason"},
			pkiCRLDaysFlag(),
			passphraseFileFlag(),
		},
		Action: func(c *cli.Context) error {
			args, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			if _, err := pki.ParseReason(c.String("reason")); err != nil {
				return usageError{err}
			}
			if c.Int("crl-days") < 1 {
				return usagef("--crl-days must be at least 1")
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			d := pki.Dir(c.String("dir"))
			rec, next, err := pki.Revoke(context.Background(), pki.RevokeOptions{
				Dir: d, Target: args[0], Reason: c.String("reason"), Passphrase: pass, CRLDays: c.Int("crl-days"),
			})
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "revoked %s certificate %q, serial %s (reason %s)\n", safe(rec.Kind), rec.Name, safe(rec.Serial), safe(rec.Reason))
			fmt.Fprintf(w, "wrote %s, valid until %s (in %s)\n", d.CRL(), pkiStamp(next), pki.HumanDuration(time.Until(next)))
			return nil
		},
	}
}

func pkiCRLCommand() *cli.Command {
	return &cli.Command{
		Name:      "crl",
		Usage:     "re-sign the CRL with a new lifetime (run it from cron)",
		UsageText: "kvsctl pki crl [--days N] [--dir DIR]",
		Description: "Signs a new CRL with the next CRL number, listing every revoked certificate, and prints\n" +
			"when it expires. Every entry of the current crl.pem is kept (it must verify against the CA):\n" +
			"editing inventory.json cannot take a revocation off the CRL.\n" +
			"Servers refuse every client once the CRL has expired, so re-sign it well\n" +
			"before: the default lifetime is 7 days, and a daily cron job keeps it fresh.\n\n" +
			"Example (crontab):\n  0 3 * * *  cd /srv/kvs && kvsctl pki crl --days 7",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.IntFlag{Name: "days", Value: pki.DefaultCRLDays, Usage: "lifetime of the new CRL, in days"},
			passphraseFileFlag(),
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			if c.Int("days") < 1 {
				return usagef("--days must be at least 1")
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			d := pki.Dir(c.String("dir"))
			rl, err := pki.UpdateCRL(c.Context, pki.CRLOptions{Dir: d, Passphrase: pass, Days: c.Int("days")})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s: CRL number %s, %d revoked, valid until %s (in %s)\n",
				d.CRL(), rl.Number, len(rl.RevokedCertificateEntries), pkiStamp(rl.NextUpdate), pki.HumanDuration(time.Until(rl.NextUpdate)))
			return nil
		},
	}
}

func pkiRenewCommand() *cli.Command {
	return &cli.Command{
		Name:      "renew",
		Usage:     "renew a certificate: same subject, SANs and usage, new validity",
		UsageText: "kvsctl pki renew CERTFILE [--days N] [--reuse-key] [--revoke-old] [--json]",
		Description: "Issues a new certificate like CERTFILE and writes it over CERTFILE atomically, with a new\n" +
			"key of the same type over the .key next to it (or the old key with --reuse-key). Works for\n" +
			"server.crt and client.crt in the directory's root too, and in self-signed mode.\n" +
			"--days defaults to the old certificate's lifetime. --revoke-old revokes the old one\n" +
			"(reason superseded) and writes a new CRL.\n\n" +
			"Example:\n  kvsctl pki renew certs/server.crt --revoke-old",
		Flags: []cli.Flag{
			dirFlag(),
			pkiDaysFlag("validity in days (default: the old certificate's lifetime)"),
			&cli.BoolFlag{Name: "reuse-key", Usage: "keep the old key pair"},
			&cli.BoolFlag{Name: "revoke-old", Usage: "revoke the old certificate and write a new CRL"},
			pkiCRLDaysFlag(),
			passphraseFileFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			args, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			if c.Int("days") < 0 || c.Int("days") > pki.MaxLeafDays {
				return usagef("--days must be 1 to %d", pki.MaxLeafDays)
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			r, err := pki.Renew(c.Context, pki.RenewOptions{
				Dir: pki.Dir(c.String("dir")), CertFile: args[0], Days: c.Int("days"),
				ReuseKey: c.Bool("reuse-key"), RevokeOld: c.Bool("revoke-old"),
				Passphrase: pass, CRLDays: c.Int("crl-days"),
			})
			if err != nil {
				return err
			}
			return pkiPrintRenewed(c, r)
		},
	}
}
