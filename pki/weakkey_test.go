package pki

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"maps"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rsaKeyWithExponent makes an RSA key of bits bits with public exponent e,
// which rsa.GenerateKey (always 65537) cannot.
func rsaKeyWithExponent(t *testing.T, bits, e int) *rsa.PrivateKey {
	t.Helper()
	E, one := big.NewInt(int64(e)), big.NewInt(1)
	for {
		p, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		q, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		n := new(big.Int).Mul(p, q)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(E, phi)
		if p.Cmp(q) == 0 || n.BitLen() != bits || d == nil {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: e}, D: d, Primes: []*big.Int{p, q}}
		k.Precompute()
		if err := k.Validate(); err != nil {
			t.Fatal(err)
		}
		return k
	}
}

// testKeys are keys of every kind CheckPublicKey judges, by name.
func testKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	keys := map[string]crypto.Signer{}
	for name, c := range map[string]elliptic.Curve{"P-224": elliptic.P224(), "P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	for name, bits := range map[string]int{"RSA-1024": 1024, "RSA-2048": 2048} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	keys["RSA-2048 e=3"] = rsaKeyWithExponent(t, 2048, 3)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys["Ed25519"] = ed
	return keys
}

// weakKeys maps the names of testKeys that must be refused to what the
// refusal says.
var weakKeys = map[string]string{
	"P-224":        "ECDSA key on curve P-224",
	"RSA-1024":     "RSA key of 1024 bits is too small",
	"RSA-2048 e=3": "RSA key with public exponent 3",
}

// TestSignCSRRefusesWeakKeys: a CSR for an RSA key with exponent 3, a
// P-224 key or a 1024-bit RSA key is refused with ErrWeakKey and nothing
// written; P-256, P-384, P-521, RSA-2048 (e=65537) and Ed25519 are signed.
func TestSignCSRRefusesWeakKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	for name, key := range testKeys(t) {
		t.Run(name, func(t *testing.T) {
			fname := strings.NewReplacer(" ", "", "=", "").Replace(name)
			csr := writeCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fname}}, key)
			before := dirFiles(t, d)
			iss, err := SignCSR(ctx, SignOptions{Dir: d, CSRFile: csr, Profile: ProfileClient})
			want, weak := weakKeys[name]
			if !weak {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if iss.CertFile != d.IssuedCert(fname) {
					t.Errorf("wrote %s", iss.CertFile)
				}
				return
			}
			if !errors.Is(err, ErrWeakKey) || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want one wrapping ErrWeakKey that says %q", err, want)
			}
			if after := dirFiles(t, d); !maps.Equal(before, after) {
				t.Error("a refused CSR changed the directory")
			}
		})
	}
}

// TestWeakKeyInCAOrLeaf: CheckPublicKey guards every external
// certificate pki uses as a CA or certifies again: a CA certificate with a
// weak key is refused as the roots of VerifyFiles and as the directory's
// CA, and a leaf with a weak key is not renewed with it.
func TestWeakKeyInCAOrLeaf(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	weak, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A CA on a P-224 key, made with crypto/x509 (NewCA does not check).
	weakCA, err := NewCA("weak CA", weak, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("VerifyFiles roots", func(t *testing.T) {
		t.Parallel()
		d := newPKI(t, false)
		caFile := filepath.Join(t.TempDir(), "weak-ca.crt")
		writeFile(t, caFile, PEMCert(weakCA.Cert.Raw), CertMode)
		_, err := VerifyFiles(ctx, VerifyFileOptions{Dir: d, CertFile: d.ServerCert(), CAFile: caFile})
		if !errors.Is(err, ErrWeakKey) || !strings.Contains(err.Error(), caFile) {
			t.Errorf("error %v, want one wrapping ErrWeakKey that names %s", err, caFile)
		}
	})
	t.Run("the directory's CA", func(t *testing.T) {
		t.Parallel()
		d := newFlatPKI(t)
		pemKey, err := MarshalKey(weak, nil)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, d.CAKey(), pemKey, KeyMode)
		writeFile(t, d.CACert(), PEMCert(weakCA.Cert.Raw), CertMode)
		before := dirFiles(t, d)
		_, err = Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "x", KeyType: ECDSAP256})
		if !errors.Is(err, ErrWeakKey) {
			t.Errorf("Issue with a P-224 CA: %v, want ErrWeakKey", err)
		}
		if after := dirFiles(t, d); !maps.Equal(before, after) {
			t.Error("a refused issue changed the directory")
		}
	})
	t.Run("renew a leaf keeping its weak key", func(t *testing.T) {
		t.Parallel()
		d := newPKI(t, false)
		ca, err := LoadCA(d, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		// A leaf on the weak key, signed by the directory's CA the way an
		// older kvsctl or another tool could have.
		serial, _ := NewSerial()
		tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "old"},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
		leaf, err := create(tmpl, ca.Cert, weak.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		file := d.Path("old.crt")
		writeFile(t, file, PEMCert(leaf.Raw), CertMode)
		before := dirFiles(t, d)
		_, err = Renew(ctx, RenewOptions{Dir: d, CertFile: file, ReuseKey: true})
		if !errors.Is(err, ErrWeakKey) {
			t.Errorf("renewing a P-224 leaf with its key: %v, want ErrWeakKey", err)
		}
		if after := dirFiles(t, d); !maps.Equal(before, after) {
			t.Error("a refused renewal changed the directory")
		}
	})
}

// TestCheckPublicKey: the accepted keys pass, the weak ones and keys of
// other types fail with ErrWeakKey.
func TestCheckPublicKey(t *testing.T) {
	t.Parallel()
	for name, key := range testKeys(t) {
		err := CheckPublicKey(key.Public())
		if want, weak := weakKeys[name]; weak {
			if !errors.Is(err, ErrWeakKey) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want ErrWeakKey saying %q", name, err, want)
			}
		} else if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for _, pub := range []crypto.PublicKey{nil, x.PublicKey(), ed25519.PublicKey(make([]byte, 12))} {
		if err := CheckPublicKey(pub); !errors.Is(err, ErrWeakKey) {
			t.Errorf("%T: %v, want ErrWeakKey", pub, err)
		}
	}
}
