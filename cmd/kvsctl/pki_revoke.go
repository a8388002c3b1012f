package main

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

func pkiRevokeCommand() *cli.Command {
	return &cli.Command{
		Name:      "revoke",
		Usage:     "revoke a certificate and write a new CRL of its CA",
		UsageText: "kvsctl pki revoke SERIAL|CERTFILE [--reason R] [--crl-days N]\n   kvsctl pki revoke --intermediate [SERIAL|CERTFILE] [--reason R] [--root-crl-days N]",
		Description: "Marks the certificate revoked in the inventory and signs a new CRL of the CA that issued it,\n" +
			"with the next CRL number; the other CRLs of crl.pem stay as they are. A leaf is revoked by\n" +
			"its intermediate (or the flat CA). --intermediate revokes an intermediate CA (default: the\n" +
			"issuing one): its root signs the revocation, so the root key must be here, and servers refuse\n" +
			"every certificate under it from then on; 'kvsctl pki ca rotate' makes a new one to issue from.\n" +
			"Reasons: keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation,\n" +
			"certificateHold, privilegeWithdrawn, unspecified (default).\n\n" +
			"Examples:\n  kvsctl pki revoke certs/issued/alice.crt --reason keyCompromise\n  kvsctl pki revoke 5d1c0e9a3f...\n" +
			"  kvsctl pki revoke --intermediate --reason cACompromise",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "reason", Usage: "RFC 5280 revocation reason"},
			&cli.BoolFlag{Name: "intermediate", Usage: "revoke an intermediate CA (the root signs its CRL)"},
			pkiCRLDaysFlag(),
			pkiRootCRLDaysFlag(),
			passphraseFileFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			min := 1
			if c.Bool("intermediate") {
				min = 0
			}
			args, err := args(c, min, 1)
			if err != nil {
				return err
			}
			if _, err := pki.ParseReason(c.String("reason")); err != nil {
				return usageError{err}
			}
			if c.Int("crl-days") < 1 || c.Int("root-crl-days") < 1 {
				return usagef("--crl-days and --root-crl-days must be at least 1")
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			d := pki.Dir(c.String("dir"))
			target := ""
			if len(args) > 0 {
				target = args[0]
			}
			rv, err := pki.Revoke(c.Context, pki.RevokeOptions{
				Dir: d, Target: target, Reason: c.String("reason"), Intermediate: c.Bool("intermediate"),
				Passphrase: pass, CRLDays: c.Int("crl-days"), RootCRLDays: c.Int("root-crl-days"),
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return pkiJSON(c.App.Writer, struct {
					pki.Record
					CRL pkiCRLJSON `json:"crl"`
				}{rv.Record, pkiCRLOf(d, rv.Issuer, rv.CRL, true, "")})
			}
			w := c.App.Writer
			rec := rv.Record
			fmt.Fprintf(w, "revoked %s certificate %q, serial %s (reason %s)\n", safe(rec.Kind), rec.Name, safe(rec.Serial), safe(rec.Reason))
			fmt.Fprintf(w, "wrote %s: CRL number %s of %s, valid until %s (in %s)\n", d.CRL(), rv.CRL.Number, safe(rv.Issuer.Subject.String()),
				pkiStamp(rv.CRL.NextUpdate), pki.HumanDuration(time.Until(rv.CRL.NextUpdate)))
			if rec.Kind == pki.KindIntermediate {
				fmt.Fprintln(w, "every certificate under it is refused once servers reload crl.pem; issue from a new intermediate: kvsctl pki ca rotate")
			}
			return nil
		},
	}
}

// pkiCRLJSON is a CRL of one CA in --json output.
type pkiCRLJSON struct {
	File         string    `json:"file"`
	Issuer       string    `json:"issuer"`
	IssuerSerial string    `json:"issuer_serial"`
	Number       string    `json:"number,omitempty"`
	Revoked      int       `json:"revoked"`
	NextUpdate   time.Time `json:"next_update,omitzero"`
	Resigned     bool      `json:"resigned"`
	Note         string    `json:"note,omitempty"`
}

func pkiCRLOf(d pki.Dir, issuer *x509.Certificate, rl *x509.RevocationList, resigned bool, note string) pkiCRLJSON {
	out := pkiCRLJSON{File: d.CRL(), Issuer: issuer.Subject.String(), IssuerSerial: pki.SerialHex(issuer), Resigned: resigned, Note: note}
	if rl != nil {
		if rl.Number != nil {
			out.Number = rl.Number.String()
		}
		out.Revoked, out.NextUpdate = len(rl.RevokedCertificateEntries), rl.NextUpdate.UTC()
	}
	return out
}

func pkiCRLCommand() *cli.Command {
	return &cli.Command{
		Name:      "crl",
		Usage:     "re-sign the CRLs with a new lifetime (run it from cron)",
		UsageText: "kvsctl pki crl [--days N] [--root-days N] [--dir DIR] [--json]",
		Description: "Signs a new CRL, with the next CRL number and listing every revoked certificate, for every CA\n" +
			"whose key is here: the issuing intermediate (or flat CA), the intermediates a rotation replaced,\n" +
			"and the root when its key is back from offline (--root-days, default 180). A CA whose key is\n" +
			"offline keeps its CRL, and the output says until when it holds. Every entry of the current\n" +
			"CRLs is kept (each must verify against its CA): editing inventory.json cannot take a\n" +
			"revocation off a CRL. Servers refuse every client of a CA once its CRL has expired, so re-sign\n" +
			"well before: the default lifetime is 7 days, and a daily cron job keeps it fresh.\n\n" +
			"Example (crontab):\n  0 3 * * *  cd /srv/kvs && kvsctl pki crl --days 7",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.IntFlag{Name: "days", Value: pki.DefaultCRLDays, Usage: "lifetime of the new CRLs of CAs that sign leaves, in days"},
			&cli.IntFlag{Name: "root-days", Value: pki.DefaultRootCRLDays, Usage: "lifetime of a root's new CRL, in days"},
			passphraseFileFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			if c.Int("days") < 1 || c.Int("root-days") < 1 {
				return usagef("--days and --root-days must be at least 1")
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			d := pki.Dir(c.String("dir"))
			ups, err := pki.UpdateCRL(c.Context, pki.CRLOptions{Dir: d, Passphrase: pass, Days: c.Int("days"), RootDays: c.Int("root-days")})
			if err != nil {
				return err
			}
			return pkiPrintCRLUpdates(c, d, ups)
		},
	}
}

func pkiPrintCRLUpdates(c *cli.Context, d pki.Dir, ups []pki.CRLUpdate) error {
	if c.Bool("json") {
		out := make([]pkiCRLJSON, 0, len(ups))
		for _, u := range ups {
			out = append(out, pkiCRLOf(d, u.Issuer, u.CRL, u.Resigned, u.Note))
		}
		return pkiJSON(c.App.Writer, out)
	}
	w := c.App.Writer
	for _, u := range ups {
		who := safe(u.Issuer.Subject.CommonName)
		switch {
		case u.Resigned:
			fmt.Fprintf(w, "wrote %s: CRL number %s of %s, %d revoked, valid until %s (in %s)\n",
				d.CRL(), u.CRL.Number, who, len(u.CRL.RevokedCertificateEntries), pkiStamp(u.CRL.NextUpdate), pki.HumanDuration(time.Until(u.CRL.NextUpdate)))
		case u.CRL != nil:
			fmt.Fprintf(w, "kept the CRL number %s of %s, valid until %s (%s): %s\n", u.CRL.Number, who, pkiStamp(u.CRL.NextUpdate), pkiCRLLeft(u.CRL.NextUpdate), safeText(u.Note))
		default:
			fmt.Fprintf(w, "no CRL of %s: %s\n", who, safeText(u.Note))
		}
	}
	return nil
}

func pkiRenewCommand() *cli.Command {
	return &cli.Command{
		Name:      "renew",
		Usage:     "renew a certificate: same subject, SANs and usage, new validity",
		UsageText: "kvsctl pki renew CERTFILE [--days N|--ttl D] [--reuse-key] [--revoke-old] [--json]\n   kvsctl pki renew --daemon --ca-url URL --cert F --key F [--cert F --key F ...] [--exec CMD]",
		Description: "Issues a new certificate like CERTFILE and writes it over CERTFILE atomically, with a new\n" +
			"key of the same type over the .key next to it (or the old key with --reuse-key). Works for\n" +
			"server.crt and client.crt in the directory's root too, and in self-signed mode.\n" +
			"The issuing CA signs the new certificate, also when an older intermediate signed the old one.\n" +
			"--days (or --ttl) defaults to the old certificate's lifetime, shortened to end with the\n" +
			"issuing CA. --revoke-old revokes the old one (reason superseded) and writes a new CRL.\n\n" +
			"--daemon (on any host, with the online CA of 'kvsctl pki serve'): renews each --cert/--key\n" +
			"pair over mutual TLS when two thirds of its lifetime have passed (with some jitter), with a new\n" +
			"key, replacing both files atomically, then runs --exec; it retries with backoff while the CA is\n" +
			"away, keeps --ca-file up to date, and exits non-zero once a certificate expired unrenewed.\n" +
			"'kvsctl serve' and the clients re-read renewed files by themselves.\n\n" +
			"Examples:\n  kvsctl pki renew certs/server.crt --revoke-old\n" +
			"  kvsctl pki renew --daemon --ca-url https://ca.example.com:7444 --cert certs/server.crt --key certs/server.key",
		Flags: append([]cli.Flag{
			dirFlag(),
			pkiDaysFlag("validity in days (default: the old certificate's lifetime)"),
			pkiTTLFlag(),
			&cli.BoolFlag{Name: "reuse-key", Usage: "keep the old key pair"},
			&cli.BoolFlag{Name: "revoke-old", Usage: "revoke the old certificate and write a new CRL"},
			pkiCRLDaysFlag(),
			passphraseFileFlag(),
			jsonFlag(),
		}, agentFlags()...),
		Action: func(c *cli.Context) error {
			if c.Bool("daemon") {
				return pkiAgent(c)
			}
			args, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			days, ttl, err := pkiValidity(c)
			if err != nil {
				return err
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			r, err := pki.Renew(c.Context, pki.RenewOptions{
				Dir: pki.Dir(c.String("dir")), CertFile: args[0], Days: days, TTL: ttl,
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
