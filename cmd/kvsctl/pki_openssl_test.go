package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/pki"
)

// requireOpenSSL returns the openssl binary. Locally a missing openssl skips
// the interop tests loudly; under CI=true it fails them (.ci/run installs it).
func requireOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed, and CI=true requires the interop tests to run")
		}
		t.Skip("SKIPPING OpenSSL interop: openssl is not installed (CI installs it)")
	}
	return path
}

// openssl runs an openssl command and returns its combined output and
// whether it succeeded.
func openssl(t *testing.T, bin string, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err == nil
}

func mustOpenSSL(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, ok := openssl(t, bin, args...)
	if !ok {
		t.Fatalf("openssl %s failed:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// TestPkiOpenSSLInterop checks everything kvsctl writes with a tool nobody
// here wrote. It uses the default key type (RSA-2048) and an encrypted CA
// key, as a careful user would.
func TestPkiOpenSSLInterop(t *testing.T) {
	bin := requireOpenSSL(t)
	root := t.TempDir()
	dir := filepath.Join(root, "certs")
	d := pki.Dir(dir)
	pass := filepath.Join(root, "pass")
	os.WriteFile(pass, []byte("interop passphrase\n"), 0o600)
	mustRun(t, "pki", "init", "--dir", dir, "--passphrase-file", pass, "--hosts", "localhost,127.0.0.1")
	mustRun(t, "pki", "issue", "server", "web", "--dir", dir, "--hosts", "web.example", "--key-type", "ecdsa-p256", "--passphrase-file", pass)
	mustRun(t, "pki", "issue", "client", "ed", "--dir", dir, "--key-type", "ed25519", "--passphrase-file", pass)

	t.Run("verify purpose", func(t *testing.T) {
		for _, tc := range []struct{ cert, purpose string }{
			{d.ServerCert(), "sslserver"}, {d.ClientCert(), "sslclient"}, {d.IssuedCert("web"), "sslserver"}, {d.IssuedCert("ed"), "sslclient"},
		} {
			// The file holds the leaf and its intermediate: openssl takes the
			// intermediate from it with -untrusted.
			out := mustOpenSSL(t, bin, "verify", "-CAfile", d.CACert(), "-untrusted", tc.cert, "-purpose", tc.purpose, tc.cert)
			if !strings.Contains(out, ": OK") {
				t.Errorf("%s: %s", tc.cert, out)
			}
		}
		// Negative controls: the wrong purpose is refused, and so is the
		// leaf without its intermediate.
		if out, ok := openssl(t, bin, "verify", "-CAfile", d.CACert(), "-untrusted", d.ServerCert(), "-purpose", "sslclient", d.ServerCert()); ok {
			t.Errorf("server certificate accepted for sslclient:\n%s", out)
		}
		if out, ok := openssl(t, bin, "verify", "-CAfile", d.CACert(), d.ServerCert()); ok || !strings.Contains(out, "unable to get local issuer certificate") {
			t.Errorf("leaf verified without its intermediate:\n%s", out)
		}
	})

	t.Run("x509 text of every certificate", func(t *testing.T) {
		for _, p := range []string{d.CACert(), d.ServerCert(), d.ClientCert(), d.IssuedCert("web"), d.IssuedCert("ed")} {
			out := mustOpenSSL(t, bin, "x509", "-noout", "-text", "-in", p)
			if !strings.Contains(out, "Serial Number") {
				t.Errorf("%s:\n%s", p, out)
			}
		}
		for file, pathlen := range map[string]string{d.CACert(): "1", d.IntermediateCert(): "0"} {
			ca := mustOpenSSL(t, bin, "x509", "-noout", "-text", "-in", file)
			for _, want := range []string{"CA:TRUE, pathlen:" + pathlen, "Certificate Sign, CRL Sign", "Subject Key Identifier", "Public-Key: (2048 bit)"} {
				if !strings.Contains(ca, want) {
					t.Errorf("%s lacks %q", file, want)
				}
			}
		}
		fp := mustOpenSSL(t, bin, "x509", "-noout", "-fingerprint", "-sha256", "-in", d.ServerCert())
		if !strings.Contains(fp, pki.Fingerprint(certOf(t, d.ServerCert()).Raw)) {
			t.Errorf("fingerprint differs from openssl's: %s", fp)
		}
	})

	t.Run("encrypted CA key", func(t *testing.T) {
		mustOpenSSL(t, bin, "pkey", "-in", d.CAKey(), "-passin", "file:"+pass, "-noout")
		wrong := filepath.Join(root, "wrong")
		os.WriteFile(wrong, []byte("nope\n"), 0o600)
		if _, ok := openssl(t, bin, "pkey", "-in", d.CAKey(), "-passin", "file:"+wrong, "-noout"); ok {
			t.Error("openssl read the CA key with a wrong passphrase")
		}
	})

	t.Run("sign an openssl CSR asking for CA:TRUE", func(t *testing.T) {
		key, csr := filepath.Join(root, "req.key"), filepath.Join(root, "req.csr")
		mustOpenSSL(t, bin, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
			"-subj", "/CN=req.example/O=Interop", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
			"-addext", "subjectAltName=DNS:req.example,IP:192.0.2.1")
		mustRun(t, "pki", "sign", csr, "--profile", "server", "--dir", dir, "--passphrase-file", pass)
		crt := d.IssuedCert("req.example")
		mustOpenSSL(t, bin, "verify", "-CAfile", d.CACert(), "-untrusted", crt, "-purpose", "sslserver", crt)
		text := mustOpenSSL(t, bin, "x509", "-noout", "-text", "-in", crt)
		for _, want := range []string{"CA:FALSE", "DNS:req.example, IP Address:192.0.2.1", "TLS Web Server Authentication", "O = Interop"} {
			if !strings.Contains(text, want) {
				t.Errorf("signed certificate lacks %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, "CA:TRUE") || strings.Contains(text, "Certificate Sign") {
			t.Errorf("the CSR obtained CA powers:\n%s", text)
		}
		// The key openssl made matches the certificate kvsctl signed.
		mod1 := mustOpenSSL(t, bin, "pkey", "-in", key, "-pubout")
		mod2 := mustOpenSSL(t, bin, "x509", "-in", crt, "-noout", "-pubkey")
		if mod1 != mod2 {
			t.Error("signed certificate carries a different public key")
		}
	})

	t.Run("pkcs12", func(t *testing.T) {
		pw := filepath.Join(root, "p12pw")
		os.WriteFile(pw, []byte("bundle password\n"), 0o600)
		p12 := filepath.Join(root, "client.p12")
		mustRun(t, "pki", "export", "client", "--p12", p12, "--password-file", pw, "--dir", dir)
		out := mustOpenSSL(t, bin, "pkcs12", "-info", "-noout", "-in", p12, "-passin", "file:"+pw)
		if !strings.Contains(out, "PBES2") || !strings.Contains(out, "AES-256-CBC") {
			t.Errorf("bundle is not modern-encrypted:\n%s", out)
		}
		// The bundle holds the client's key and certificate, the
		// intermediate and the root.
		certs := mustOpenSSL(t, bin, "pkcs12", "-in", p12, "-passin", "file:"+pw, "-nokeys")
		if strings.Count(certs, "BEGIN CERTIFICATE") != 3 {
			t.Errorf("bundle holds %d certificates, want 3", strings.Count(certs, "BEGIN CERTIFICATE"))
		}
		if _, ok := openssl(t, bin, "pkcs12", "-info", "-noout", "-in", p12, "-passin", "pass:wrong"); ok {
			t.Error("openssl opened the bundle with a wrong password")
		}
	})

	t.Run("crl and revocation", func(t *testing.T) {
		// crl.pem's first CRL is the intermediate's.
		out := mustOpenSSL(t, bin, "crl", "-in", d.CRL(), "-CAfile", d.IntermediateCert(), "-noout")
		if !strings.Contains(out, "verify OK") {
			t.Errorf("crl: %s", out)
		}
		verify := func(cert string) (string, bool) {
			return openssl(t, bin, "verify", "-crl_check_all", "-CAfile", d.CACert(), "-untrusted", cert, "-CRLfile", d.CRL(), cert)
		}
		// Control: before revocation, -crl_check_all (both CRLs) accepts the client.
		if out, ok := verify(d.IssuedCert("ed")); !ok {
			t.Fatalf("before revocation:\n%s", out)
		}
		mustRun(t, "pki", "revoke", d.IssuedCert("ed"), "--reason", "keyCompromise", "--dir", dir, "--passphrase-file", pass)
		out, ok := verify(d.IssuedCert("ed"))
		if ok || !strings.Contains(out, "certificate revoked") {
			t.Errorf("revoked certificate not rejected:\n%s", out)
		}
		if out, ok := verify(d.ServerCert()); !ok {
			t.Errorf("the server, not revoked:\n%s", out)
		}
		text := mustOpenSSL(t, bin, "crl", "-in", d.CRL(), "-noout", "-text")
		if !strings.Contains(text, "X509v3 CRL Number") || !strings.Contains(text, "Key Compromise") {
			t.Errorf("CRL text:\n%s", text)
		}
	})

	t.Run("renewed certificate", func(t *testing.T) {
		mustRun(t, "pki", "renew", d.ServerCert(), "--dir", dir, "--passphrase-file", pass)
		mustOpenSSL(t, bin, "verify", "-CAfile", d.CACert(), "-untrusted", d.ServerCert(), "-purpose", "sslserver", d.ServerCert())
		mod1 := mustOpenSSL(t, bin, "pkey", "-in", d.ServerKey(), "-pubout")
		mod2 := mustOpenSSL(t, bin, "x509", "-in", d.ServerCert(), "-noout", "-pubkey")
		if mod1 != mod2 {
			t.Error("renewed key and certificate do not match")
		}
	})

	t.Run("self-signed mode", func(t *testing.T) {
		ss := pki.Dir(filepath.Join(root, "ss"))
		mustRun(t, "pki", "init", "--self-signed", "--dir", string(ss), "--key-type", "ecdsa-p256")
		mustOpenSSL(t, bin, "verify", "-CAfile", ss.ServerCert(), "-purpose", "sslserver", ss.ServerCert())
		mustOpenSSL(t, bin, "verify", "-CAfile", ss.ClientCert(), "-purpose", "sslclient", ss.ClientCert())
		// Each side trusts exactly the other: the server is no root for a client.
		if out, ok := openssl(t, bin, "verify", "-CAfile", ss.ServerCert(), ss.ClientCert()); ok {
			t.Errorf("client verified against the server certificate:\n%s", out)
		}
	})
}
