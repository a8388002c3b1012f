package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// The names of the checks [Verify] runs, in order.
const (
	CheckChain      = "chain"
	CheckValidity   = "validity"
	CheckRevocation = "revocation"
	CheckUsage      = "usage"
	CheckHostname   = "hostname"
)

// Outcomes of a check.
const (
	CheckOK      = "ok"
	CheckFailed  = "failed"
	CheckSkipped = "skipped"
)

// Check is the outcome of one verification check.
type Check struct {
	Name   string `json:"name"`
	Result string `json:"result"` // ok, failed or skipped
	Detail string `json:"detail"`
}

// VerifyReport is the outcome of [Verify]: every check, passed, failed or
// skipped.
type VerifyReport struct {
	Subject string `json:"subject"`
	Serial  string `json:"serial"`
	// SANs are the certificate's subject alternative names, each with its
	// type (DNS:, IP:, email:, URI:).
	SANs   []string `json:"sans,omitempty"`
	OK     bool     `json:"ok"` // no check failed
	Checks []Check  `json:"checks"`
}

// Failed returns the checks that failed.
func (r *VerifyReport) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Result == CheckFailed {
			out = append(out, c)
		}
	}
	return out
}

// VerifyOptions configures [Verify].
type VerifyOptions struct {
	// Certs is the certificate to verify, followed by any intermediates
	// that came with it.
	Certs []*x509.Certificate
	Roots []*x509.Certificate // trust anchors
	// CRLs, when given, are checked: for the certificate and every
	// intermediate of its chain, the CRL of its issuer (its signature and
	// NextUpdate), and the serial. An issuer without a CRL among them fails
	// the check.
	CRLs  []*x509.RevocationList
	Host  string  // when set, the certificate must be valid for it
	Usage Profile // when set, the certificate must carry its usage
	Now   time.Time
}

// Verify runs every check on a certificate: chain (signatures up to one of
// Roots), validity (of every certificate in the chain, at Now), revocation,
// usage and hostname. Each check runs independently so the report names every
// problem, and the chain is built at a moment the leaf was valid, so that an
// expired leaf fails "validity" rather than "chain".
func Verify(o VerifyOptions) *VerifyReport {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if len(o.Certs) == 0 {
		return &VerifyReport{Checks: []Check{{Name: CheckChain, Result: CheckFailed, Detail: "no certificate given"}}}
	}
	leaf := o.Certs[0]
	r := &VerifyReport{Subject: leaf.Subject.String(), Serial: SerialHex(leaf)}
	for _, s := range NewRecord("", "", "", leaf, nil).sans() {
		r.SANs = append(r.SANs, s.String())
	}
	add := func(name, result, format string, a ...any) {
		r.Checks = append(r.Checks, Check{Name: name, Result: result, Detail: fmt.Sprintf(format, a...)})
	}

	// chain
	roots := x509.NewCertPool()
	for _, c := range o.Roots {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range o.Certs[1:] {
		inter.AddCert(c)
	}
	chain, err := buildChain(leaf, roots, inter, o.Roots, o.Certs[1:], o.Now)
	if err != nil {
		add(CheckChain, CheckFailed, "%s", chainError(err))
	} else if len(chain) == 1 {
		add(CheckChain, CheckOK, "the certificate itself is trusted (self-signed, pinned)")
	} else {
		names := make([]string, 0, len(chain)-1)
		for _, c := range chain[1:] {
			names = append(names, c.Subject.String())
		}
		add(CheckChain, CheckOK, "signed by %s", strings.Join(names, " <- "))
	}

	// validity
	checkWindow := chain
	if checkWindow == nil {
		checkWindow = []*x509.Certificate{leaf}
	}
	var bad []string
	for i, c := range checkWindow {
		who := "certificate"
		if i > 0 {
			who = "issuer " + c.Subject.String()
		}
		if o.Now.After(c.NotAfter) {
			bad = append(bad, fmt.Sprintf("%s expired on %s (%s ago)", who, stamp(c.NotAfter), HumanDuration(o.Now.Sub(c.NotAfter))))
		} else if o.Now.Before(c.NotBefore) {
			bad = append(bad, fmt.Sprintf("%s is not valid until %s (in %s)", who, stamp(c.NotBefore), HumanDuration(c.NotBefore.Sub(o.Now))))
		}
	}
	if len(bad) > 0 {
		add(CheckValidity, CheckFailed, "%s", strings.Join(bad, "; "))
	} else {
		add(CheckValidity, CheckOK, "valid until %s (%s left)", stamp(leaf.NotAfter), HumanDuration(leaf.NotAfter.Sub(o.Now)))
	}

	// revocation
	if len(o.CRLs) == 0 {
		add(CheckRevocation, CheckSkipped, "no CRL given")
	} else {
		result, detail := checkRevocation(leaf, chain, o.Roots, o.CRLs, o.Now)
		add(CheckRevocation, result, "%s", detail)
	}

	// usage
	if o.Usage == "" {
		add(CheckUsage, CheckSkipped, "no usage given")
	} else {
		result, detail := checkUsage(leaf, o.Usage)
		add(CheckUsage, result, "%s", detail)
	}

	// hostname
	if o.Host == "" {
		add(CheckHostname, CheckSkipped, "no host given")
	} else if err := leaf.VerifyHostname(o.Host); err != nil {
		add(CheckHostname, CheckFailed, "not valid for %s: the certificate is for %s", o.Host, sanList(leaf))
	} else {
		add(CheckHostname, CheckOK, "valid for %s", o.Host)
	}

	r.OK = len(r.Failed()) == 0
	return r
}

// buildChain verifies the chain at now; when that fails only because of
// validity periods (reported by the validity check), it retries at a moment
// the leaf was valid, and at last checks the leaf's signature against a
// candidate issuer directly, so that the chain check is about signatures and
// trust alone.
func buildChain(leaf *x509.Certificate, roots, inter *x509.CertPool, rootList, interList []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	verify := func(at time.Time) ([]*x509.Certificate, error) {
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // usage is its own check
		})
		if err != nil {
			return nil, err
		}
		return chains[0], nil
	}
	chain, err := verify(now)
	if err == nil || !isTimeError(err) {
		return chain, err
	}
	at := now
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	} else if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if chain, err2 := verify(at); err2 == nil || !isTimeError(err2) {
		return chain, err2
	}
	for _, c := range append(slices.Clone(rootList), interList...) {
		if !bytes.Equal(c.RawSubject, leaf.RawIssuer) {
			continue
		}
		if bytes.Equal(c.Raw, leaf.Raw) {
			return []*x509.Certificate{leaf}, nil
		}
		if leaf.CheckSignatureFrom(c) == nil {
			return []*x509.Certificate{leaf, c}, nil
		}
	}
	return nil, err
}

func isTimeError(err error) bool {
	var ie x509.CertificateInvalidError
	return errors.As(err, &ie) && ie.Reason == x509.Expired
}

func chainError(err error) string {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return "not signed by a trusted CA: " + strings.TrimPrefix(err.Error(), "x509: ")
	}
	return strings.TrimPrefix(err.Error(), "x509: ")
}

// checkRevocation checks every certificate of the chain (the leaf and its
// intermediates) against the CRL of its issuer: the CRL must verify
// against the issuer and be current, and must not list the serial. When
// the chain could not be built, the leaf is checked against the root of
// the same name as its issuer.
func checkRevocation(leaf *x509.Certificate, chain, roots []*x509.Certificate, rls []*x509.RevocationList, now time.Time) (string, string) {
	if len(chain) == 0 {
		for _, c := range roots {
			if bytes.Equal(c.RawSubject, leaf.RawIssuer) {
				chain = []*x509.Certificate{leaf, c}
				break
			}
		}
	}
	if len(chain) == 0 {
		return CheckFailed, "cannot check the CRL: the certificate's issuer is unknown"
	}
	if len(chain) == 1 {
		chain = []*x509.Certificate{leaf, leaf} // pinned self-signed: it is its own issuer
	}
	var ok []string
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		who := "certificate"
		if i > 0 {
			who = "intermediate " + cert.Subject.String()
		}
		var rl *x509.RevocationList
		for _, c := range rls {
			if bytes.Equal(c.RawIssuer, issuer.RawSubject) && (rl == nil || crlNumber(c) > crlNumber(rl)) {
				rl = c
			}
		}
		if rl == nil {
			names := make([]string, len(rls))
			for j, c := range rls {
				names[j] = c.Issuer.String()
			}
			return CheckFailed, fmt.Sprintf("no CRL of %s, the issuer of the %s, was given (the CRLs given are of %s)", issuer.Subject, who, strings.Join(names, "; "))
		}
		crl, err := NewCRL(rl, issuer)
		if err != nil {
			return CheckFailed, err.Error()
		}
		if err := crl.Check(now); err != nil {
			return CheckFailed, fmt.Sprintf("CRL of %s: %v", issuer.Subject, err)
		}
		if e := signedEntry(rl, cert.SerialNumber); e != nil {
			return CheckFailed, fmt.Sprintf("%s serial %s revoked by %s on %s (%s)", who, SerialHex(cert), issuer.Subject, stamp(e.RevocationTime), ReasonName(e.ReasonCode))
		}
		number := "?"
		if rl.Number != nil {
			number = rl.Number.String()
		}
		ok = append(ok, fmt.Sprintf("CRL number %s of %s, next update %s", number, issuer.Subject, stamp(rl.NextUpdate)))
	}
	return CheckOK, "not revoked (" + strings.Join(ok, "; ") + ")"
}

// checkUsage requires the profile's extended key usage (or anyExtendedKeyUsage,
// or no EKU extension at all, which RFC 5280 reads as any purpose) and, when
// the key usage extension is present, digitalSignature.
func checkUsage(leaf *x509.Certificate, p Profile) (string, string) {
	want := p.ExtKeyUsage()
	name := extKeyUsageName(want)
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return CheckFailed, "key usage lacks digitalSignature, which TLS needs"
	}
	switch {
	case slices.Contains(leaf.ExtKeyUsage, want):
		return CheckOK, "extended key usage includes " + name
	case slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
		return CheckOK, "extended key usage is anyExtendedKeyUsage"
	case len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0:
		return CheckOK, "no extended key usage (any purpose)"
	}
	var have []string
	for _, u := range leaf.ExtKeyUsage {
		have = append(have, extKeyUsageName(u))
	}
	for _, oid := range leaf.UnknownExtKeyUsage {
		have = append(have, oid.String())
	}
	return CheckFailed, fmt.Sprintf("not valid for %s use: extended key usage is %s, %s required", p, strings.Join(have, ", "), name)
}

func sanList(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no DNS or IP names"
	}
	return strings.Join(names, ", ")
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// VerifyFileOptions configures [VerifyFiles].
type VerifyFileOptions struct {
	// Dir supplies the defaults: when CAFile is empty, Dir's ca.crt,
	// its intermediates.pem (to complete a chain) and, if it exists, Dir's
	// crl.pem.
	Dir      Dir
	CertFile string // the certificate, optionally followed by intermediates
	CAFile   string // trust anchors; in self-signed mode the peer's certificate
	CRLFile  string // every CRL of the file is used; "" means none (or Dir's, see Dir)
	Host     string
	Usage    Profile
	Now      time.Time
}

// ErrNoRoots is wrapped when there is nothing to verify against.
var ErrNoRoots = errors.New("pki: no CA to verify against")

// VerifyFiles reads the files and runs [Verify]. It returns an error only
// when a file cannot be read or parsed, or when a CA certificate to verify
// against has a weak key ([CheckPublicKey]); failed checks are in the
// report.
func VerifyFiles(ctx context.Context, o VerifyFileOptions) (*VerifyReport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Usage != "" {
		if _, err := ParseProfile(string(o.Usage)); err != nil {
			return nil, err
		}
	}
	certs, err := LoadCerts(o.CertFile)
	if err != nil {
		return nil, err
	}
	caFile, crlFile := o.CAFile, o.CRLFile
	if caFile == "" {
		if !exists(o.Dir.CACert()) {
			return nil, errorOf(ErrNoRoots, "no CA to verify against (in self-signed mode, the peer's certificate is the CA)")
		}
		caFile = o.Dir.CACert()
		if crlFile == "" && exists(o.Dir.CRL()) {
			crlFile = o.Dir.CRL()
		}
		if exists(o.Dir.Intermediates()) {
			inter, err := LoadCerts(o.Dir.Intermediates())
			if err != nil {
				return nil, err
			}
			certs = append(certs, inter...)
		}
	}
	roots, err := LoadCerts(caFile)
	if err != nil {
		return nil, err
	}
	for _, r := range roots {
		if err := CheckPublicKey(r.PublicKey); err != nil {
			return nil, fmt.Errorf("CA certificate %s in %s: %w", r.Subject, caFile, err)
		}
	}
	var rls []*x509.RevocationList
	if crlFile != "" {
		if _, err := os.Stat(crlFile); err != nil {
			return nil, fmt.Errorf("read CRL %s: %w", crlFile, err)
		}
		b, err := readCRLBundle(crlFile)
		if err != nil {
			return nil, err
		}
		rls = b.lists
	}
	return Verify(VerifyOptions{Certs: certs, Roots: roots, CRLs: rls, Host: o.Host, Usage: o.Usage, Now: o.Now}), nil
}
