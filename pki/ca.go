package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Validity limits.
const (
	CAValidity      = 10 * 365 * 24 * time.Hour
	MaxLeafDays     = 825 // the CA/Browser Forum limit that Apple and others enforce
	DefaultLeafDays = 825
	// backdate covers clock skew between the machine that issues and the one
	// that verifies.
	backdate = 5 * time.Minute
)

// Profile is the intended use of a leaf certificate.
type Profile string

// The leaf profiles.
const (
	ProfileServer Profile = "server"
	ProfileClient Profile = "client"
)

// ParseProfile parses "server" or "client".
func ParseProfile(s string) (Profile, error) {
	switch Profile(strings.ToLower(s)) {
	case ProfileServer:
		return ProfileServer, nil
	case ProfileClient:
		return ProfileClient, nil
	}
	return "", fmt.Errorf("unknown profile %q: use server or client", s)
}

// ExtKeyUsage is the extended key usage the profile grants.
func (p Profile) ExtKeyUsage() x509.ExtKeyUsage {
	if p == ProfileServer {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// CA is a loaded certificate authority: its certificate and signing key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewSerial returns a random positive 128-bit serial number.
func NewSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	if s.Sign() == 0 {
		s.SetInt64(1)
	}
	return s, nil
}

// subjectKeyID is the RFC 5280 method 1 key identifier: SHA-1 of the
// subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("decode public key: %w", err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

// keyUsageFor returns the leaf key usage for a key: RSA keys also encipher
// (RSA key exchange), others only sign.
func keyUsageFor(pub crypto.PublicKey) x509.KeyUsage {
	if _, ok := pub.(*rsa.PublicKey); ok {
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	return x509.KeyUsageDigitalSignature
}

// NewCA creates a self-signed root CA valid for ten years: basic constraints
// CA:TRUE (critical) with path length 0, key usage keyCertSign and cRLSign,
// and a subject key identifier.
func NewCA(commonName string, key crypto.Signer, now time.Time) (*CA, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"kvsctl local CA"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA loads the CA of a PKI directory and checks it: the key must match
// the certificate, the certificate must be a currently valid CA. passphrase
// decrypts an encrypted key.
func LoadCA(dir Dir, passphrase []byte, now time.Time) (*CA, error) {
	if _, err := os.Stat(dir.CACert()); err != nil {
		if m, merr := dir.Mode(); merr == nil && m == ModeSelfSigned {
			return nil, errorOfAll([]error{ErrNoCA, ErrSelfSignedPKI}, "%s is a self-signed PKI without a CA", string(dir))
		}
		return nil, errorOf(ErrNoCA, "no CA in %s", string(dir))
	}
	cert, err := LoadCert(dir.CACert())
	if err != nil {
		return nil, err
	}
	if !exists(dir.CAKey()) {
		return nil, errorOf(ErrNoCA, "no CA key %s: this directory can verify but not issue", dir.CAKey())
	}
	key, err := LoadKey(dir.CAKey(), passphrase)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, Key: key}
	if err := ca.check(now); err != nil {
		return nil, err
	}
	return ca, nil
}

func (ca *CA) check(now time.Time) error {
	c := ca.Cert
	if !KeyMatches(c, ca.Key) {
		return errors.New("CA key does not match the CA certificate")
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("ca.crt is not a CA certificate (basicConstraints CA:TRUE and keyCertSign required)")
	}
	if err := CheckPublicKey(c.PublicKey); err != nil {
		return fmt.Errorf("the CA certificate's key: %w", err)
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("CA certificate is not valid until %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return errorOf(ErrCAExpired, "CA certificate expired on %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// LeafRequest describes a leaf certificate to issue.
type LeafRequest struct {
	Profile    Profile
	Subject    pkix.Name // CommonName is the identity the server sees
	Hosts      []string  // DNS names and IP addresses (server: required)
	Emails     []string  // e-mail SANs (copied from CSRs)
	URIs       []string  // URI SANs (copied from CSRs)
	Days       int       // validity in days; 0 means DefaultLeafDays
	PublicKey  crypto.PublicKey
	NotBefore  time.Time // zero: now minus a small backdate; set by tests and attack scenarios
	NotAfter   time.Time // zero: NotBefore + Days
	SelfSigned crypto.Signer

	// rawSubject, when set, is the DER subject copied verbatim (from a CSR or
	// a certificate being renewed) instead of Subject's encoding.
	rawSubject []byte
}

// validity computes the window of a leaf, capped at MaxLeafDays.
func (r LeafRequest) validity(now time.Time) (time.Time, time.Time, error) {
	days := r.Days
	if days == 0 {
		days = DefaultLeafDays
	}
	if days < 0 || days > MaxLeafDays {
		return time.Time{}, time.Time{}, fmt.Errorf("invalid validity of %d days: use 1 to %d", days, MaxLeafDays)
	}
	nb, na := r.NotBefore, r.NotAfter
	if nb.IsZero() {
		nb = now.Add(-backdate)
	}
	if na.IsZero() {
		na = nb.Add(backdate).Add(time.Duration(days) * 24 * time.Hour)
	}
	if !na.After(nb) {
		return time.Time{}, time.Time{}, errors.New("certificate would expire before it becomes valid")
	}
	return nb, na, nil
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
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               r.Subject,
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              keyUsageFor(r.PublicKey),
		ExtKeyUsage:           []x509.ExtKeyUsage{r.Profile.ExtKeyUsage()},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          skid,
		EmailAddresses:        r.Emails,
		RawSubject:            r.rawSubject,
	}
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

// Sign issues a leaf certificate for req.PublicKey, signed by the CA.
func (ca *CA) Sign(req LeafRequest, now time.Time) (*x509.Certificate, error) {
	if err := ca.check(now); err != nil {
		return nil, err
	}
	t, err := req.template(now)
	if err != nil {
		return nil, err
	}
	if t.NotAfter.After(ca.Cert.NotAfter) {
		t.NotAfter = ca.Cert.NotAfter
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

// CheckPublicKey returns an error wrapping ErrWeakKey unless pub is an RSA
// key of at least 2048 bits with public exponent 65537, an ECDSA key on
// P-256, P-384 or P-521, or an Ed25519 key. pki runs it on the key of every
// CSR it signs and of every certificate it certifies again (renewal), and
// on external certificates it loads as roots (the directory's CA, the
// roots of [VerifyFiles], a CA to install into a trust store); a server
// can run it on the certificates it loads as roots or leaves.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return errorOf(ErrWeakKey, "RSA key of %d bits is too small: use at least 2048", k.N.BitLen())
		}
		if k.E != 65537 {
			return errorOf(ErrWeakKey, "RSA key with public exponent %d: only 65537 is accepted", k.E)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return errorOf(ErrWeakKey, "ECDSA key on curve %s: use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errorOf(ErrWeakKey, "Ed25519 key of %d bytes: want %d", len(k), ed25519.PublicKeySize)
		}
	default:
		return errorOf(ErrWeakKey, "unsupported public key type %T: use RSA, ECDSA or Ed25519", pub)
	}
	return nil
}

// parseURI parses a URI SAN: an absolute URI, with a scheme.
func parseURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("invalid URI %q: use an absolute URI with a scheme, such as spiffe://example.org/web", s)
	}
	return u, nil
}
