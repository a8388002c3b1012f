package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

func revoke(t *testing.T, d pki.Dir, target string) {
	t.Helper()
	if _, err := pki.Revoke(context.Background(), pki.RevokeOptions{Dir: d, Target: target, Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
}

func concat(t *testing.T, name string, files ...string) string {
	t.Helper()
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	out := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(out, all, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMissingCRLRefusesToStart: a CA-mode directory without crl.pem is a
// start-up error, not a server that checks no revocation (security
// finding 2).
func TestMissingCRLRefusesToStart(t *testing.T) {
	d := testPKI(t, false)
	if err := os.Remove(d.CRL()); err != nil {
		t.Fatal(err)
	}
	files, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Files: files, Store: newMemStore()})
	if !errors.Is(err, ErrNoCRL) {
		t.Fatalf("New without the CRL: %v, want ErrNoCRL", err)
	}
}

// TestCRLAppearingLaterIsEnforced: started with NoCRL on a directory
// without crl.pem, the server watches the CRL's path anyway and enforces
// the CRL that 'pki revoke' writes (security finding 2: it never started
// checking before).
func TestCRLAppearingLaterIsEnforced(t *testing.T) {
	d := testPKI(t, false)
	if err := os.Remove(d.CRL()); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, d, nil, func(c *Config) { c.NoCRL = true })
	goneFiles, gone := issueClient(t, d, "gone")
	c := freshClient(t, ts.addr, clientTLS(t, goneFiles, nil), false)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	if !strings.Contains(ts.Logs(), "revocation is not checked") {
		t.Error("no warning that revocation is not checked")
	}
	revoke(t, d, gone.CertFile)
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	expectRejected(t, "revoked after the CRL appeared", c.Ping(t.Context()))
}

// intermediatesOf concatenates the intermediates bundles of the
// hierarchies among dirs into one file, for a server that trusts the roots
// of all of them; "" when none is a hierarchy.
func intermediatesOf(t *testing.T, dirs ...pki.Dir) string {
	t.Helper()
	var files []string
	for _, d := range dirs {
		if d.Hierarchy() {
			files = append(files, d.Intermediates())
		}
	}
	if len(files) == 0 {
		return ""
	}
	return concat(t, "intermediates.pem", files...)
}

// TestCRLPerIssuer: with two PKIs in the bundle and all their CRLs in one
// file, a certificate revoked by the second PKI's CA is refused (security
// finding 3: only the first CRL block counted), and a CA without a CRL is
// a start-up error naming it. Two flat CAs, and two hierarchies, whose
// intermediates the server is given too.
func TestCRLPerIssuer(t *testing.T) {
	for _, layout := range caLayouts {
		t.Run(layout.name, func(t *testing.T) {
			d1, d2 := layoutPKI(t, layout.flat), layoutPKI(t, layout.flat)
			bobFiles, bob := issueClient(t, d2, "bob")
			revoke(t, d2, bob.CertFile)
			bundle := concat(t, "bundle.pem", d1.CACert(), d2.CACert())
			crls := concat(t, "crls.pem", d1.CRL(), d2.CRL())
			inters := intermediatesOf(t, d1, d2)
			ts := startServer(t, d1, nil, func(c *Config) {
				c.Files.CA, c.Files.CRLs, c.Files.Intermediates = bundle, []string{crls}, inters
			})
			bobFiles.CA = d1.CACert()
			expectRejected(t, "a certificate the second CA revoked", freshClient(t, ts.addr, clientTLS(t, bobFiles, nil), false).Ping(t.Context()))
			refusedWith(t, ts, "certificate revoked: serial "+pki.SerialHex(bob.Cert))
			aliceFiles, _ := issueClient(t, d2, "alice")
			aliceFiles.CA = d1.CACert()
			if err := freshClient(t, ts.addr, clientTLS(t, aliceFiles, nil), false).Ping(t.Context()); err != nil {
				t.Errorf("a current certificate of the second CA: %v", err)
			}
			// The same CRLs given as two files work alike.
			ts2 := startServer(t, d1, nil, func(c *Config) {
				c.Files.CA, c.Files.CRLs, c.Files.Intermediates = bundle, []string{d1.CRL(), d2.CRL()}, inters
			})
			expectRejected(t, "two CRL files", freshClient(t, ts2.addr, clientTLS(t, bobFiles, nil), false).Ping(t.Context()))

			files, err := d1.ServerFiles()
			if err != nil {
				t.Fatal(err)
			}
			files.CA, files.Intermediates = bundle, inters // the second PKI without its CRLs
			if _, err := New(Config{Files: files, Store: newMemStore()}); !errors.Is(err, ErrNoCRL) || !strings.Contains(err.Error(), bob.Cert.Issuer.CommonName) {
				t.Errorf("a bundle CA without a CRL: %v, want ErrNoCRL naming %s", err, bob.Cert.Issuer.CommonName)
			}
			// A CRL no CA of the bundle signed is refused.
			files, _ = d1.ServerFiles()
			files.CRLs = []string{d1.CRL(), d2.CRL()}
			if _, err := New(Config{Files: files, Store: newMemStore()}); err == nil || !strings.Contains(err.Error(), "was not signed by any CA the server trusts") {
				t.Errorf("a CRL of another CA: %v, want it refused", err)
			}
		})
	}
}

// TestCRLRollbackRefused: replacing the CRL with an older one that is
// still valid does not un-revoke: the reload is refused and the old
// snapshot stays (security finding 8).
func TestCRLRollbackRefused(t *testing.T) {
	d := testPKI(t, false)
	old, err := os.ReadFile(d.CRL())
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, d, nil, nil)
	malloryFiles, mallory := issueClient(t, d, "mallory")
	revoke(t, d, mallory.CertFile)
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	c := freshClient(t, ts.addr, clientTLS(t, malloryFiles, nil), false)
	expectRejected(t, "revoked", c.Ping(t.Context()))
	if err := os.WriteFile(d.CRL(), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Reload(); err == nil || !strings.Contains(err.Error(), "older") {
		t.Errorf("reload of an older CRL: %v, want it refused", err)
	}
	expectRejected(t, "revoked, after a rolled-back CRL", c.Ping(t.Context()))
}

// TestOpenConnectionOutlivesNothing: a keep-alive connection stops being
// served when its client certificate expires, or when its CA leaves the
// bundle (security finding 5: only the CRL was re-checked per request).
func TestOpenConnectionOutlivesNothing(t *testing.T) {
	t.Run("expiry", func(t *testing.T) {
		d := testPKI(t, false)
		var skew atomic.Int64
		now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		ts := startServer(t, d, nil, func(c *Config) { c.TLS.Now = now })
		shortFiles := signClient(t, d, "short", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		c := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.Files = shortFiles })
		if _, err := c.Put(t.Context(), "k", []byte("v"), kvs.Cond{}); err != nil {
			t.Fatal(err)
		}
		skew.Store(int64(2 * time.Hour))
		if _, err := c.Get(t.Context(), "k"); !errors.Is(err, client.ErrRejected) {
			t.Errorf("request after the certificate expired, on the same connection: %v", err)
		}
	})
	t.Run("CA removed", func(t *testing.T) {
		d1, d2 := testPKI(t, false), testPKI(t, false)
		bundle := concat(t, "bundle.pem", d1.CACert(), d2.CACert())
		crls := concat(t, "crls.pem", d1.CRL(), d2.CRL())
		inters := concat(t, "intermediates.pem", d1.Intermediates(), d2.Intermediates())
		ts := startServer(t, d1, nil, func(c *Config) {
			c.Files.CA, c.Files.CRLs, c.Files.Intermediates = bundle, []string{crls}, inters
		})
		other, err := d2.ClientFiles()
		if err != nil {
			t.Fatal(err)
		}
		other.CA = d1.CACert()
		c := newTestClient(t, d1, ts.addr, func(cc *client.Config) { cc.Files = other })
		if _, err := c.Put(t.Context(), "k", []byte("v"), kvs.Cond{}); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(d1.CACert())
		if err := os.WriteFile(bundle, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c1, _ := os.ReadFile(d1.CRL())
		if err := os.WriteFile(crls, c1, 0o644); err != nil {
			t.Fatal(err)
		}
		i1, _ := os.ReadFile(d1.Intermediates())
		if err := os.WriteFile(inters, i1, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ts.srv.Reload(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(t.Context(), "k"); !errors.Is(err, client.ErrRejected) {
			t.Errorf("request after its CA left the bundle, on the same connection: %v", err)
		}
	})
}

// TestClientAuthMustBeNamed: a client certificate of the CA without an
// extended key usage, or with anyExtendedKeyUsage only, is refused: Go's
// verifier takes both as valid for client authentication, and a CA that
// issues them for other uses must not grant access (security finding 13).
// Nor is a CA certificate a client, even one that names clientAuth. The
// control, made the same way with clientAuth, is let in; each certificate
// file holds the intermediate too, so every one of them is presented.
func TestClientAuthMustBeNamed(t *testing.T) {
	for _, layout := range caLayouts {
		t.Run(layout.name, func(t *testing.T) {
			d := layoutPKI(t, layout.flat)
			ts := startServer(t, d, nil, nil)
			ca, err := pki.LoadCA(d, nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name   string
				eku    []x509.ExtKeyUsage
				isCA   bool
				reason string // "" when accepted
			}{
				{"clientAuth (control)", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false, ""},
				{"no extended key usage", nil, false, "must name clientAuth"},
				{"anyExtendedKeyUsage", []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, false, "must name clientAuth"},
				{"CA certificate naming clientAuth", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, true, "is not a client certificate"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					key, err := pki.GenerateKey(pki.ECDSAP256)
					if err != nil {
						t.Fatal(err)
					}
					serial, _ := pki.NewSerial()
					tmpl := &x509.Certificate{
						SerialNumber: serial, Subject: pkix.Name{CommonName: "client"},
						NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
						KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: tc.eku,
						BasicConstraintsValid: true, IsCA: tc.isCA,
					}
					if tc.isCA {
						tmpl.KeyUsage |= x509.KeyUsageCertSign
					}
					der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
					if err != nil {
						t.Fatal(err)
					}
					keyPEM, _ := pki.MarshalKey(key, nil)
					dir := t.TempDir()
					f := pki.Files{Cert: filepath.Join(dir, "c.crt"), Key: filepath.Join(dir, "c.key"), CA: d.CACert()}
					if err := os.WriteFile(f.Cert, leafFile(ca, der), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(f.Key, keyPEM, 0o600); err != nil {
						t.Fatal(err)
					}
					err = freshClient(t, ts.addr, clientTLS(t, f, nil), false).Ping(t.Context())
					if tc.reason == "" {
						if err != nil {
							t.Fatalf("refused: %v", err)
						}
						return
					}
					expectRejected(t, tc.name, err)
					refusedWith(t, ts, tc.reason)
				})
			}
		})
	}
}

// TestWeakKeysRefusedAtLoad: a CA of the bundle, or the server's own
// certificate, with a weak key (ECDSA P-224 here) is refused when the
// server loads its files (security finding 13).
func TestWeakKeysRefusedAtLoad(t *testing.T) {
	d := testPKI(t, false)
	weak, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "weak CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, weak.Public(), weak)
	if err != nil {
		t.Fatal(err)
	}
	weakFile := filepath.Join(t.TempDir(), "weak.crt")
	if err := os.WriteFile(weakFile, pki.PEMCert(der), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	files.CA = concat(t, "bundle.pem", d.CACert(), weakFile)
	if _, err := LoadTLS(files, TLSOptions{NoCRL: true}); !errors.Is(err, pki.ErrWeakKey) {
		t.Errorf("a bundle with a P-224 CA: %v, want ErrWeakKey", err)
	}
}
