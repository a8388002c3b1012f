package pki

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
)

// CSROptions configures [NewCSR].
type CSROptions struct {
	Name    string   // the subject's common name
	Hosts   []string // DNS names and IP addresses
	Emails  []string // e-mail SANs
	URIs    []string // URI SANs such as spiffe://example.org/web
	KeyType KeyType  // "" means RSA2048
	KeyFile string   // where the private key goes (0600)
	CSRFile string   // where the CSR goes
	Force   bool     // replace existing files
}

// NewCSRResult says what [NewCSR] wrote.
type NewCSRResult struct {
	CSR     *x509.CertificateRequest
	KeyFile string
	CSRFile string
}

// NewCSR creates a private key and a certificate signing request for it,
// so that a host can have a certificate signed ('pki sign') without its
// key ever leaving it, and without openssl. It writes the key (0600) and
// the CSR, both or neither; it refuses existing files unless Force.
func NewCSR(ctx context.Context, o CSROptions) (*NewCSRResult, error) {
	if o.Name == "" {
		return nil, errorOf(ErrNeedName, "a CSR needs a common name")
	}
	if len(o.Name) > 64 {
		return nil, fmt.Errorf("common name %q is longer than 64 characters", o.Name)
	}
	if o.KeyFile == "" || o.CSRFile == "" {
		return nil, errors.New("a CSR needs a key file and a CSR file to write")
	}
	if _, err := ParseKeyType(string(o.KeyType)); err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: o.Name}, EmailAddresses: o.Emails}
	for _, h := range o.Hosts {
		if !IsHostName(h) {
			return nil, fmt.Errorf("invalid host %q: use a DNS name or an IP address", h)
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	for _, e := range o.Emails {
		if err := CheckEmail(e); err != nil {
			return nil, err
		}
	}
	for _, u := range o.URIs {
		if err := CheckURI(u); err != nil {
			return nil, err
		}
		pu, err := parseURI(u)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if !o.Force {
		for _, p := range []string{o.KeyFile, o.CSRFile} {
			if exists(p) {
				return nil, fmt.Errorf("%s already exists: choose another file, or replace it with force", p)
			}
		}
	}
	keys, err := generateKeys(ctx, o.KeyType, 1)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, keys[0])
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CSR: %w", err)
	}
	pemKey, err := MarshalKey(keys[0], nil)
	if err != nil {
		return nil, err
	}
	pemCSR := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	if err := writeAll([]pendingFile{{o.KeyFile, pemKey, KeyMode}, {o.CSRFile, pemCSR, CertMode}}, o.Force); err != nil {
		return nil, err
	}
	return &NewCSRResult{CSR: csr, KeyFile: o.KeyFile, CSRFile: o.CSRFile}, nil
}
