package main

import (
	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

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
		Usage:     "create a CA hierarchy with a server and a client certificate (or a flat CA, or a self-signed pair)",
		UsageText: "kvsctl pki init [--flat|--self-signed] [--hosts H,...] [--client NAME] [--permit-dns D ...] [--permit-ip CIDR ...] [--constrain-root] [--key-type T] [--passphrase-file F] [--crl-days N] [--force] [--dir DIR]",
		Description: "Default: a root CA (10 years, CA:TRUE critical, path length 1) and an issuing intermediate\n" +
			"it signs (5 years, path length 0), a server certificate for --hosts (default localhost,\n" +
			"127.0.0.1, ::1 and this host's name) and a client certificate (CN from --client), both signed\n" +
			"by the intermediate and written with it (leaf, then intermediate), an empty signed CRL of\n" +
			"each CA in crl.pem (the intermediate's for 7 days, the root's for 180) and the inventory.\n" +
			"The root key is needed only to sign a new intermediate or revoke one: take it offline with\n" +
			"'kvsctl pki root export FILE'.\n" +
			"--permit-dns/--permit-ip/--permit-email/--permit-uri put critical name constraints on the\n" +
			"intermediate (and with --constrain-root on the root): no certificate for another name can be\n" +
			"issued, and verifiers refuse one even if it was forged with the CA's key.\n" +
			"--flat: one CA that signs the leaves itself (path length 0), the layout before the hierarchy.\n" +
			"--self-signed: the original set-up, a self-signed server and client certificate, each side\n" +
			"trusting exactly the other's. Refuses to replace an existing PKI without --force.\n\n" +
			"Examples:\n  kvsctl pki init --hosts localhost,127.0.0.1,kvs.example.com --client alice\n" +
			"  kvsctl pki init --permit-dns example.com --permit-dns localhost --permit-ip 127.0.0.0/8 --permit-ip ::1/128 --constrain-root",
		Flags: append([]cli.Flag{
			dirFlag(),
			&cli.BoolFlag{Name: "self-signed", Usage: "no CA: self-signed server and client certificates that pin each other"},
			&cli.BoolFlag{Name: "flat", Usage: "one CA that signs the leaves itself, no intermediate"},
			pkiHostsFlag("server DNS names and IP addresses"),
			&cli.StringFlag{Name: "client", Value: "client", Usage: "common name of the client certificate"},
			pkiKeyTypeFlag(),
			passphraseFileFlag(),
			pkiCRLDaysFlag(),
			pkiRootCRLDaysFlag(),
			&cli.StringFlag{Name: "crl-url", Usage: "base URL of the CRL distribution point put in every certificate, e.g. http://ca.example.com:7445/v1/pki/crl (pki serve --crl-listen)"},
			pkiForceFlag("replace an existing PKI"),
		}, pkiConstraintFlags("the CA")...),
		Action: pkiInit,
	}
}

// keyType parses --key-type as a usage error.
func pkiKeyType(c *cli.Context) (pki.KeyType, error) {
	t, err := pki.ParseKeyType(c.String("key-type"))
	if err != nil {
		return "", usageError{err}
	}
	return t, nil
}

func pkiInit(c *cli.Context) error {
	if _, err := args(c, 0, 0); err != nil {
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
	if c.Int("crl-days") < 1 || c.Int("root-crl-days") < 1 {
		return usagef("--crl-days and --root-crl-days must be at least 1")
	}
	if c.Bool("self-signed") && c.Bool("flat") {
		return usagef("--self-signed has no CA, --flat one CA: choose one")
	}
	nc, err := pkiConstraints(c)
	if err != nil {
		return err
	}
	opts := pki.InitOptions{
		Dir: pki.Dir(c.String("dir")), SelfSigned: c.Bool("self-signed"), Flat: c.Bool("flat"), Hosts: c.StringSlice("hosts"),
		Client: c.String("client"), KeyType: kt, Passphrase: pass,
		Force: c.Bool("force"), CRLDays: c.Int("crl-days"), RootCRLDays: c.Int("root-crl-days"),
		ConstrainRoot: c.Bool("constrain-root"), CRLURL: c.String("crl-url"),
	}
	if err := pki.CheckCRLURL(opts.CRLURL); err != nil {
		return usageError{err}
	}
	if nc != nil {
		if opts.SelfSigned {
			return usagef("name constraints need a CA: drop --self-signed")
		}
		opts.Constraints = *nc
	}
	d := opts.Dir
	res, err := pki.Init(c.Context, opts)
	if err != nil {
		return err
	}
	pkiPrintInit(c.App.Writer, d, kt, len(pass) > 0, res)
	return nil
}
