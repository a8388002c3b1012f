package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// rsaE3Key is a 2048-bit RSA key with public exponent 3, which
// rsa.GenerateKey (always 65537) cannot make.
func rsaE3Key(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	e, one := big.NewInt(3), big.NewInt(1)
	for {
		p, _ := rand.Prime(rand.Reader, 1024)
		q, _ := rand.Prime(rand.Reader, 1024)
		n := new(big.Int).Mul(p, q)
		d := new(big.Int).ModInverse(e, new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)))
		if p.Cmp(q) == 0 || n.BitLen() != 2048 || d == nil {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 3}, D: d, Primes: []*big.Int{p, q}}
		k.Precompute()
		return k
	}
}

func csrOfKey(t *testing.T, cn string, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// TestPkiRefusesWeakKeys: 'pki sign' refuses a CSR for an RSA key with
// exponent 3, a P-224 key or a 1024-bit RSA key and writes nothing; it
// signs P-384 and Ed25519. A CA certificate on a weak key is refused by
// 'pki verify --ca' and 'pki trust install' (before any trust store is
// touched: PATH is emptied as a guard, see
// TestPkiTrustInstallRefusesUnconstrainedCA).
func TestPkiRefusesWeakKeys(t *testing.T) {
	f := newFixture(t)
	dir := string(f.dir)
	t.Setenv("PATH", t.TempDir())
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	weakCA, err := pki.NewCA("weak CA", p224, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := f.write(t, "weak-ca.crt", pki.PEMCert(weakCA.Cert.Raw), 0o644)
	sysFile := pki.SystemTrustFile(weakCA.Cert)

	for _, tc := range []struct {
		name string
		args []string
		want string // a substring of stderr; "" means success
	}{
		{"sign RSA e=3", []string{"pki", "sign", f.write(t, "e3.csr", csrOfKey(t, "e3", rsaE3Key(t)), 0o644), "--profile", "client"}, "RSA key with public exponent 3"},
		{"sign P-224", []string{"pki", "sign", f.write(t, "p224.csr", csrOfKey(t, "p224", p224), 0o644), "--profile", "client"}, "ECDSA key on curve P-224"},
		{"sign RSA-1024", []string{"pki", "sign", f.write(t, "rsa1024.csr", csrOfKey(t, "rsa1024", rsa1024), 0o644), "--profile", "client"}, "RSA key of 1024 bits is too small"},
		{"verify --ca on a P-224 key", []string{"pki", "verify", f.dir.ServerCert(), "--ca", caFile}, "ECDSA key on curve P-224"},
		{"trust install of a P-224 CA", []string{"pki", "trust", "install", "--ca", caFile, "--yes"}, "ECDSA key on curve P-224"},
		{"sign P-384", []string{"pki", "sign", f.write(t, "p384.csr", csrOfKey(t, "p384", p384), 0o644), "--profile", "client"}, ""},
		{"sign Ed25519", []string{"pki", "sign", f.write(t, "ed.csr", csrOfKey(t, "ed", ed), 0o644), "--profile", "client"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, f.root)
			code, out, errs := runPKI(t, append(tc.args, "--dir", dir)...)
			if tc.want == "" {
				if code != 0 {
					t.Fatalf("exit %d, stderr %q", code, errs)
				}
				return
			}
			if code != 1 || out != "" || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, and %q", code, out, errs, tc.want)
			}
			if diffs := diffSnapshots(before, snapshot(t, f.root)); len(diffs) > 0 {
				t.Errorf("files changed: %v", diffs)
			}
		})
	}
	if _, err := os.Stat(sysFile); err == nil {
		t.Errorf("the weak CA is in the system trust store: %s", sysFile)
	}
}
