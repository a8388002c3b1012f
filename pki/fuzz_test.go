package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/youmark/pkcs8"
)

// The parsers of outside input: certificates, CRLs, CSRs and private keys,
// as PEM or DER, from files a user names on the command line. Each must
// return an error, never panic or hang, on any input. The seed corpus is in
// testdata/fuzz/<Fuzz name>/, written by TestWriteFuzzSeeds.
//
//	go test ./pki -run '^$' -fuzz FuzzParseCerts -fuzztime 1m

// fuzzLimits keeps encrypted-key seeds cheap while fuzzing: the real limits
// allow seconds of work per key.
var fuzzLimits = kdfLimits{iterations: 5000, scryptMemory: 1 << 20}

func FuzzParseCerts(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCerts(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for _, c := range certs {
			DescribeCert(c, time.Now())
		}
	})
}

func FuzzParseCRL(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		rl, err := ParseCRL(data)
		if err != nil {
			return
		}
		DescribeCRL(rl, time.Now())
		// A parsed CRL may come with any issuer: verifying must fail
		// cleanly.
		if c, err := NewCRL(rl, fuzzIssuer); err == nil {
			c.Check(time.Now())
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		info := DescribeCSR(csr) // checks the signature too
		if info.SignatureValid != (csr.CheckSignature() == nil) {
			t.Fatal("SignatureValid disagrees with CheckSignature")
		}
	})
}

func FuzzInspect(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ins, err := Inspect(data, time.Now())
		if err == nil && len(ins.Certificates)+len(ins.CSRs)+len(ins.CRLs) == 0 {
			t.Fatal("no error and nothing inspected")
		}
	})
}

func FuzzParseKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, data, passphrase []byte) {
		k, err := parseKey(data, passphrase, fuzzLimits)
		if err != nil {
			return
		}
		if k.Public() == nil {
			t.Fatal("key without a public key")
		}
	})
}

// fuzzIssuer is a fixed CA for FuzzParseCRL.
var fuzzIssuer = func() *x509.Certificate {
	k, err := GenerateKey(ECDSAP256)
	if err != nil {
		panic(err)
	}
	ca, err := NewCA("fuzz CA", k, time.Now())
	if err != nil {
		panic(err)
	}
	return ca.Cert
}()

// TestWriteFuzzSeeds regenerates the committed seed corpus:
//
//	KVS_WRITE_FUZZ_SEEDS=1 go test ./pki -run TestWriteFuzzSeeds
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KVS_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set KVS_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	d := newPKI(t, false)
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: d.ClientCert(), Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	caPEM, srvPEM, crlPEM := mustRead(t, d.CACert()), mustRead(t, d.ServerCert()), mustRead(t, d.CRL())
	der := func(p []byte) []byte { b, _ := pem.Decode(p); return b.Bytes }
	corrupt := []byte("-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n")
	truncated := func(b []byte) []byte { return b[:len(b)/2] }
	csr := greedyCSR(t, pkix.Name{CommonName: "seed.example", Organization: []string{"Seed"}}, []string{"seed.example"})

	write := func(fuzz, name string, values ...[]byte) {
		t.Helper()
		var sb strings.Builder
		sb.WriteString("go test fuzz v1\n")
		for _, v := range values {
			fmt.Fprintf(&sb, "[]byte(%q)\n", v)
		}
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, fz := range []string{"FuzzParseCerts", "FuzzInspect"} {
		write(fz, "ca-pem", caPEM)
		write(fz, "leaf-der", der(srvPEM))
		write(fz, "bundle", append(append([]byte(nil), srvPEM...), caPEM...))
		write(fz, "corrupt-pem", corrupt)
		write(fz, "truncated-der", truncated(der(caPEM)))
		write(fz, "empty", nil)
	}
	for _, fz := range []string{"FuzzParseCRL", "FuzzInspect"} {
		write(fz, "crl-pem", crlPEM)
		write(fz, "crl-der", der(crlPEM))
		write(fz, "crl-truncated", truncated(der(crlPEM)))
	}
	for _, fz := range []string{"FuzzParseCSR", "FuzzInspect"} {
		write(fz, "csr-ca-true-pem", csr)
		write(fz, "csr-der", der(csr))
	}
	write("FuzzParseCSR", "csr-new-header", bytes.ReplaceAll(csr, []byte("CERTIFICATE REQUEST"), []byte("NEW CERTIFICATE REQUEST")))

	ecKey := mustRead(t, d.ServerKey())
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	ec, _ := GenerateKey(ECDSAP256)
	sec1DER, _ := x509.MarshalECPrivateKey(ec.(*ecdsa.PrivateKey))
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	ed, _ := GenerateKey(Ed25519)
	edPEM, _ := MarshalKey(ed, nil)
	enc := func(kdf pkcs8.KDFOpts) []byte {
		der, err := pkcs8.MarshalPrivateKey(ec, []byte("seed"), &pkcs8.Opts{Cipher: pkcs8.AES256CBC, KDFOpts: kdf})
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
	}
	write("FuzzParseKey", "pkcs8-ec", ecKey, nil)
	write("FuzzParseKey", "pkcs1-rsa", pkcs1, nil)
	write("FuzzParseKey", "sec1-ec", sec1, nil)
	write("FuzzParseKey", "pkcs8-ed25519", edPEM, nil)
	write("FuzzParseKey", "pbkdf2-1000", enc(pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 1000, HMACHash: crypto.SHA256}), []byte("seed"))
	write("FuzzParseKey", "pbkdf2-wrong-pass", enc(pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 1000, HMACHash: crypto.SHA256}), []byte("wrong"))
	write("FuzzParseKey", "pbkdf2-over-limit", enc(pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 100_000, HMACHash: crypto.SHA256}), []byte("seed"))
	write("FuzzParseKey", "scrypt-small", enc(pkcs8.ScryptOpts{SaltSize: 16, CostParameter: 1 << 4, BlockSize: 8, ParallelizationParameter: 1}), []byte("seed"))
	write("FuzzParseKey", "encrypted-no-pass", enc(pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 1000, HMACHash: crypto.SHA256}), nil)
	write("FuzzParseKey", "cert-not-key", caPEM, nil)
	write("FuzzParseKey", "garbage", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), nil)
}

// FuzzParseTTL: any input is a duration of at least zero or an error,
// never a panic, and a parsed TTL prints back to the same duration.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"5m", "24h", "90d", "1d12h", "1h30m", "", "d", "-5m", "1.5d", "99999999d", "7d-1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTTL(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseTTL(%q) = %v, negative", s, d)
		}
		if again, err := ParseTTL(d.String()); d > 0 && (err != nil || again != d) {
			t.Fatalf("ParseTTL(%q) = %v, which parses back as %v, %v", s, d, again, err)
		}
	})
}

// FuzzNameConstraints: the --permit-* parsers never panic, and whatever
// they accept is consistent with the matcher (a constraint permits its own
// domain, when it is not a leading-dot one).
func FuzzNameConstraints(f *testing.F) {
	f.Add("example.com", "10.0.0.0/8", "ops@example.com", ".example.org", "www.example.com")
	f.Add(".example.com", "::1/128", "example.com", "example.org", "a.example.com")
	f.Fuzz(func(t *testing.T, dns, ip, email, uri, host string) {
		nc, err := ParseNameConstraints([]string{dns}, []string{ip}, []string{email}, []string{uri})
		if err != nil {
			return
		}
		if d := nc.DNS[0]; d[0] != '.' && !nc.Permits(d) {
			t.Fatalf("the constraint %q does not permit itself", d)
		}
		_ = nc.Permits(host)
		_ = nc.Strings()
	})
}
