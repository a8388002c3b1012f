package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs/policy"
	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caclient"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// The online CA: 'pki serve' on the CA host; 'pki token' there to let a
// new host in; 'pki enroll' on the new host; 'pki renew --daemon' to keep
// its certificates fresh.

func pkiServeCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the online CA: enrollment with tokens, renewal over mTLS, revocation, CRLs",
		UsageText: "kvsctl pki serve [--listen ADDR] [--crl-listen ADDR] [--hosts H,...] [--admin ID ...] [--cert-ttl D] [--dir DIR]",
		Description: "Serves the PKI directory's issuing CA over HTTPS (its key must be here, unencrypted):\n" +
			"  POST /v1/pki/enroll  a token ('kvsctl pki token') and a CSR -> the certificate chain\n" +
			"  POST /v1/pki/renew   mTLS with the current certificate and a CSR for a new key -> the next one\n" +
			"  POST /v1/pki/revoke  mTLS with an --admin identity, a serial and a reason\n" +
			"  GET  /v1/pki/crl[/SERIAL] (DER, ?format=pem), /v1/pki/crls (every CRL, PEM), /v1/pki/ca (the trust bundle)\n" +
			"The GET endpoints are also served over plain HTTP on --crl-listen, where CRL distribution\n" +
			"points point (set the URL with 'pki ca set --crl-url'). Every CRL is re-signed when half of\n" +
			"its lifetime has passed and at once after a revocation, so it never expires while the service\n" +
			"runs. The service's own TLS certificate is issued by the intermediate at start-up, for --hosts,\n" +
			"and renewed in memory. Every operation is one audit line on stderr. The CLI can work on the\n" +
			"same directory meanwhile: both take its lock.\n\n" +
			"Example:\n  kvsctl pki serve --listen 0.0.0.0:7444 --hosts ca.example.com --crl-listen 0.0.0.0:7445 --admin ops",
		Flags: append([]cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "listen", Value: caserver.DefaultListen, EnvVars: env("ca-listen"), Usage: "HTTPS address of the API"},
			&cli.StringFlag{Name: "crl-listen", EnvVars: env("crl-listen"), Usage: "plain-HTTP address of the CRLs and the trust bundle (none when empty)"},
			pkiHostsFlag("names of the service's own certificate (default localhost, 127.0.0.1, ::1)"),
			&cli.StringSliceFlag{Name: "admin", EnvVars: env("admin"), Usage: "identity that may revoke: a common name, dns:NAME, email:ADDR or uri:URI (repeatable)"},
			&cli.DurationFlag{Name: "cert-ttl", Value: caserver.DefaultCertTTL, Usage: "lifetime of enrolled certificates (renewals keep theirs; at least 1m)"},
			&cli.IntFlag{Name: "crl-days", Value: pki.DefaultCRLDays, Usage: "lifetime of the CRLs the service signs, in days"},
			&cli.IntFlag{Name: "enroll-rate", Usage: "enrollments a minute per client address and per token (default 10)"},
			&cli.IntFlag{Name: "renew-rate", Usage: "renewals a minute per certificate, revocations per admin (default 30)"},
		}, logFlags()...),
		Action: pkiServe,
	}
}

func pkiServe(c *cli.Context) error {
	if _, err := args(c, 0, 0); err != nil {
		return err
	}
	log, err := loggerOf(c)
	if err != nil {
		return err
	}
	if c.Duration("cert-ttl") < pki.MinServiceTTL {
		return usagef("--cert-ttl must be at least %s", pki.MinServiceTTL)
	}
	var admins []policy.Identity
	for _, a := range c.StringSlice("admin") {
		admins = append(admins, policy.ParseIdentity(a))
	}
	d := pki.Dir(c.String("dir"))
	srv, err := caserver.New(caserver.Config{
		Dir: d, Hosts: c.StringSlice("hosts"), Admins: admins, CertTTL: c.Duration("cert-ttl"), CRLDays: c.Int("crl-days"),
		EnrollPerMinute: c.Int("enroll-rate"), RenewPerMinute: c.Int("renew-rate"), Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.String("listen"), err)
	}
	var crlLn net.Listener
	if a := c.String("crl-listen"); a != "" {
		if crlLn, err = net.Listen("tcp", a); err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s: %w", a, err)
		}
	}
	fps, err := srv.Fingerprints()
	if err != nil {
		return err
	}
	w := c.App.ErrWriter
	fmt.Fprintf(w, "kvsctl pki serve: the online CA of %s on https://%s\n", string(d), ln.Addr())
	if crlLn != nil {
		fmt.Fprintf(w, "  CRLs and the trust bundle over plain HTTP on http://%s%s\n", crlLn.Addr(), caserver.PathCRL)
	}
	for _, fp := range fps {
		fmt.Fprintf(w, "  root fingerprint (for pki enroll --fingerprint): %s\n", fp)
	}
	fmt.Fprintf(w, "  a new host: kvsctl pki token NAME --profile client   (here), then there:\n")
	fmt.Fprintf(w, "    kvsctl pki enroll --ca-url https://%s --fingerprint %s --token TOKEN NAME\n", ln.Addr(), fps[0])
	if len(admins) == 0 {
		fmt.Fprintln(w, "  no --admin: revocation over the API is off ('kvsctl pki revoke' still works here)")
	}
	return srv.Serve(c.Context, ln, crlLn)
}

func pkiTokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "create a single-use enrollment token for a new host",
		UsageText: "kvsctl pki token NAME --profile client|server [--hosts H,...] [--email A] [--uri U] [--ttl 10m] [--json]",
		Description: "Prints a random token that enrolls exactly one certificate, for NAME (its common name), with the\n" +
			"profile and SANs given, within --ttl (default 10m, at most 7 days). Only its SHA-256 hash is\n" +
			"stored (tokens.json, 0600). Hand it to the new host over a channel you trust; there:\n" +
			"'kvsctl pki enroll --token TOKEN ...'. A server token without --hosts is for the host NAME.\n\n" +
			"Example:\n  kvsctl pki token kvs2 --profile server --hosts kvs2.example.com,10.0.0.7",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "profile", Usage: "server or client (required)"},
			pkiHostsFlag("DNS names and IP addresses the certificate may carry"),
			&cli.StringSliceFlag{Name: "email", Usage: "e-mail SANs the certificate may carry (repeatable)"},
			&cli.StringSliceFlag{Name: "uri", Usage: "URI SANs the certificate may carry (repeatable)"},
			&cli.DurationFlag{Name: "ttl", Value: pki.DefaultTokenTTL, Usage: "how long the token may be used"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			if c.String("profile") == "" {
				return usagef("missing --profile server|client")
			}
			p, err := pkiProfile(c.String("profile"))
			if err != nil {
				return err
			}
			if err := pki.CheckName(a[0]); err != nil {
				return usageError{err}
			}
			tok, rec, err := pki.NewToken(c.Context, pki.TokenOptions{
				Dir: pki.Dir(c.String("dir")), Name: a[0], Profile: p, Hosts: c.StringSlice("hosts"),
				Emails: c.StringSlice("email"), URIs: c.StringSlice("uri"), TTL: c.Duration("ttl"),
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return pkiJSON(c.App.Writer, struct {
					Token string `json:"token"`
					pki.TokenRecord
				}{tok, *rec})
			}
			fmt.Fprintln(c.App.Writer, tok)
			fmt.Fprintf(c.App.ErrWriter, "single-use %s token for %q, until %s", p, a[0], pkiStamp(rec.Expires))
			if sans := pkiRecordSANs(pki.Record{Hosts: rec.Hosts, Emails: rec.Emails, URIs: rec.URIs}); sans != "" {
				fmt.Fprintf(c.App.ErrWriter, ", for %s", sans)
			}
			fmt.Fprintln(c.App.ErrWriter)
			return nil
		},
	}
}

func pkiEnrollCommand() *cli.Command {
	return &cli.Command{
		Name:      "enroll",
		Usage:     "get a certificate from the online CA with a token (on a new host)",
		UsageText: "kvsctl pki enroll --ca-url URL --fingerprint SHA256 --token TOKEN NAME [--profile P] [--hosts H,...] [--key-type T] [--dir DIR]",
		Description: "Checks the CA by the fingerprint of its root (printed by 'pki init' and 'pki serve'; the first\n" +
			"contact trusts nothing else), makes a key here (0600, it never leaves the host), sends a CSR\n" +
			"with the token and writes the certificate chain and the trust bundle: by default --dir's\n" +
			"NAME.crt, NAME.key and ca.crt (for a server, enroll as 'server' to get server.crt and\n" +
			"server.key, which 'kvsctl serve' reads). Then keep it fresh with 'kvsctl pki renew --daemon'.\n\n" +
			"Example:\n  kvsctl pki enroll --ca-url https://ca.example.com:7444 --fingerprint 3F:2A:... --token kvs1.X... server",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.StringFlag{Name: "ca-url", EnvVars: env("ca-url"), Usage: "the online CA, https://HOST:PORT (required)"},
			&cli.StringFlag{Name: "fingerprint", EnvVars: env("ca-fingerprint"), Usage: "SHA-256 fingerprint of the CA's root (required)"},
			&cli.StringFlag{Name: "token", Usage: "the enrollment token (or --token-file)"},
			&cli.StringFlag{Name: "token-file", Usage: "file holding the token (0600)"},
			&cli.StringFlag{Name: "profile", Usage: "server or client: must be the token's (default: the token's)"},
			pkiHostsFlag("SANs to ask for (default: those of the token)"),
			pkiKeyTypeFlag(),
			&cli.StringFlag{Name: "cert", Usage: "certificate file to write (default DIR/NAME.crt)"},
			&cli.StringFlag{Name: "key", Usage: "key file to write (default DIR/NAME.key)"},
			&cli.StringFlag{Name: "ca-file", Usage: "trust bundle to write (default DIR/ca.crt)"},
			pkiForceFlag("replace existing files"),
			jsonFlag(),
		},
		Action: pkiEnroll,
	}
}

func pkiEnroll(c *cli.Context) error {
	a, err := args(c, 1, 1)
	if err != nil {
		return err
	}
	name := a[0]
	if c.String("ca-url") == "" || c.String("fingerprint") == "" {
		return usagef("--ca-url and --fingerprint are required")
	}
	kt, err := pkiKeyType(c)
	if err != nil {
		return err
	}
	token, err := enrollToken(c)
	if err != nil {
		return err
	}
	var prof pki.Profile
	if s := c.String("profile"); s != "" {
		if prof, err = pkiProfile(s); err != nil {
			return err
		}
	}
	dir := c.String("dir")
	certFile, keyFile, caFile := orDefault(c.String("cert"), filepath.Join(dir, name+".crt")), orDefault(c.String("key"), filepath.Join(dir, name+".key")), orDefault(c.String("ca-file"), filepath.Join(dir, "ca.crt"))
	if !c.Bool("force") {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				return fmt.Errorf("%s already exists: %w", f, os.ErrExist)
			}
		}
	}
	_, bundle, err := caclient.Bootstrap(c.Context, c.String("ca-url"), c.String("fingerprint"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	cl, err := caclient.New(c.String("ca-url"), caclient.Options{Roots: pool})
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}
	for _, h := range c.StringSlice("hosts") {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	key, csr, err := caclient.NewCSR(kt, tmpl)
	if err != nil {
		return err
	}
	ans, err := cl.Enroll(c.Context, token, csr, prof)
	if err != nil {
		return err
	}
	pemKey, err := pki.MarshalKey(key, nil)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, pki.DirMode); err != nil && c.String("cert") == "" {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := pki.WriteFiles([]pki.File{{Path: keyFile, Data: pemKey, Mode: pki.KeyMode}, {Path: certFile, Data: []byte(ans.Certificate), Mode: pki.CertMode},
		{Path: caFile, Data: []byte(ans.CA), Mode: pki.CertMode}}); err != nil {
		return err
	}
	if c.Bool("json") {
		return pkiJSON(c.App.Writer, struct {
			CertFile string `json:"cert_file"`
			KeyFile  string `json:"key_file"`
			CAFile   string `json:"ca_file"`
			*caserver.Certificate
		}{certFile, keyFile, caFile, ans})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "enrolled %s: serial %s, valid until %s (%s)\n", safe(ans.Subject), ans.Serial, pkiStamp(ans.NotAfter), pki.HumanDuration(time.Until(ans.NotAfter)))
	fmt.Fprintf(w, "  wrote %s (0600)\n  wrote %s\n  wrote %s (the trust bundle)\n", keyFile, certFile, caFile)
	fmt.Fprintf(w, "keep it fresh: kvsctl pki renew --daemon --ca-url %s --cert %s --key %s --ca-file %s\n", c.String("ca-url"), certFile, keyFile, caFile)
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// enrollToken reads --token or --token-file (which must be private).
func enrollToken(c *cli.Context) (string, error) {
	tok, file := c.String("token"), c.String("token-file")
	switch {
	case tok != "" && file != "":
		return "", usagef("give --token or --token-file, not both")
	case file != "":
		data, err := readSecretFile("token", file)
		if err != nil {
			return "", err
		}
		tok = strings.TrimSpace(string(data))
	}
	if tok == "" {
		return "", usagef("missing --token (or --token-file): make one on the CA host with 'kvsctl pki token NAME --profile ...'")
	}
	return tok, nil
}

// pkiAgent is 'pki renew --daemon'.
func pkiAgent(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("--daemon renews the --cert/--key pairs given, not %q", c.Args().First())
	}
	certs, keys := c.StringSlice("cert"), c.StringSlice("key")
	if c.String("ca-url") == "" || len(certs) == 0 || len(certs) != len(keys) {
		return usagef("--daemon needs --ca-url and one --key for each --cert")
	}
	log, err := loggerOf(c)
	if err != nil {
		return err
	}
	pairs := make([]caclient.Pair, len(certs))
	for i := range certs {
		pairs[i] = caclient.Pair{Cert: certs[i], Key: keys[i]}
	}
	caFile := c.String("ca-file")
	if caFile == "" {
		caFile = filepath.Join(c.String("dir"), "ca.crt")
	}
	var execArgs []string
	if s := c.String("exec"); s != "" {
		execArgs = []string{"sh", "-c", s}
	}
	if r := c.Float64("renew-at"); r <= 0.05 || r >= 1 {
		return usagef("--renew-at %v: use a fraction between 0.05 and 1, such as 0.66", r)
	}
	ag := &caclient.Agent{CAURL: c.String("ca-url"), CAFile: caFile, Pairs: pairs, Exec: execArgs, Logger: log, RenewAt: c.Float64("renew-at")}
	fmt.Fprintf(c.App.ErrWriter, "kvsctl pki renew --daemon: keeping %d certificate(s) fresh through %s\n", len(pairs), c.String("ca-url"))
	err = ag.Run(c.Context)
	if errors.Is(err, caclient.ErrExpired) {
		return hintError{err, "an expired certificate cannot renew itself: make a token on the CA host and run 'kvsctl pki enroll' again"}
	}
	return err
}

// agentFlags are the flags of 'pki renew --daemon'.
func agentFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.BoolFlag{Name: "daemon", Usage: "keep renewing --cert/--key pairs through the online CA (--ca-url), each when 2/3 of its life has passed"},
		&cli.StringFlag{Name: "ca-url", EnvVars: env("ca-url"), Usage: "the online CA, https://HOST:PORT (with --daemon)"},
		&cli.StringSliceFlag{Name: "cert", Usage: "certificate file to keep fresh (with --daemon; repeatable, each with a --key)"},
		&cli.StringSliceFlag{Name: "key", Usage: "its key file (with --daemon)"},
		&cli.StringFlag{Name: "ca-file", Usage: "trust bundle that checks the CA, kept up to date (with --daemon; default DIR/ca.crt)"},
		&cli.StringFlag{Name: "exec", Usage: "shell command to run after each renewal (with --daemon; KVS_RENEWED_CERT and KVS_RENEWED_KEY name the files)"},
		&cli.Float64Flag{Name: "renew-at", Value: 2.0 / 3, Usage: "fraction of a certificate's lifetime after which it is renewed (with --daemon); lower leaves more time to ride out a CA outage"},
	}, logFlags()...)
}
