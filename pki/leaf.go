package pki

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// LeafRequest describes a leaf certificate to issue.
type LeafRequest struct {
	Profile    Profile
	Subject    pkix.Name     // CommonName is the identity the server sees
	Hosts      []string      // DNS names and IP addresses (server: required)
	Emails     []string      // e-mail SANs (copied from CSRs)
	URIs       []string      // URI SANs (copied from CSRs)
	Days       int           // validity in days; 0 (and no TTL) means DefaultLeafDays
	TTL        time.Duration // validity as a duration, instead of Days: at least MinLeafTTL
	PublicKey  crypto.PublicKey
	NotBefore  time.Time // zero: now minus a small backdate; set by tests and attack scenarios
	NotAfter   time.Time // zero: NotBefore + Days
	SelfSigned crypto.Signer

	// rawSubject, when set, is the DER subject copied verbatim (from a CSR or
	// a certificate being renewed) instead of Subject's encoding.
	rawSubject []byte
	// fitIssuer shortens a validity past the issuer's expiry to end with
	// the issuer rather than refusing it (renewal with the old lifetime).
	fitIssuer bool
	// minTTL, when set, replaces MinLeafTTL (the online CA's shorter bound).
	minTTL time.Duration
}

// explicit reports whether the request asks for a lifetime, rather than
// taking the default.
func (r LeafRequest) explicit() bool {
	return !r.fitIssuer && (r.Days != 0 || r.TTL != 0 || !r.NotAfter.IsZero())
}

// validity computes the window of a leaf: from a little before now
// (Backdate) to Days or TTL after now, at most MaxLeafDays.
func (r LeafRequest) validity(now time.Time) (time.Time, time.Time, error) {
	life, err := r.lifetime()
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	nb, na := r.NotBefore, r.NotAfter
	if nb.IsZero() {
		nb = now.Add(-backdate)
	}
	if na.IsZero() {
		na = nb.Add(backdate).Add(life)
	}
	if !na.After(nb) {
		return time.Time{}, time.Time{}, errors.New("certificate would expire before it becomes valid")
	}
	return nb, na, nil
}

// lifetime is the validity the request asks for, checked.
func (r LeafRequest) lifetime() (time.Duration, error) {
	maxLife := time.Duration(MaxLeafDays) * 24 * time.Hour
	switch {
	case r.TTL != 0 && r.Days != 0:
		return 0, errors.New("give the validity in days or as a TTL, not both")
	case r.TTL != 0:
		if least := cmp.Or(r.minTTL, MinLeafTTL); r.TTL < least {
			return 0, fmt.Errorf("a TTL of %s is too short: use at least %s", r.TTL, least)
		}
		if r.TTL > maxLife {
			return 0, fmt.Errorf("a TTL of %s is too long: use at most %dd", r.TTL, MaxLeafDays)
		}
		return r.TTL, nil
	}
	days := r.Days
	if days == 0 {
		days = DefaultLeafDays
	}
	if days < 0 || days > MaxLeafDays {
		return 0, fmt.Errorf("invalid validity of %d days: use 1 to %d", days, MaxLeafDays)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

// ErrOutlivesIssuer is wrapped when a certificate asked for would be valid
// longer than the CA that signs it.
var ErrOutlivesIssuer = errors.New("pki: certificate would outlive its issuer")

// ParseTTL parses a lifetime: a Go duration (90m, 24h, 1h30m) or a number
// of days with a d suffix, alone or before a duration (90d, 1d12h).
func ParseTTL(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid TTL %q: use a duration such as 5m, 24h, 90d or 1d12h", s)
	var days time.Duration
	rest := strings.TrimSpace(s)
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 || n > 100000 {
			return 0, bad
		}
		days, rest = time.Duration(n)*24*time.Hour, rest[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil || d < 0 {
			return 0, bad
		}
	} else if days == 0 {
		return 0, bad
	}
	return days + d, nil
}

// template builds the certificate template of a leaf.
func (r LeafRequest) template(now time.Time) (*x509.Certificate, error) {
	if r.Profile != ProfileServer && r.Profile != ProfileClient {
		return nil, fmt.Errorf("unknown profile %q: use server or client", r.Profile)
	}
	if r.Subject.CommonName == "" {
		return nil, errors.New("certificate needs a common name")
	}
	if r.Profile == ProfileServer && len(r.Hosts) == 0 {
		return nil, errors.New("a server certificate needs at least one host name or IP address")
	}
	if err := CheckPublicKey(r.PublicKey); err != nil {
		return nil, fmt.Errorf("certify %s: %w", DescribeKey(r.PublicKey), err)
	}
	nb, na, err := r.validity(now)
	if err != nil {
		return nil, err
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(r.PublicKey)
	if err != nil {
		return nil, err
	}
	t, err := r.sans()
	if err != nil {
		return nil, err
	}
	t.SerialNumber, t.Subject, t.NotBefore, t.NotAfter = serial, r.Subject, nb, na
	t.KeyUsage, t.ExtKeyUsage = keyUsageFor(r.PublicKey), []x509.ExtKeyUsage{r.Profile.ExtKeyUsage()}
	t.BasicConstraintsValid, t.IsCA, t.SubjectKeyId, t.RawSubject = true, false, skid, r.rawSubject
	return t, nil
}

// sans is a template that carries only the request's SANs: its hosts as
// DNS names and IP addresses, its e-mail addresses and its URIs, each
// checked.
func (r LeafRequest) sans() (*x509.Certificate, error) {
	t := &x509.Certificate{EmailAddresses: r.Emails}
	for _, h := range r.Hosts {
		if h != "" && !IsHostName(h) {
			return nil, fmt.Errorf("invalid host %q: use a DNS name or an IP address", h)
		}
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else if h != "" {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	for _, u := range r.URIs {
		pu, err := parseURI(u)
		if err != nil {
			return nil, err
		}
		t.URIs = append(t.URIs, pu)
	}
	return t, nil
}

// Sign issues a leaf certificate for req.PublicKey, signed by the CA. A
// lifetime asked for that ends after the CA's is refused with
// ErrOutlivesIssuer; the default one is shortened to end with the CA. A
// name outside the name constraints of the CA or of a CA above it is
// refused with ErrNameNotPermitted.
func (ca *CA) Sign(req LeafRequest, now time.Time) (*x509.Certificate, error) {
	if err := ca.check(now); err != nil {
		return nil, err
	}
	t, err := req.template(now)
	if err != nil {
		return nil, err
	}
	if t.NotAfter.After(ca.Cert.NotAfter) {
		if req.explicit() {
			return nil, errorOf(ErrOutlivesIssuer, "a certificate valid until %s would outlive its issuer %s, which expires on %s (in %s): ask for a shorter lifetime",
				stamp(t.NotAfter), ca.Cert.Subject, stamp(ca.Cert.NotAfter), HumanDuration(ca.Cert.NotAfter.Sub(now)))
		}
		t.NotAfter = ca.Cert.NotAfter
	}
	if err := checkNames(t, append([]*x509.Certificate{ca.Cert}, ca.Chain...)); err != nil {
		return nil, err
	}
	if ca.CRLURL != "" {
		t.CRLDistributionPoints = []string{crlPoint(ca.CRLURL, ca.Cert)}
	}
	t.AuthorityKeyId = ca.Cert.SubjectKeyId
	return create(t, ca.Cert, req.PublicKey, ca.Key)
}

// SelfSign issues a self-signed leaf (self-signed mode): the certificate is
// its own issuer, is not a CA, and carries the profile's usage.
func SelfSign(req LeafRequest, key crypto.Signer, now time.Time) (*x509.Certificate, error) {
	req.PublicKey = key.Public()
	t, err := req.template(now)
	if err != nil {
		return nil, err
	}
	t.AuthorityKeyId = t.SubjectKeyId
	return create(t, t, key.Public(), key)
}

func create(t, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, t, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	return c, nil
}

// parseURI parses a URI SAN: an absolute URI, with a scheme.
func parseURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("invalid URI %q: use an absolute URI with a scheme, such as spiffe://example.org/web", s)
	}
	return u, nil
}
