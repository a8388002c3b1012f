package pki

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"time"
)

// ErrBadCSR is wrapped by errors about a CSR whose self-signature does not
// verify.
var ErrBadCSR = errors.New("pki: CSR signature is invalid")

// ParseCSR decodes a PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST")
// or DER certificate signing request. It does not check the signature; see
// [SignCSR], which does.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("PEM block %q is not a certificate request", block.Type)
		}
		data = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(data)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	return csr, nil
}

// SignOptions configures [SignCSR].
type SignOptions struct {
	Dir        Dir
	CSRFile    string        // PEM or DER certificate signing request
	Profile    Profile       // server or client
	Name       string        // file name under issued/; "" means the CSR's common name
	Days       int           // 0 (and no TTL) means DefaultLeafDays
	TTL        time.Duration // the validity as a duration instead of Days (at least MinLeafTTL)
	Passphrase []byte        // decrypts the CA key
	Force      bool          // replace issued/NAME.crt
	// AllowSAN signs a client CSR even when one of its SANs matches the
	// identity of another current certificate (see [SignCSR]).
	AllowSAN bool
	Now      time.Time
}

// SignCSR issues a certificate for an external CSR (for example one made by
// 'openssl req -new'), writes it to issued/NAME.crt and records it in the
// inventory. It checks the CSR's self-signature and the strength of its key
// ([CheckPublicKey]; a weak key is refused with ErrWeakKey),
// and copies only the subject and the subject alternative names: every other
// extension the CSR requests (basic constraints, key usages, ...) is ignored,
// so a CSR can never obtain CA:TRUE. A server CSR without DNS or IP SANs gets
// its common name as the only DNS SAN when that name is a host name.
//
// A client CSR is refused, with an error wrapping ErrSANConflict, when one
// of its SANs (of any type; DNS names and e-mail addresses without regard
// to case) equals the common name or a SAN of another certificate of the
// inventory that is neither revoked nor expired and is recorded under
// another name: a policy that matches that identity would grant the new
// certificate its rights. AllowSAN signs it anyway. Nothing is written
// when a CSR is refused.
func SignCSR(ctx context.Context, o SignOptions) (*Issued, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if _, err := ParseProfile(string(o.Profile)); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(o.CSRFile)
	if err != nil {
		return nil, fmt.Errorf("read CSR %s: %w", o.CSRFile, err)
	}
	csr, err := ParseCSR(data)
	if err != nil {
		return nil, fmt.Errorf("read CSR %s: %w", o.CSRFile, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errorOf(ErrBadCSR, "CSR %s: signature is invalid (%v): it was altered or not signed by its own key", o.CSRFile, err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR %s: %w", o.CSRFile, err)
	}
	cn := csr.Subject.CommonName
	if cn == "" {
		return nil, fmt.Errorf("CSR %s has no common name in its subject", o.CSRFile)
	}
	name := o.Name
	if name == "" {
		if CheckName(cn) != nil {
			return nil, errorOf(ErrNeedName, "the CSR's common name %q cannot be a file name: give the certificate a name", cn)
		}
		name = cn
	}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	hosts := append([]string(nil), csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	if o.Profile == ProfileServer && len(hosts) == 0 {
		if !IsHostName(cn) {
			return nil, fmt.Errorf("CSR %s has no DNS or IP SANs and its common name %q is not a host name: a server certificate needs one", o.CSRFile, cn)
		}
		hosts = []string{cn}
	}
	var uris []string
	for _, u := range csr.URIs {
		uris = append(uris, u.String())
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ca, err := LoadCA(o.Dir, o.Passphrase, o.Now)
	if err != nil {
		return nil, err
	}
	req := LeafRequest{
		Profile: o.Profile, Subject: csr.Subject, Hosts: hosts, Emails: csr.EmailAddresses, URIs: uris,
		Days: o.Days, TTL: o.TTL, PublicKey: csr.PublicKey, rawSubject: csr.RawSubject,
	}
	var check func(*Inventory) error
	if o.Profile == ProfileClient && !o.AllowSAN {
		sans := csrSANs(csr)
		check = func(inv *Inventory) error {
			return inv.checkSANConflicts(o.Dir, "CSR "+o.CSRFile, name, sans, o.Now)
		}
	}
	return ca.issueAndRecord(o.Dir, req, recordOpts{name: name, force: o.Force, check: check}, o.Now)
}

var hostNameRE = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62})?)*\.?$`)

// IsHostName reports whether s is an IP address or a DNS name (optionally a
// wildcard in the left-most label) that can go into a SAN.
func IsHostName(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	return len(s) <= 253 && hostNameRE.MatchString(s)
}
