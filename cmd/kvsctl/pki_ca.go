package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

// The commands that run the CA itself: rotation, retirement, the offline
// root key, and the CSR tool for hosts that have no openssl.

func pkiCACommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "rotate the issuing intermediate or the root, and retire old roots",
		Subcommands: []*cli.Command{
			{
				Name:      "rotate",
				Usage:     "make a new issuing intermediate (with --root: a new root and intermediate)",
				UsageText: "kvsctl pki ca rotate [--root] [--key-type T] [--permit-dns D ...] [--passphrase-file F] [--dir DIR] [--json]",
				Description: "Without --root the current root signs a new intermediate, which issues every new leaf from\n" +
					"now on. Leaves of the old intermediate stay valid until they expire or are renewed ('pki\n" +
					"renew' re-issues them from the new one), and 'pki crl' keeps re-signing its CRL. Peers trust\n" +
					"the root, so there is nothing to redistribute. Needs the root key.\n" +
					"--root makes a new root and intermediate; ca.crt then holds the new root and the old ones,\n" +
					"so peers of both generations keep working while certificates are re-issued. Hand the new\n" +
					"ca.crt to every peer, renew every certificate, then drop the old root with\n" +
					"'kvsctl pki ca retire OLD-FINGERPRINT'. A flat PKI becomes a hierarchy this way.\n" +
					"The name constraints (and key type) of the current CAs carry over unless --permit-* (and\n" +
					"--key-type) are given. Refuses to run while another pki command holds the directory lock.\n\n" +
					"Examples:\n  kvsctl pki ca rotate\n  kvsctl pki ca rotate --root",
				Flags: append([]cli.Flag{
					dirFlag(),
					&cli.BoolFlag{Name: "root", Usage: "make a new root as well, keeping the old ones in ca.crt until retired"},
					&cli.StringFlag{Name: "key-type", Usage: "key algorithm of the new CAs (default: that of the current issuing CA)"},
					pkiCRLDaysFlag(),
					pkiRootCRLDaysFlag(),
					passphraseFileFlag(),
					jsonFlag(),
				}, pkiConstraintFlags("the new CA")...),
				Action: pkiRotate,
			},
			{
				Name:      "set",
				Usage:     "set the CA's options for new certificates (the CRL distribution point)",
				UsageText: "kvsctl pki ca set [--crl-url URL] [--dir DIR]",
				Description: "--crl-url is the base URL of the CRL distribution point every certificate signed from now on\n" +
					"names (BASE/SERIAL of its issuer, what 'pki serve --crl-listen' serves), so that 'openssl\n" +
					"verify -crl_download' and browsers find the CRL; \"\" removes it. Certificates already issued\n" +
					"keep what they have. Without flags, prints the options. Kept in settings.json.\n\n" +
					"Example:\n  kvsctl pki ca set --crl-url http://ca.example.com:7445/v1/pki/crl",
				Flags: []cli.Flag{dirFlag(), &cli.StringFlag{Name: "crl-url", Usage: "base URL of the CRL distribution point"}, jsonFlag()},
				Action: func(c *cli.Context) error {
					if _, err := args(c, 0, 0); err != nil {
						return err
					}
					d := pki.Dir(c.String("dir"))
					if _, err := d.Mode(); err != nil {
						return err
					}
					st, err := d.LoadSettings()
					if err != nil {
						return err
					}
					if c.IsSet("crl-url") {
						st.CRLURL = c.String("crl-url")
						if err := pki.CheckCRLURL(st.CRLURL); err != nil {
							return usageError{err}
						}
						if err := d.SaveSettings(st); err != nil {
							return err
						}
					}
					if c.Bool("json") {
						return pkiJSON(c.App.Writer, st)
					}
					fmt.Fprintf(c.App.Writer, "crl-url: %s\n", orDefault(st.CRLURL, "(none)"))
					return nil
				},
			},
			{
				Name:      "retire",
				Usage:     "remove an old root (and its intermediates and CRLs) from the trust bundle",
				UsageText: "kvsctl pki ca retire FINGERPRINT [--dir DIR] [--json]",
				Description: "After 'pki ca rotate --root', once every peer has a certificate of the new generation:\n" +
					"removes the old root from ca.crt, its intermediates from intermediates.pem and their CRLs\n" +
					"from crl.pem, and marks their certificates retired in the inventory. Servers and clients that\n" +
					"reload ca.crt refuse certificates of the old generation from then on. FINGERPRINT is the\n" +
					"root's SHA-256 fingerprint (or its first 8+ hex digits), as 'kvsctl pki inspect ca.crt'\n" +
					"prints it. The only root and the current root are refused.\n\n" +
					"Example:\n  kvsctl pki ca retire 3F:2A:9C:10:...",
				Flags:  []cli.Flag{dirFlag(), jsonFlag()},
				Action: pkiRetire,
			},
		},
	}
}

func pkiRotate(c *cli.Context) error {
	if _, err := args(c, 0, 0); err != nil {
		return err
	}
	var kt pki.KeyType
	if s := c.String("key-type"); s != "" {
		t, err := pki.ParseKeyType(s)
		if err != nil {
			return usageError{err}
		}
		kt = t
	}
	if c.Int("crl-days") < 1 || c.Int("root-crl-days") < 1 {
		return usagef("--crl-days and --root-crl-days must be at least 1")
	}
	nc, err := pkiConstraints(c)
	if err != nil {
		return err
	}
	pass, err := passphrase(c)
	if err != nil {
		return err
	}
	d := pki.Dir(c.String("dir"))
	r, err := pki.Rotate(c.Context, pki.RotateOptions{
		Dir: d, Root: c.Bool("root"), KeyType: kt, Passphrase: pass, Constraints: nc, ConstrainRoot: c.Bool("constrain-root"),
		CRLDays: c.Int("crl-days"), RootCRLDays: c.Int("root-crl-days"),
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		roots := make([]pkiCAJSON, len(r.Roots))
		for i, rc := range r.Roots {
			roots[i] = pkiCAOf(rc)
		}
		return pkiJSON(c.App.Writer, struct {
			Intermediate pkiCAJSON   `json:"intermediate"`
			Root         pkiCAJSON   `json:"root"`
			Replaced     pkiCAJSON   `json:"replaced"`
			Roots        []pkiCAJSON `json:"roots"`
			Files        []string    `json:"files"`
		}{pkiCAOf(r.Intermediate), pkiCAOf(r.Root), pkiCAOf(r.Replaced), roots, r.Files})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "new issuing CA %s, serial %s, until %s\n", safe(r.Intermediate.Subject.CommonName), pki.SerialHex(r.Intermediate), pkiDay(r.Intermediate.NotAfter))
	fmt.Fprintf(w, "  signed by    %s (SHA-256 %s)\n", safe(r.Root.Subject.CommonName), pki.Fingerprint(r.Root.Raw))
	fmt.Fprintf(w, "  replaces     %s, serial %s: its leaves stay valid until they expire or are renewed\n", safe(r.Replaced.Subject.CommonName), pki.SerialHex(r.Replaced))
	for _, f := range r.Files {
		fmt.Fprintf(w, "  wrote        %s\n", f)
	}
	if c.Bool("root") {
		fmt.Fprintf(w, "\n%s now holds %d roots:\n", d.CACert(), len(r.Roots))
		pkiPrintRoots(w, r.Roots)
		fmt.Fprintln(w, "\nNext: give the new ca.crt to every server and client, renew every certificate")
		fmt.Fprintf(w, "('kvsctl pki renew FILE'), then retire the old root: kvsctl pki ca retire %s\n", pkiShortFP(r.Roots[len(r.Roots)-1]))
	}
	return nil
}

func pkiRetire(c *cli.Context) error {
	a, err := args(c, 1, 1)
	if err != nil {
		return err
	}
	d := pki.Dir(c.String("dir"))
	r, err := pki.Retire(c.Context, pki.RetireOptions{Dir: d, Fingerprint: a[0]})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		cas := make([]pkiCAJSON, len(r.CAs))
		for i, ca := range r.CAs {
			cas[i] = pkiCAOf(ca)
		}
		return pkiJSON(c.App.Writer, struct {
			Retired []pkiCAJSON  `json:"retired"`
			Records []pki.Record `json:"records"`
			Files   []string     `json:"files"`
			Stale   []string     `json:"stale,omitempty"`
		}{cas, r.Records, r.Files, r.Stale})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "retired the root %s (SHA-256 %s)\n", safe(r.Root.Subject.CommonName), pki.Fingerprint(r.Root.Raw))
	for _, ca := range r.CAs[1:] {
		fmt.Fprintf(w, "  and its intermediate %s, serial %s\n", safe(ca.Subject.CommonName), pki.SerialHex(ca))
	}
	fmt.Fprintf(w, "  %d certificates of that generation are marked retired in the inventory\n", len(r.Records))
	for _, f := range r.Files {
		fmt.Fprintf(w, "  wrote %s\n", f)
	}
	fmt.Fprintf(w, "%s now holds:\n", d.CACert())
	pkiPrintRoots(w, r.Roots)
	fmt.Fprintf(w, "Peers refuse the old generation once they reload %s. The old keys stay in %s until you delete them.\n",
		d.CACert(), filepath.Dir(d.RetiredKey("x")))
	if len(r.Stale) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "kvsctl: warning: %d certificate file(s) here are of the retired generation and will be refused: %s\n", len(r.Stale), strings.Join(r.Stale, ", "))
		fmt.Fprintln(c.App.ErrWriter, "hint: renew them with 'kvsctl pki renew FILE'")
	}
	return nil
}

// pkiCAJSON is a CA certificate in --json output.
type pkiCAJSON struct {
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	SHA256   string    `json:"sha256_fingerprint"`
	NotAfter time.Time `json:"not_after"`
}

func pkiCAOf(c *x509.Certificate) pkiCAJSON {
	return pkiCAJSON{c.Subject.String(), pki.SerialHex(c), pki.Fingerprint(c.Raw), c.NotAfter.UTC()}
}

func pkiPrintRoots(w io.Writer, roots []*x509.Certificate) {
	for _, r := range roots {
		fmt.Fprintf(w, "  %s  SHA-256 %s  until %s\n", safe(r.Subject.CommonName), pki.Fingerprint(r.Raw), pkiDay(r.NotAfter))
	}
}

// pkiShortFP is the first eight bytes of a certificate's fingerprint, as a
// retire argument.
func pkiShortFP(c *x509.Certificate) string { return pki.Fingerprint(c.Raw)[:23] }

func pkiRootCommand() *cli.Command {
	move := func(export bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			d := pki.Dir(c.String("dir"))
			o := pki.RootKeyOptions{Dir: d, File: a[0], Passphrase: pass, Force: c.Bool("force")}
			fn := pki.ImportRootKey
			if export {
				fn = pki.ExportRootKey
			}
			r, err := fn(c.Context, o)
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "moved the key of the root %s from %s to %s (0600)\n", safe(r.Root.Subject.CommonName), r.From, r.To)
			if export {
				if !r.Encrypted {
					fmt.Fprintln(w, "the key is NOT encrypted: keep the file on an encrypted medium, or create the PKI with --passphrase-file")
				}
				fmt.Fprintf(w, "Every command works without it except 'pki ca rotate' and 'pki revoke --intermediate';\n")
				fmt.Fprintf(w, "bring it back for those with: kvsctl pki root import %s\n", r.To)
			}
			return nil
		}
	}
	flags := func(force string) []cli.Flag {
		return []cli.Flag{dirFlag(), passphraseFileFlag(), pkiForceFlag(force)}
	}
	return &cli.Command{
		Name:  "root",
		Usage: "take the root CA key offline, or bring it back",
		Description: "The root key signs only intermediates and the root's own CRL. Kept offline (a USB stick in\n" +
			"a safe), a stolen server cannot use it; the intermediate signs everything day to day.\n" +
			"The same works by hand: move ca.key out of the directory, and back.",
		Subcommands: []*cli.Command{
			{
				Name:      "export",
				Usage:     "move ca.key to FILE (outside the PKI directory), checking the copy first",
				UsageText: "kvsctl pki root export FILE [--force] [--dir DIR]",
				Description: "Copies ca.key to FILE (0600), reads the copy back and checks that it is the root's key, and\n" +
					"only then removes ca.key. FILE must be outside the PKI directory. The key is copied as it\n" +
					"is: create the PKI with --passphrase-file to have it encrypted.\n\n" +
					"Example:\n  kvsctl pki root export /media/usb/kvsctl-root.key",
				Flags:  flags("replace FILE"),
				Action: move(true),
			},
			{
				Name:      "import",
				Usage:     "put the root key in FILE back as ca.key, checking that it is the current root's",
				UsageText: "kvsctl pki root import FILE [--force] [--dir DIR]",
				Description: "Checks that FILE holds the key of the current root (the root of intermediate.crt) and\n" +
					"writes it as ca.key (0600), for 'pki ca rotate' or 'pki revoke --intermediate'. FILE is\n" +
					"left where it is; export it again when done.\n\n" +
					"Example:\n  kvsctl pki root import /media/usb/kvsctl-root.key && kvsctl pki ca rotate && kvsctl pki root export --force /media/usb/kvsctl-root.key",
				Flags:  flags("replace an existing ca.key"),
				Action: move(false),
			},
		},
	}
}

func pkiCSRCommand() *cli.Command {
	return &cli.Command{
		Name:      "csr",
		Usage:     "create a private key and a certificate signing request (no openssl needed)",
		UsageText: "kvsctl pki csr NAME [--host H ...] [--email ADDR ...] [--uri URI ...] [--key-type T] [--key FILE] [--out FILE] [--force]",
		Description: "Writes a new private key (0600, default NAME.key) and a CSR for it (default NAME.csr) with the\n" +
			"common name NAME and the SANs given, on the host that will use the certificate: the key\n" +
			"never leaves it. Sign the CSR on the CA host with 'kvsctl pki sign NAME.csr --profile ...'.\n\n" +
			"Examples:\n  kvsctl pki csr web.example.com --host web.example.com --host 10.0.0.7\n" +
			"  kvsctl pki csr web --uri spiffe://example.org/web --key-type ecdsa-p256",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "host", Aliases: []string{"hosts"}, Usage: "DNS name or IP address SAN (repeatable or comma-separated)"},
			&cli.StringSliceFlag{Name: "email", Usage: "e-mail SAN (repeatable or comma-separated)"},
			&cli.StringSliceFlag{Name: "uri", Usage: "URI SAN such as spiffe://example.org/web (repeatable or comma-separated)"},
			pkiKeyTypeFlag(),
			&cli.StringFlag{Name: "key", Usage: "private key file to write (default NAME.key)"},
			&cli.StringFlag{Name: "out", Usage: "CSR file to write (default NAME.csr)"},
			pkiForceFlag("replace existing files"),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			kt, err := pkiKeyType(c)
			if err != nil {
				return err
			}
			name := a[0]
			keyFile, csrFile := c.String("key"), c.String("out")
			if keyFile == "" || csrFile == "" {
				if pki.CheckName(name) != nil {
					return usagef("NAME %q cannot be a file name: give --key and --out", name)
				}
			}
			if keyFile == "" {
				keyFile = name + ".key"
			}
			if csrFile == "" {
				csrFile = name + ".csr"
			}
			r, err := pki.NewCSR(c.Context, pki.CSROptions{
				Name: name, Hosts: c.StringSlice("host"), Emails: c.StringSlice("email"), URIs: c.StringSlice("uri"),
				KeyType: kt, KeyFile: keyFile, CSRFile: csrFile, Force: c.Bool("force"),
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return pkiJSON(c.App.Writer, struct {
					KeyFile string `json:"key_file"`
					CSRFile string `json:"csr_file"`
					pki.CSRInfo
				}{r.KeyFile, r.CSRFile, pki.DescribeCSR(r.CSR)})
			}
			w := c.App.Writer
			fmt.Fprintf(w, "wrote %s (%s private key, 0600)\n", r.KeyFile, kt)
			fmt.Fprintf(w, "wrote %s: subject %s", r.CSRFile, safe(r.CSR.Subject.String()))
			if sans := pkiCSRSANs(r.CSR); sans != "" {
				fmt.Fprintf(w, ", SANs %s", sans)
			}
			fmt.Fprintf(w, "\nsign it on the CA host: kvsctl pki sign %s --profile server|client\n", r.CSRFile)
			return nil
		},
	}
}

func pkiCSRSANs(r *x509.CertificateRequest) string {
	var ips, uris []string
	for _, ip := range r.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, u := range r.URIs {
		uris = append(uris, u.String())
	}
	return pkiSANs(r.DNSNames, ips, r.EmailAddresses, uris)
}
