package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"github.com/urfave/cli/v2"
)

// pkiCommand is 'kvsctl pki': the certificate toolkit.
func pkiCommand() *cli.Command {
	return &cli.Command{
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

// keyType parses --key-type as a usage error.
func pkiKeyType(c *cli.Context) (pki.KeyType, error) {
	t, err := pki.ParseKeyType(c.String("key-type"))
	if err != nil {
		return "", usageError{err}
	}
	return t, nil
}

// profile parses a server|client word as a usage error.
func pkiProfile(s string) (pki.Profile, error) {
	p, err := pki.ParseProfile(s)
	if err != nil {
		return "", usageError{err}
	}
	return p, nil
}

func pkiInitCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a CA with a server and a client certificate (or a self-signed pair)",
		UsageText: "kvsctl pki init [--self-signed] [--hosts H,...] [--client NAME] [--key-type T] [--passphrase-file F] [--crl-days N] [--force] [--dir DIR]",
		Description: "CA mode (default): a root CA (10 years, CA:TRUE critical, path length 0), a server\n" +
			"certificate for --hosts (default localhost, 127.0.0.1, ::1 and this host's name), a client\n" +
			"certificate (CN from --client), an empty signed CRL and the inventory.\n" +
			"--self-signed: the original set-up, a self-signed server and client certificate, each side\n" +
			"trusting exactly the other's. Refuses to replace an existing PKI without --force.\n\n" +
			"Example:\n  kvsctl pki init --hosts localhost,127.0.0.1,kvs.example.com --client alice",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.BoolFlag{Name: "self-signed", Usage: "no CA: self-signed server and client certificates that pin each other"},
			pkiHostsFlag("server DNS names and IP addresses"),
			&cli.StringFlag{Name: "client", Value: "client", Usage: "common name of the client certificate"},
			pkiKeyTypeFlag(),
			passphraseFileFlag(),
			pkiCRLDaysFlag(),
			pkiForceFlag("replace an existing PKI"),
		},
		Action: pkiInit,
	}
}

func pkiInit(c *cli.Context) error {
	if _, err := pkiArgs(c, 0, 0); err != nil {
		return err
	}
	kt, err := pkiKeyType(c)
	if err != nil {
		return err
	}
	pass, err := passphrase(c)
	if err != nil {
		return err
	}
	if c.Int("crl-days") < 1 {
		return usagef("--crl-days must be at least 1")
	}
	d := pki.Dir(c.String("dir"))
	res, err := pki.Init(c.Context, pki.InitOptions{
		Dir: d, SelfSigned: c.Bool("self-signed"), Hosts: c.StringSlice("hosts"),
		Client: c.String("client"), KeyType: kt, Passphrase: pass,
		Force: c.Bool("force"), CRLDays: c.Int("crl-days"),
	})
	if err != nil {
		return err
	}
	pkiPrintInit(c.App.Writer, d, kt, len(pass) > 0, res)
	return nil
}

func pkiIssueCommand() *cli.Command {
	return &cli.Command{
		Name:      "issue",
		Usage:     "issue a new server or client certificate from the CA",
		UsageText: "kvsctl pki issue server|client NAME [--hosts H,...] [--days N] [--key-type T] [--force] [--json]",
		Description: "Creates a key and a certificate signed by the CA, writes issued/NAME.key (0600) and\n" +
			"issued/NAME.crt, and records the certificate in the inventory. A server certificate is\n" +
			"valid for --hosts (default: NAME); NAME is the certificate's common name.\n\n" +
			"Examples:\n  kvsctl pki issue client alice --days 90\n  kvsctl pki issue server kvs2 --hosts kvs2.example.com,10.0.0.7",
		Flags: []cli.Flag{
			dirFlag(),
			pkiHostsFlag("server DNS names and IP addresses"),
			pkiDaysFlag(fmt.Sprintf("validity in days (1 to %d, default %d)", pki.MaxLeafDays, pki.DefaultLeafDays)),
			pkiKeyTypeFlag(),
			pkiForceFlag("replace issued/NAME.crt and .key"),
			passphraseFileFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			args, err := pkiArgs(c, 2, 2)
			if err != nil {
				return err
			}
			p, err := pkiProfile(args[0])
			if err != nil {
				return err
			}
			kt, err := pkiKeyType(c)
			if err != nil {
				return err
			}
			if err := pki.CheckName(args[1]); err != nil {
				return usageError{err}
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			iss, err := pki.Issue(c.Context, pki.IssueOptions{
				Dir: pki.Dir(c.String("dir")), Profile: p, Name: args[1], Hosts: c.StringSlice("hosts"),
				Days: c.Int("days"), KeyType: kt, Passphrase: pass, Force: c.Bool("force"),
			})
			if err != nil {
				return err
			}
			return pkiPrintIssued(c, "issued", iss)
		},
	}
}

func pkiSignCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "sign an external certificate signing request (CSR) with the CA",
		UsageText: "kvsctl pki sign CSR --profile server|client [--days N] [--name NAME] [--force] [--json]",
		Description: "Checks the CSR's self-signature and key, then issues a certificate that copies ONLY\n" +
			"the CSR's subject and subject alternative names; every other extension the CSR asks for\n" +
			"(CA:TRUE, key usages, ...) is ignored. A server CSR without SANs gets its common name as\n" +
			"the DNS name. Writes issued/NAME.crt (NAME defaults to the common name) and records it.\n\n" +
			"Example:\n  openssl req -new -newkey rsa:2048 -nodes -keyout web.key -out web.csr -subj /CN=web.example.com\n" +
			"  kvsctl pki sign web.csr --profile server --days 90",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "profile", Usage: "server or client (required)"},
			pkiDaysFlag(fmt.Sprintf("validity in days (1 to %d, default %d)", pki.MaxLeafDays, pki.DefaultLeafDays)),
			&cli.StringFlag{Name: "name", Usage: "file name under issued/ (default: the CSR's common name)"},
			pkiForceFlag("replace issued/NAME.crt"),
			passphraseFileFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			args, err := pkiArgs(c, 1, 1)
			if err != nil {
				return err
			}
			if c.String("profile") == "" {
				return usagef("missing --profile server|client (see 'kvsctl pki sign --help')")
			}
			p, err := pkiProfile(c.String("profile"))
			if err != nil {
				return err
			}
			if n := c.String("name"); n != "" {
				if err := pki.CheckName(n); err != nil {
					return usageError{err}
				}
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			iss, err := pki.SignCSR(c.Context, pki.SignOptions{
				Dir: pki.Dir(c.String("dir")), CSRFile: args[0], Profile: p, Name: c.String("name"),
				Days: c.Int("days"), Passphrase: pass, Force: c.Bool("force"),
			})
			if err != nil {
				return err
			}
			return pkiPrintIssued(c, "signed", iss)
		},
	}
}

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
			args, err := pkiArgs(c, 1, 1)
			if err != nil {
				return err
			}
			ins, err := pki.InspectFile(c.Context, args[0], time.Now())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return pkiJSON(c.App.Writer, ins)
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
			args, err := pkiArgs(c, 1, 1)
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
				if err := pkiJSON(c.App.Writer, rep); err != nil {
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
			if _, err := pkiArgs(c, 0, 0); err != nil {
				return err
			}
			l, err := pki.List(c.Context, pki.Dir(c.String("dir")), time.Now())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				err = pkiJSON(c.App.Writer, l)
			} else {
				pkiPrintList(c.App.Writer, l)
			}
			if l.CRL != nil && l.CRL.Warning != "" {
				fmt.Fprintf(c.App.ErrWriter, "kvsctl: warning: %s\n", l.CRL.Warning)
			}
			return err
		},
	}
}

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
			args, err := pkiArgs(c, 1, 1)
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
			rec, next, err := pki.Revoke(pki.RevokeOptions{
				Dir: d, Target: args[0], Reason: c.String("reason"), Passphrase: pass, CRLDays: c.Int("crl-days"),
			})
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "revoked %s certificate %q, serial %s (reason %s)\n", rec.Kind, rec.Name, rec.Serial, rec.Reason)
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
			"when it expires. Servers refuse every client once the CRL has expired, so re-sign it well\n" +
			"before: the default lifetime is 7 days, and a daily cron job keeps it fresh.\n\n" +
			"Example (crontab):\n  0 3 * * *  cd /srv/kvs && kvsctl pki crl --days 7",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.IntFlag{Name: "days", Value: pki.DefaultCRLDays, Usage: "lifetime of the new CRL, in days"},
			passphraseFileFlag(),
		},
		Action: func(c *cli.Context) error {
			if _, err := pkiArgs(c, 0, 0); err != nil {
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
			args, err := pkiArgs(c, 1, 1)
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

func pkiExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write a certificate, its key and its CA as a PKCS#12 (.p12) bundle",
		UsageText: "kvsctl pki export NAME --p12 FILE [--password-file F] [--legacy] [--force]",
		Description: "NAME is server, client, an issued name (issued/NAME.crt), a .crt path, or ca (the CA\n" +
			"certificate alone, as a trust store for Java). The bundle is encrypted with AES-256-CBC and\n" +
			"PBKDF2-HMAC-SHA-256 (go-pkcs12 Modern); --legacy uses 3DES/SHA-1 for old Java and macOS.\n" +
			"A password is required, from --password-file or env KVS_P12_PASSWORD: kvsctl never writes\n" +
			"a private key unprotected outside the PKI directory. The file is written 0600.\n\n" +
			"Examples:\n  kvsctl pki export alice --p12 alice.p12 --password-file pw.txt\n" +
			"  curl --cert-type P12 --cert alice.p12:$(cat pw.txt) --cacert certs/ca.crt https://localhost:8443/",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "p12", Usage: "the .p12 file to write (required)"},
			&cli.StringFlag{Name: "password-file", Usage: "file holding the bundle's password (or set KVS_P12_PASSWORD)"},
			&cli.BoolFlag{Name: "legacy", Usage: "3DES/SHA-1 encryption for software that cannot read the modern kind"},
			pkiForceFlag("replace the .p12 file"),
		},
		Action: func(c *cli.Context) error {
			args, err := pkiArgs(c, 1, 1)
			if err != nil {
				return err
			}
			if c.String("p12") == "" {
				return usagef("missing --p12 FILE (see 'kvsctl pki export --help')")
			}
			pw, err := pkiP12Password(c)
			if err != nil {
				return err
			}
			ex, err := pki.Export(c.Context, pki.ExportOptions{
				Dir: pki.Dir(c.String("dir")), Name: args[0], Out: c.String("p12"), Password: pw,
				Legacy: c.Bool("legacy"), Force: c.Bool("force"),
			})
			if err != nil {
				return err
			}
			pkiPrintExported(c.App.Writer, ex)
			return nil
		},
	}
}

// p12Password reads the PKCS#12 password from --password-file or
// KVS_P12_PASSWORD; it is never echoed.
func pkiP12Password(c *cli.Context) (string, error) {
	if p := c.String("password-file"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("read password file: %w", err)
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" {
			return "", fmt.Errorf("password file %s is empty", p)
		}
		return s, nil
	}
	return os.Getenv("KVS_P12_PASSWORD"), nil
}

func pkiTrustCommand() *cli.Command {
	flags := func() []cli.Flag {
		return []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "ca", Usage: "the CA certificate (default: DIR/ca.crt)"},
			&cli.BoolFlag{Name: "nss", Usage: "also the NSS databases of Firefox and Chrome (needs certutil)"},
			&cli.BoolFlag{Name: "java", Usage: "also the Java trust store of $JAVA_HOME (needs keytool)"},
		}
	}
	action := func(install bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			if _, err := pkiArgs(c, 0, 0); err != nil {
				return err
			}
			o := pki.TrustOptions{Dir: pki.Dir(c.String("dir")), CAFile: c.String("ca"), NSS: c.Bool("nss"), Java: c.Bool("java")}
			fn := pki.UninstallTrust
			if install {
				fn = pki.InstallTrust
			}
			res, err := fn(c.Context, o)
			if err != nil {
				return err
			}
			pkiPrintTrust(c.App.Writer, res)
			return nil
		}
	}
	return &cli.Command{
		Name:      "trust",
		Usage:     "install the CA into (or remove it from) the system trust store",
		UsageText: "kvsctl pki trust install|uninstall [--ca FILE] [--nss] [--java]",
		Description: "Uses github.com/smallstep/truststore. Only a self-signed CA certificate is accepted.\n" +
			"The system store needs root. Prints every store it changed; when a command fails, prints\n" +
			"that command's output.\n\n" +
			"Examples:\n  sudo kvsctl pki trust install --nss\n  sudo kvsctl pki trust uninstall --nss",
		Subcommands: []*cli.Command{
			{
				Name: "install", Usage: "add the CA to the trust stores",
				UsageText:   "kvsctl pki trust install [--ca FILE] [--nss] [--java]",
				Description: "Adds the CA to the system trust store (and NSS, Java when asked).\n\nExample:\n  sudo kvsctl pki trust install --ca certs/ca.crt",
				Flags:       flags(), Action: action(true),
			},
			{
				Name: "uninstall", Usage: "remove the CA from the trust stores",
				UsageText:   "kvsctl pki trust uninstall [--ca FILE] [--nss] [--java]",
				Description: "Removes the CA that 'trust install' added.\n\nExample:\n  sudo kvsctl pki trust uninstall --ca certs/ca.crt",
				Flags:       flags(), Action: action(false),
			},
		},
	}
}

// positional returns the command's positional arguments, between min and max
// of them, after applying any flags that follow them: urfave/cli v2 stops
// parsing flags at the first positional argument, and 'kvsctl pki issue
// server web --days 90' must work as documented.
func pkiArgs(c *cli.Context, min, max int) ([]string, error) {
	help := fmt.Sprintf("see 'kvsctl %s --help'", c.Command.FullName())
	var pos []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "help" || name == "h" {
			cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
			return nil, exitError{exitOK, errors.New("")}
		}
		f := pkiLookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, usagef("flag provided but not defined: %s (%s)", a, help)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 >= len(args) {
				return nil, usagef("flag needs an argument: %s (%s)", a, help)
			}
			i++
			val = args[i]
		}
		if err := c.Set(name, val); err != nil {
			return nil, usagef("invalid value %q for flag %s: %v (%s)", val, a, err, help)
		}
	}
	switch {
	case len(pos) < min:
		return nil, usagef("missing argument: usage: %s (%s)", c.Command.UsageText, help)
	case len(pos) > max:
		return nil, usagef("unexpected argument %q (%s)", pos[max], help)
	}
	return pos, nil
}

func pkiLookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
