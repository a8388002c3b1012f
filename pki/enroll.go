package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// MinServiceTTL is the shortest lifetime the online CA issues ('pki serve
// --cert-ttl'): short enough to watch renewals happen in a test or a demo.
// The command line's own bound is MinLeafTTL.
const MinServiceTTL = time.Minute

// ErrRenewRefused is wrapped by every refusal of a renewal.
var ErrRenewRefused = errors.New("pki: renewal refused")

// EnrollOptions configures [Enroll].
type EnrollOptions struct {
	Dir   Dir
	Token string
	// Profile, when set, is the profile the caller asks for: it must be
	// the token's.
	Profile Profile
	CSR     []byte        // PEM or DER
	TTL     time.Duration // the certificate's lifetime; 0 means DefaultLeafDays
	Now     time.Time
}

// Enroll redeems a single-use token for a certificate: the CSR's key gets
// a certificate with exactly the token's name (its common name), profile
// and SANs. The CSR may repeat the token's SANs or carry none; a CSR that
// names another common name or any SAN the token does not allow is
// refused, with an error wrapping ErrTokenMismatch, and so is a used or
// expired token. The CSR's own extensions (CA:TRUE, key usages) are
// ignored, as by [SignCSR]. The token is spent before the certificate is
// written, under the directory lock, so it can never be redeemed twice.
func Enroll(ctx context.Context, o EnrollOptions) (*Issued, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	csr, err := checkedCSR(o.CSR)
	if err != nil {
		return nil, err
	}
	ca, err := LoadCA(o.Dir, nil, o.Now)
	if err != nil {
		return nil, err
	}
	// Read the token's grant before signing (the lock is taken only by
	// issueAndRecord, which redeems it for good).
	f, err := o.Dir.loadTokens()
	if err != nil {
		return nil, err
	}
	peek, err := (&tokenFile{Tokens: slices.Clone(f.Tokens)}).redeem(o.Token, o.Now)
	if err != nil {
		return nil, err
	}
	if o.Profile != "" && o.Profile != peek.Profile {
		return nil, errorOfAll([]error{ErrBadToken, ErrTokenMismatch}, "the token for %q is for a %s certificate, not a %s one", peek.Name, peek.Profile, o.Profile)
	}
	if err := csrWithin(csr, peek); err != nil {
		return nil, err
	}
	req := LeafRequest{
		Profile: peek.Profile, Subject: csr.Subject, Hosts: peek.Hosts, Emails: peek.Emails, URIs: peek.URIs,
		TTL: o.TTL, PublicKey: csr.PublicKey, rawSubject: csr.RawSubject, minTTL: MinServiceTTL,
	}
	var used *TokenRecord
	iss, err := ca.issueAndRecord(o.Dir, req, recordOpts{name: peek.Name, force: true, check: func(*Inventory) error {
		// Under the lock: the token may have been spent meanwhile.
		f, err := o.Dir.loadTokens()
		if err != nil {
			return err
		}
		if used, err = f.redeem(o.Token, o.Now); err != nil {
			return err
		}
		if used.Name != peek.Name || used.Profile != peek.Profile {
			return errorOf(ErrBadToken, "the token changed while it was redeemed")
		}
		f.prune(o.Now)
		return o.Dir.writeTokens(f)
	}}, o.Now)
	if err != nil {
		return nil, err
	}
	if err := o.Dir.recordTokenSerial(used.Hash, iss.Record.Serial); err != nil {
		return iss, err
	}
	return iss, nil
}

// recordTokenSerial notes which certificate a token produced.
func (d Dir) recordTokenSerial(hash, serial string) error {
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	f, err := d.loadTokens()
	if err != nil {
		return err
	}
	for i := range f.Tokens {
		if f.Tokens[i].Hash == hash {
			f.Tokens[i].Serial = serial
		}
	}
	return d.writeTokens(f)
}

// checkedCSR parses a CSR and checks its self-signature and key.
func checkedCSR(data []byte) (*x509.CertificateRequest, error) {
	csr, err := ParseCSR(data)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errorOf(ErrBadCSR, "CSR signature is invalid (%v): it was altered or not signed by its own key", err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	return csr, nil
}

// csrWithin refuses a CSR that asks for another name or for SANs its
// token does not grant.
func csrWithin(csr *x509.CertificateRequest, t *TokenRecord) error {
	if cn := csr.Subject.CommonName; cn != t.Name {
		return errorOfAll([]error{ErrBadToken, ErrTokenMismatch}, "the token is for %q, the CSR asks for the common name %q", t.Name, cn)
	}
	mismatch := func(kind, v string, allowed []string) error {
		return errorOfAll([]error{ErrBadToken, ErrTokenMismatch}, "the token for %q does not allow the %s SAN %s (it allows %s)", t.Name, kind, v, orNone(allowed))
	}
	hosts := func(h string) bool {
		return slices.ContainsFunc(t.Hosts, func(a string) bool { return strings.EqualFold(a, h) || sameIP(a, h) })
	}
	for _, d := range csr.DNSNames {
		if !hosts(d) {
			return mismatch("DNS", d, t.Hosts)
		}
	}
	for _, ip := range csr.IPAddresses {
		if !hosts(ip.String()) {
			return mismatch("IP", ip.String(), t.Hosts)
		}
	}
	for _, e := range csr.EmailAddresses {
		if !slices.ContainsFunc(t.Emails, func(a string) bool { return strings.EqualFold(a, e) }) {
			return mismatch("e-mail", e, t.Emails)
		}
	}
	for _, u := range csr.URIs {
		if !slices.Contains(t.URIs, u.String()) {
			return mismatch("URI", u.String(), t.URIs)
		}
	}
	return nil
}

func sameIP(a, b string) bool {
	x, y := net.ParseIP(a), net.ParseIP(b)
	return x != nil && y != nil && x.Equal(y)
}

func orNone(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, ", ")
}

// RenewCSROptions configures [RenewCSR].
type RenewCSROptions struct {
	Dir Dir
	// Current is the certificate the client authenticated with (its TLS
	// chain was verified against the directory's roots).
	Current *x509.Certificate
	CSR     []byte // PEM or DER, for a new key
	Now     time.Time
}

// RenewCSR issues the certificate that follows Current, for the new key
// of the CSR: the same subject, SANs, usage and lifetime, signed by the
// issuing CA. It refuses, with an error wrapping ErrRenewRefused, a
// certificate no CA of the directory issued, one that is revoked (by the
// signed CRLs), expired or a CA, a CSR whose subject or SANs differ from
// Current's (a renewal can never change the identity) and a CSR for the
// same key. The old record is marked replaced.
func RenewCSR(ctx context.Context, o RenewCSROptions) (*Issued, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	old := o.Current
	refuse := func(format string, a ...any) error { return errorOf(ErrRenewRefused, format, a...) }
	if old == nil {
		return nil, refuse("renewal needs the current certificate (mutual TLS)")
	}
	if old.IsCA {
		return nil, refuse("%s is a CA certificate: only leaves are renewed", old.Subject)
	}
	if o.Now.After(old.NotAfter) || o.Now.Before(old.NotBefore) {
		return nil, refuse("serial %s is not valid now (%s to %s): enroll again", SerialHex(old), stamp(old.NotBefore), stamp(old.NotAfter))
	}
	profile, err := profileOf(old)
	if err != nil {
		return nil, refuse("serial %s: %v", SerialHex(old), err)
	}
	csr, err := checkedCSR(o.CSR)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(csr.RawSubject, old.RawSubject) {
		return nil, refuse("the CSR's subject %s differs from the certificate's %s: a renewal keeps the identity", csr.Subject, old.Subject)
	}
	if err := sameSANs(csr, old); err != nil {
		return nil, err
	}
	if samePublicKey(old.PublicKey, csr.PublicKey) {
		return nil, refuse("the CSR is for the certificate's own key: a renewal needs a new key")
	}
	a, err := loadAuthority(o.Dir)
	if err != nil {
		return nil, err
	}
	issuer := a.issuerOf(old)
	if issuer == nil || !a.signsLeaves(issuer) {
		return nil, refuse("serial %s (%s) was not issued by a CA of this directory", SerialHex(old), old.Issuer)
	}
	ca, err := a.issuingCA(nil, o.Now)
	if err != nil {
		return nil, err
	}
	life := old.NotAfter.Sub(old.NotBefore) - backdate
	req := LeafRequest{
		Profile: profile, Subject: old.Subject, Emails: old.EmailAddresses, rawSubject: old.RawSubject,
		PublicKey: csr.PublicKey, TTL: life.Round(time.Second), minTTL: MinServiceTTL, fitIssuer: true,
	}
	req.Hosts = append(req.Hosts, old.DNSNames...)
	for _, ip := range old.IPAddresses {
		req.Hosts = append(req.Hosts, ip.String())
	}
	for _, u := range old.URIs {
		req.URIs = append(req.URIs, u.String())
	}
	serial := SerialHex(old)
	inv, err := o.Dir.LoadInventory()
	if err != nil {
		return nil, err
	}
	rec := inv.Find(serial)
	if rec == nil {
		return nil, refuse("serial %s is not in the inventory of %s", serial, string(o.Dir))
	}
	name := rec.Name
	check := func(inv *Inventory) error {
		b, err := readCRLBundle(o.Dir.CRL())
		if err != nil {
			return err
		}
		rl, err := b.of(issuer)
		if err != nil {
			return err
		}
		if e := signedEntry(rl, old.SerialNumber); e != nil {
			return refuse("serial %s (%s) was revoked on %s (%s): it cannot renew itself", serial, old.Subject.CommonName, stamp(e.RevocationTime), ReasonName(e.ReasonCode))
		}
		rec := inv.Find(serial)
		switch {
		case rec == nil:
			return refuse("serial %s is not in the inventory of %s", serial, string(o.Dir))
		case rec.RevokedAt != nil:
			return refuse("serial %s (%s) was revoked on %s: it cannot renew itself", serial, rec.Name, stamp(*rec.RevokedAt))
		case rec.RetiredAt != nil:
			return refuse("serial %s (%s) belongs to a retired root: enroll again", serial, rec.Name)
		}
		return nil
	}
	update := func(inv *Inventory, r Record) {
		if rec := inv.Find(serial); rec != nil {
			rec.ReplacedBy = r.Serial
		}
	}
	return ca.issueAndRecord(o.Dir, req, recordOpts{name: name, force: true, check: check, update: update}, o.Now)
}

// samePublicKey reports whether two public keys are the same key.
func samePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	k, ok := a.(equaler)
	return ok && k.Equal(b)
}

// sameSANs refuses a CSR whose SANs (when it has any) are not exactly the
// certificate's.
func sameSANs(csr *x509.CertificateRequest, c *x509.Certificate) error {
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) == 0 {
		return nil // the certificate's SANs are kept
	}
	have := NewRecord("", "", "", c, nil).sans()
	want := csrSANs(csr)
	key := func(s []san) []string {
		out := make([]string, len(s))
		for i, v := range s {
			out[i] = strings.ToLower(v.String())
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(key(have), key(want)) {
		return errorOf(ErrRenewRefused, "the CSR asks for the SANs %s, the certificate has %s: a renewal keeps the identity", sanStrings(want), sanStrings(have))
	}
	return nil
}

func sanStrings(s []san) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = v.String()
	}
	return orNone(out)
}

// RevocationOf tells whether the certificate c, issued by a CA of the
// directory, or a CA above it is revoked by the signed CRLs: it returns
// the entry and the certificate it revokes, or nil. A certificate no CA of
// the directory issued is an error.
func RevocationOf(d Dir, c *x509.Certificate) (*x509.RevocationListEntry, *x509.Certificate, error) {
	a, err := loadAuthority(d)
	if err != nil {
		return nil, nil, err
	}
	issuer := a.issuerOf(c)
	if issuer == nil {
		return nil, nil, fmt.Errorf("serial %s (%s) was not issued by a CA of %s", SerialHex(c), c.Issuer, string(d))
	}
	b, err := readCRLBundle(d.CRL())
	if err != nil {
		return nil, nil, err
	}
	chain := append([]*x509.Certificate{c}, a.chainOf(issuer)...)
	for i := 0; i+1 < len(chain); i++ {
		rl, err := b.of(chain[i+1])
		if err != nil {
			return nil, nil, err
		}
		if e := signedEntry(rl, chain[i].SerialNumber); e != nil {
			return e, chain[i], nil
		}
	}
	return nil, nil, nil
}
