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
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Validity limits.
const (
	CAValidity           = 10 * 365 * 24 * time.Hour // a root, and a flat CA
	IntermediateValidity = 5 * 365 * 24 * time.Hour
	MaxLeafDays          = 825 // the CA/Browser Forum limit that Apple and others enforce
	DefaultLeafDays      = 825
	MinLeafTTL           = 5 * time.Minute
	// Backdate is how far before the moment of signing a certificate or CRL
	// starts to be valid: it covers clock skew between the machine that
	// issues and the one that verifies.
	Backdate = time.Minute
	backdate = Backdate
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
	// Chain are the CA certificates above Cert, its root last; empty for
	// a root. A leaf's file holds the leaf and Cert when Chain is not
	// empty.
	Chain []*x509.Certificate
	// CRLURL, when set, is the base URL of the CRL distribution points:
	// every certificate the CA signs names CRLURL/SERIAL, SERIAL being the
	// CA's (see [Settings]).
	CRLURL string
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

// NewCA creates a flat CA: a self-signed root valid for ten years that
// signs leaves itself, with basic constraints CA:TRUE (critical) and path
// length 0, key usage keyCertSign and cRLSign, and a subject key
// identifier. 'pki init --flat' makes one, as releases before the
// hierarchy did.
func NewCA(commonName string, key crypto.Signer, now time.Time) (*CA, error) {
	return newCA(caSpec{name: commonName, org: "kvsctl local CA", pathLen: 0, life: CAValidity}, key, nil, now)
}

// NewRoot creates the root of a hierarchy: self-signed, ten years, path
// length 1 (it signs intermediates, which sign leaves), with the name
// constraints nc when not empty. Its common name carries the first bytes
// of its key identifier, so that the roots of two generations differ.
func NewRoot(key crypto.Signer, nc NameConstraints, now time.Time) (*CA, error) {
	return newCA(caSpec{name: "kvsctl root CA", org: "kvsctl", pathLen: 1, life: CAValidity, nc: nc}, key, nil, now)
}

// NewIntermediate has the root sign an issuing intermediate CA: five
// years (never past the root), path length 0, with the name constraints
// nc when not empty.
func (root *CA) NewIntermediate(key crypto.Signer, nc NameConstraints, now time.Time) (*CA, error) {
	if err := root.check(now); err != nil {
		return nil, err
	}
	return newCA(caSpec{name: "kvsctl intermediate CA", org: "kvsctl", pathLen: 0, life: IntermediateValidity, nc: nc}, key, root, now)
}

// caSpec describes a CA certificate to create.
type caSpec struct {
	name, org string
	pathLen   int
	life      time.Duration
	nc        NameConstraints
	crlURL    string // the CA's own CRLURL, for what it signs
}

// newCA creates a CA certificate for key, signed by parent (self-signed
// when nil). A CA of a hierarchy (org "kvsctl") gets the first four bytes
// of its key identifier in its common name.
func newCA(spec caSpec, key crypto.Signer, parent *CA, now time.Time) (*CA, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	name := spec.name
	if spec.org == "kvsctl" {
		name = fmt.Sprintf("%s %x", spec.name, skid[:4])
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{spec.org}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(spec.life),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            spec.pathLen,
		MaxPathLenZero:        spec.pathLen == 0,
		SubjectKeyId:          skid,
	}
	spec.nc.apply(tmpl)
	issuer, signer, chain := tmpl, key, []*x509.Certificate(nil)
	if parent != nil {
		if tmpl.NotAfter.After(parent.Cert.NotAfter) {
			tmpl.NotAfter = parent.Cert.NotAfter
		}
		tmpl.AuthorityKeyId = parent.Cert.SubjectKeyId
		if parent.CRLURL != "" {
			tmpl.CRLDistributionPoints = []string{crlPoint(parent.CRLURL, parent.Cert)}
		}
		issuer, signer = parent.Cert, parent.Key
		chain = append([]*x509.Certificate{parent.Cert}, parent.Chain...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, Chain: chain, CRLURL: spec.crlURL}, nil
}

// LoadCA loads the issuing CA of a PKI directory, the one that signs new
// leaves (the intermediate of a hierarchy, or the flat CA), and checks it:
// the key must match the certificate, the certificate must be a currently
// valid CA, and in a hierarchy its root's CRL must not list it.
// passphrase decrypts an encrypted key.
func LoadCA(dir Dir, passphrase []byte, now time.Time) (*CA, error) {
	a, err := loadAuthority(dir)
	if err != nil {
		return nil, err
	}
	return a.issuingCA(passphrase, now)
}

func (ca *CA) check(now time.Time) error {
	c := ca.Cert
	if !KeyMatches(c, ca.Key) {
		return fmt.Errorf("the key of CA %s does not match its certificate", c.Subject)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s is not a CA certificate (basicConstraints CA:TRUE and keyCertSign required)", c.Subject)
	}
	if err := CheckPublicKey(c.PublicKey); err != nil {
		return fmt.Errorf("the CA certificate's key: %w", err)
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("CA certificate %s is not valid until %s", c.Subject, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return errorOf(ErrCAExpired, "CA certificate %s expired on %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
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
