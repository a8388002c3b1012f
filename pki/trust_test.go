package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"testing"
	"time"
)

// constrainedCA is a self-signed root CA made with crypto/x509 whose
// template edit adds name constraints.
func constrainedCA(t *testing.T, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	k := mustKey(t)
	serial, _ := NewSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "constrained CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCheckNameConstrained: a root CA with no name constraints at all can
// sign for any name and fails the check that 'trust install' runs; one
// with any constraint passes it.
func TestCheckNameConstrained(t *testing.T) {
	t.Parallel()
	_, ten, _ := net.ParseCIDR("10.0.0.0/8")
	for _, tc := range []struct {
		name          string
		edit          func(*x509.Certificate)
		unconstrained bool
	}{
		{"no constraints", func(*x509.Certificate) {}, true},
		{"permitted DNS domain", func(c *x509.Certificate) { c.PermittedDNSDomains = []string{".example.org"} }, false},
		{"permitted DNS domain, critical", func(c *x509.Certificate) {
			c.PermittedDNSDomains, c.PermittedDNSDomainsCritical = []string{"example.org"}, true
		}, false},
		{"excluded DNS domain", func(c *x509.Certificate) { c.ExcludedDNSDomains = []string{"google.com"} }, false},
		{"permitted IP range", func(c *x509.Certificate) { c.PermittedIPRanges = []*net.IPNet{ten} }, false},
		{"permitted e-mail", func(c *x509.Certificate) { c.PermittedEmailAddresses = []string{"example.org"} }, false},
		{"permitted URI domain", func(c *x509.Certificate) { c.PermittedURIDomains = []string{".example.org"} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckNameConstrained(constrainedCA(t, tc.edit))
			if tc.unconstrained != errors.Is(err, ErrUnconstrainedCA) || !tc.unconstrained && err != nil {
				t.Errorf("CheckNameConstrained = %v, want unconstrained %v", err, tc.unconstrained)
			}
		})
	}
	// kvsctl's own CA has none.
	if err := CheckNameConstrained(mustLoadCert(t, newPKI(t, false).CACert())); !errors.Is(err, ErrUnconstrainedCA) {
		t.Errorf("kvsctl CA: %v", err)
	}
}
