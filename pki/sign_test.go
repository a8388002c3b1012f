package pki

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
)

// greedyCSR is a CSR that asks for everything a CA must never grant on
// request: CA:TRUE, keyCertSign, any EKU, and name constraints.
func greedyCSR(t *testing.T, subject pkix.Name, dns []string) []byte {
	t.Helper()
	bc, _ := asn1.Marshal(struct {
		IsCA bool
	}{true})
	ku, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign|cRLSign
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{2, 5, 29, 37, 0}})
	u, _ := url.Parse("spiffe://example.org/web")
	tmpl := &x509.CertificateRequest{
		Subject:        subject,
		DNSNames:       dns,
		IPAddresses:    []net.IP{net.ParseIP("10.9.8.7")},
		EmailAddresses: []string{"ops@example.org"},
		URIs:           []*url.URL{u},
		ExtraExtensions: []pkix.Extension{
			{Id: oidBasicConstraints, Critical: true, Value: bc},
			{Id: oidKeyUsage, Critical: true, Value: ku},
			{Id: oidExtKeyUsage, Value: eku},
			{Id: oidNameConstraints, Critical: true, Value: []byte{0x30, 0x00}},
		},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSignCSRGrantsNothingButSubjectAndSANs(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	subject := pkix.Name{CommonName: "web.example.org", Organization: []string{"Example"}, Country: []string{"NL"}}
	csrFile := filepath.Join(t.TempDir(), "web.csr")
	os.WriteFile(csrFile, greedyCSR(t, subject, []string{"web.example.org", "www.example.org"}), 0o644)

	iss, err := SignCSR(context.Background(), SignOptions{Dir: d, CSRFile: csrFile, Profile: ProfileServer})
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if c.IsCA || !c.BasicConstraintsValid {
		t.Fatalf("signed CSR got IsCA=%v", c.IsCA)
	}
	if c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Errorf("signed CSR got key usage %v", c.KeyUsage)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("EKU %v, want serverAuth only", c.ExtKeyUsage)
	}
	if len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains) != 0 || c.PermittedDNSDomainsCritical {
		t.Error("name constraints copied")
	}
	allowed := map[string]bool{"2.5.29.19": true, "2.5.29.15": true, "2.5.29.37": true, "2.5.29.17": true, "2.5.29.14": true, "2.5.29.35": true}
	for _, e := range c.Extensions {
		if !allowed[e.Id.String()] {
			t.Errorf("unexpected extension %v in the certificate", e.Id)
		}
	}
	csr, _ := ParseCSR(mustRead(t, csrFile))
	if string(c.RawSubject) != string(csr.RawSubject) {
		t.Errorf("subject %v, want the CSR's %v", c.Subject, csr.Subject)
	}
	if strings.Join(c.DNSNames, ",") != "web.example.org,www.example.org" || len(c.IPAddresses) != 1 ||
		len(c.EmailAddresses) != 1 || len(c.URIs) != 1 {
		t.Errorf("SANs not copied: %v %v %v %v", c.DNSNames, c.IPAddresses, c.EmailAddresses, c.URIs)
	}
	if iss.KeyFile != "" || iss.CertFile != d.IssuedCert("web.example.org") {
		t.Errorf("files %q %q", iss.CertFile, iss.KeyFile)
	}
	inv, _ := d.LoadInventory()
	if inv.Find(SerialHex(c)) == nil {
		t.Error("signed certificate not in the inventory")
	}
}

func TestSignCSRRefusals(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		return p
	}
	good := greedyCSR(t, pkix.Name{CommonName: "x"}, nil)
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "weak"}}, weakKey)
	noCN, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"a.example"}}, mustKey(t))
	spaceCN, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "my server"}}, mustKey(t))

	for _, tc := range []struct {
		name    string
		file    string
		profile Profile
		opts    func(*SignOptions)
		want    string
		is      error
	}{
		{"bad signature", write("tampered.csr", tampered), ProfileClient, nil, "signature is invalid", ErrBadCSR},
		{"corrupt PEM", write("corrupt.csr", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")), ProfileClient, nil, "parse certificate request", nil},
		{"not a CSR", write("cert.csr", mustRead(t, d.CACert())), ProfileClient, nil, "not a certificate request", nil},
		{"weak key", write("weak.csr", weakDER), ProfileClient, nil, "1024 bits is too small", nil},
		{"no CN", write("nocn.csr", noCN), ProfileServer, nil, "no common name", nil},
		{"CN not a file name", write("space.csr", spaceCN), ProfileClient, nil, "give the certificate a name", ErrNeedName},
		{"server without host", write("space2.csr", spaceCN), ProfileServer, func(o *SignOptions) { o.Name = "s" }, "not a host name", nil},
		{"unknown profile", write("ok.csr", good), "web", nil, "unknown profile", nil},
		{"missing file", filepath.Join(dir, "nope.csr"), ProfileClient, nil, "no such file", nil},
	} {
		o := SignOptions{Dir: d, CSRFile: tc.file, Profile: tc.profile}
		if tc.opts != nil {
			tc.opts(&o)
		}
		_, err := SignCSR(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(string(d), "issued")); err == nil {
		t.Error("a refused CSR created issued/")
	}
	// A server CSR whose CN is a host name and that has no SANs gets the CN.
	plain, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "db.internal"}}, mustKey(t))
	iss, err := SignCSR(context.Background(), SignOptions{Dir: d, CSRFile: write("db.csr", plain), Profile: ProfileServer, Days: 10})
	if err != nil {
		t.Fatal(err)
	}
	if iss.Cert.VerifyHostname("db.internal") != nil {
		t.Errorf("CN not used as SAN: %v", iss.Cert.DNSNames)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
