package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// newPKI creates a PKI with ECDSA P-256 keys (fast under -race) in a new
// temporary directory.
func newPKI(t *testing.T, selfSigned bool) Dir {
	t.Helper()
	d := Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := Init(context.Background(), InitOptions{Dir: d, SelfSigned: selfSigned, KeyType: ECDSAP256, Hosts: []string{"localhost", "127.0.0.1", "::1"}}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return d
}

// newFlatPKI is newPKI for a flat CA (pki init --flat).
func newFlatPKI(t *testing.T) Dir {
	t.Helper()
	d := Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := Init(context.Background(), InitOptions{Dir: d, Flat: true, KeyType: ECDSAP256, Hosts: []string{"localhost", "127.0.0.1", "::1"}}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return d
}

func mustLoadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := LoadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCRL(t *testing.T, d Dir) *x509.RevocationList {
	t.Helper()
	data, err := os.ReadFile(d.CRL())
	if err != nil {
		t.Fatal(err)
	}
	rl, err := ParseCRL(data)
	if err != nil {
		t.Fatal(err)
	}
	return rl
}

// writeCADir writes a CA valid from notBefore (for expired or not-yet-valid
// CA tests) into a new directory, with an empty inventory.
func writeCADir(t *testing.T, at time.Time) Dir {
	t.Helper()
	d := Dir(filepath.Join(t.TempDir(), "certs"))
	if err := os.MkdirAll(string(d), DirMode); err != nil {
		t.Fatal(err)
	}
	key := mustKey(t)
	ca, err := NewCA("old CA", key, at)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := MarshalKey(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, d.CAKey(), pemKey, KeyMode)
	writeFile(t, d.CACert(), PEMCert(ca.Cert.Raw), CertMode)
	return d
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := WriteFileAtomic(path, data, mode, true); err != nil {
		t.Fatal(err)
	}
}

// otherCA is a CA unrelated to any PKI directory.
func otherCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("other CA", mustKey(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// leafFrom issues a leaf from ca with a fresh key.
func leafFrom(t *testing.T, ca *CA, p Profile, cn string, hosts ...string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	k := mustKey(t)
	c, err := ca.Sign(LeafRequest{Profile: p, Subject: pkix.Name{CommonName: cn}, Hosts: hosts, PublicKey: k.Public()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// writeCSR signs tmpl with key and writes it as a PEM CSR into a new
// temporary directory.
func writeCSR(t *testing.T, tmpl *x509.CertificateRequest, key crypto.Signer) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "req.csr")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
