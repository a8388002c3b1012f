package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

func pkiIssueCommand() *cli.Command {
	return &cli.Command{
		Name:      "issue",
		Usage:     "issue a new server or client certificate from the CA",
		UsageText: "kvsctl pki issue server|client NAME [--hosts H,...] [--email ADDR] [--uri URI] [--days N|--ttl D] [--key-type T] [--force] [--json]",
		Description: "Creates a key and a certificate signed by the CA, writes issued/NAME.key (0600) and\n" +
			"issued/NAME.crt, and records the certificate in the inventory. A server certificate is\n" +
			"valid for --hosts (default: NAME); NAME is the certificate's common name. --email and\n" +
			"--uri add e-mail and URI SANs, the typed identities (email:, uri:) a server policy matches.\n\n" +
			"--ttl gives the validity as a duration (5m to 825d); a certificate never outlives its\n" +
			"issuing CA, and starts a minute in the past, for clocks that run a little behind.\n\n" +
			"Examples:\n  kvsctl pki issue client alice --days 90\n  kvsctl pki issue client ci-job --ttl 1h\n  kvsctl pki issue server kvs2 --hosts kvs2.example.com,10.0.0.7\n" +
			"  kvsctl pki issue client web --uri spiffe://example.org/web --email ops@example.org",
		Flags: []cli.Flag{
			dirFlag(),
			pkiHostsFlag("server DNS names and IP addresses"),
			&cli.StringSliceFlag{Name: "email", Usage: "e-mail SAN, a typed identity (repeatable or comma-separated)"},
			&cli.StringSliceFlag{Name: "uri", Usage: "URI SAN such as spiffe://example.org/web, a typed identity (repeatable or comma-separated)"},
			pkiDaysFlag(fmt.Sprintf("validity in days (1 to %d, default %d)", pki.MaxLeafDays, pki.DefaultLeafDays)),
			pkiTTLFlag(),
			pkiKeyTypeFlag(),
			pkiForceFlag("replace issued/NAME.crt and .key"),
			passphraseFileFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			args, err := args(c, 2, 2)
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
			for _, e := range c.StringSlice("email") {
				if err := pki.CheckEmail(e); err != nil {
					return usageError{err}
				}
			}
			for _, u := range c.StringSlice("uri") {
				if err := pki.CheckURI(u); err != nil {
					return usageError{err}
				}
			}
			days, ttl, err := pkiValidity(c)
			if err != nil {
				return err
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			iss, err := pki.Issue(c.Context, pki.IssueOptions{
				Dir: pki.Dir(c.String("dir")), Profile: p, Name: args[1], Hosts: c.StringSlice("hosts"),
				Emails: c.StringSlice("email"), URIs: c.StringSlice("uri"),
				Days: days, TTL: ttl, KeyType: kt, Passphrase: pass, Force: c.Bool("force"),
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
		UsageText: "kvsctl pki sign CSR --profile server|client [--days N|--ttl D] [--name NAME] [--allow-san] [--force] [--json]",
		Description: "Checks the CSR's self-signature and key, then issues a certificate that copies ONLY\n" +
			"the CSR's subject and subject alternative names; every other extension the CSR asks for\n" +
			"(CA:TRUE, key usages, ...) is ignored. A server CSR without SANs gets its common name as\n" +
			"the DNS name. Writes issued/NAME.crt (NAME defaults to the common name) and records it;\n" +
			"prints every SAN it copied, with its type (DNS:, IP:, email:, URI:).\n" +
			"A client CSR with a SAN equal to the common name or a SAN of another current certificate\n" +
			"in the inventory would share that identity and is refused, unless --allow-san.\n\n" +
			"Example (on the host, 'kvsctl pki csr' or openssl make the key and CSR):\n  kvsctl pki csr web.example.com --host web.example.com\n" +
			"  kvsctl pki sign web.example.com.csr --profile server --days 90",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "profile", Usage: "server or client (required)"},
			pkiDaysFlag(fmt.Sprintf("validity in days (1 to %d, default %d)", pki.MaxLeafDays, pki.DefaultLeafDays)),
			pkiTTLFlag(),
			&cli.StringFlag{Name: "name", Usage: "file name under issued/ (default: the CSR's common name)"},
			&cli.BoolFlag{Name: "allow-san", Usage: "sign a client CSR even when a SAN matches another certificate's identity"},
			pkiForceFlag("replace issued/NAME.crt"),
			passphraseFileFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			args, err := args(c, 1, 1)
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
			days, ttl, err := pkiValidity(c)
			if err != nil {
				return err
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			iss, err := pki.SignCSR(c.Context, pki.SignOptions{
				Dir: pki.Dir(c.String("dir")), CSRFile: args[0], Profile: p, Name: c.String("name"),
				Days: days, TTL: ttl, Passphrase: pass, Force: c.Bool("force"), AllowSAN: c.Bool("allow-san"),
			})
			if err != nil {
				return err
			}
			return pkiPrintIssued(c, "signed", iss)
		},
	}
}
