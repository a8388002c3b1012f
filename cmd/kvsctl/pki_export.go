package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

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
			&cli.StringFlag{Name: "password-file", Usage: "file holding the bundle's password, readable by its owner only (or set KVS_P12_PASSWORD)"},
			&cli.BoolFlag{Name: "legacy", Usage: "3DES/SHA-1 encryption for software that cannot read the modern kind"},
			pkiForceFlag("replace the .p12 file"),
		},
		Action: func(c *cli.Context) error {
			args, err := args(c, 1, 1)
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

// pkiP12Password reads the PKCS#12 password from --password-file, which
// like every secret file must not be readable by group or others
// (readSecretFile), or from KVS_P12_PASSWORD; it is never echoed.
func pkiP12Password(c *cli.Context) (string, error) {
	if p := c.String("password-file"); p != "" {
		pw, err := readSecretFile(p, "password")
		if err != nil {
			return "", err
		}
		return string(pw), nil
	}
	return os.Getenv("KVS_P12_PASSWORD"), nil
}

func pkiTrustCommand() *cli.Command {
	flags := func(extra ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "ca", Usage: "the CA certificate (default: DIR/ca.crt)"},
			&cli.BoolFlag{Name: "nss", Usage: "also the NSS databases of Firefox and Chrome (needs certutil)"},
			&cli.BoolFlag{Name: "java", Usage: "also the Java trust store of $JAVA_HOME (needs keytool)"},
		}, extra...)
	}
	action := func(install bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			o := pki.TrustOptions{Dir: pki.Dir(c.String("dir")), CAFile: c.String("ca"), NSS: c.Bool("nss"), Java: c.Bool("java")}
			fn := pki.UninstallTrust
			if install {
				fn, o.AllowUnconstrained = pki.InstallTrust, c.Bool("yes")
			}
			res, err := fn(c.Context, o)
			if err != nil {
				return err
			}
			pkiPrintTrust(c.App.Writer, res)
			if install {
				if err := pki.CheckNameConstrained(res.Cert); err != nil {
					fmt.Fprintf(c.App.ErrWriter, "kvsctl: warning: %s\n", safeText(err.Error()))
				}
			}
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
			"Examples:\n  sudo kvsctl pki trust install --nss --yes\n  sudo kvsctl pki trust uninstall --nss",
		Subcommands: []*cli.Command{
			{
				Name: "install", Usage: "add the CA to the trust stores",
				UsageText: "kvsctl pki trust install [--ca FILE] [--nss] [--java] [--yes]",
				Description: "Adds the CA to the system trust store (and NSS, Java when asked).\n" +
					"A CA without name constraints (kvsctl's own CA has none) can sign a certificate for any\n" +
					"name, *.google.com included, and every program of this machine would accept it: such a\n" +
					"CA is refused unless --yes, and installed with a warning.\n\n" +
					"Example:\n  sudo kvsctl pki trust install --ca certs/ca.crt --yes",
				Flags:  flags(&cli.BoolFlag{Name: "yes", Usage: "install a CA without name constraints, which can sign for any name"}),
				Action: action(true),
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
