package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrRootOffline means an operation needs the root CA's key and the key
// is not in the directory: it was taken offline, or never copied to this
// machine. Only signing an intermediate and the root's own CRL need it.
var ErrRootOffline = errors.New("pki: root CA key offline")

// authority is the CA side of a PKI directory as read at one moment: the
// roots of ca.crt, the intermediates of intermediates.pem and the issuing
// CA. In a flat PKI the one root is also the issuing CA.
type authority struct {
	dir           Dir
	roots         []*x509.Certificate // ca.crt, in file order
	intermediates []*x509.Certificate // intermediates.pem, the issuing one first; nil when flat
	issuing       *x509.Certificate   // intermediate.crt, or the flat CA
}

// loadAuthority reads the CA certificates of d. It fails when d holds no
// CA (wrapping ErrNoCA, and ErrSelfSignedPKI for a self-signed PKI).
func loadAuthority(d Dir) (*authority, error) {
	if !exists(d.CACert()) {
		if m, err := d.Mode(); err == nil && m == ModeSelfSigned {
			return nil, errorOfAll([]error{ErrNoCA, ErrSelfSignedPKI}, "%s is a self-signed PKI without a CA", string(d))
		}
		return nil, errorOf(ErrNoCA, "no CA in %s", string(d))
	}
	roots, err := LoadCerts(d.CACert())
	if err != nil {
		return nil, err
	}
	a := &authority{dir: d, roots: roots, issuing: roots[0]}
	if !d.Hierarchy() {
		return a, nil
	}
	if a.issuing, err = LoadCert(d.IntermediateCert()); err != nil {
		return nil, err
	}
	if exists(d.Intermediates()) {
		if a.intermediates, err = LoadCerts(d.Intermediates()); err != nil {
			return nil, err
		}
	}
	if !slices.ContainsFunc(a.intermediates, a.issuing.Equal) {
		a.intermediates = append([]*x509.Certificate{a.issuing}, a.intermediates...)
	}
	return a, nil
}

// hierarchy reports whether the issuing CA is an intermediate.
func (a *authority) hierarchy() bool { return a.intermediates != nil }

// cas lists every CA of the directory, each of which keeps a CRL: the
// intermediates, then the roots.
func (a *authority) cas() []*x509.Certificate {
	return append(slices.Clone(a.intermediates), a.roots...)
}

// issuerOf returns the CA of the directory that signed c (for a root, the
// root itself), or nil.
func (a *authority) issuerOf(c *x509.Certificate) *x509.Certificate {
	for _, ca := range a.cas() {
		if bytes.Equal(ca.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// find returns the CA of the directory with the given serial, or nil.
func (a *authority) find(serial string) *x509.Certificate {
	s := NormalizeSerial(serial)
	for _, ca := range a.cas() {
		if SerialHex(ca) == s {
			return ca
		}
	}
	return nil
}

// currentRoot is the root of the issuing CA: the root whose key is ca.key.
func (a *authority) currentRoot() *x509.Certificate {
	if !a.hierarchy() {
		return a.issuing
	}
	if r := a.issuerOf(a.issuing); r != nil && isRoot(r) {
		return r
	}
	return a.roots[0]
}

// isRoot reports whether c is self-issued, as a root is.
func isRoot(c *x509.Certificate) bool { return bytes.Equal(c.RawIssuer, c.RawSubject) }

// signsLeaves reports whether the CA c signs leaves (an intermediate, or
// a flat root) rather than only intermediates (a root of a hierarchy).
func (a *authority) signsLeaves(c *x509.Certificate) bool {
	return !isRoot(c) || c.MaxPathLenZero
}

// keyPath is where the key of the CA c lives: intermediate.key for the
// issuing intermediate, ca.key for the current root (and the flat CA),
// retired/SERIAL.key for a CA a rotation replaced.
func (a *authority) keyPath(c *x509.Certificate) string {
	switch {
	case a.hierarchy() && c.Equal(a.issuing):
		return a.dir.IntermediateKey()
	case c.Equal(a.currentRoot()):
		return a.dir.CAKey()
	}
	return a.dir.RetiredKey(SerialHex(c))
}

// loadCA loads the key of the CA c and checks both. need says what the
// key is needed for, in the error when it is missing.
func (a *authority) loadCA(c *x509.Certificate, passphrase []byte, now time.Time, need string) (*CA, error) {
	path := a.keyPath(c)
	if !exists(path) {
		switch {
		case path == a.dir.CAKey() && a.hierarchy():
			return nil, errorOf(ErrRootOffline, "the root CA key %s is not here (taken offline?): it is needed to %s", path, need)
		case path == a.dir.CAKey():
			return nil, errorOfAll([]error{ErrNoCAKey, ErrNoCA}, "no CA key %s: this directory can verify but not issue", path)
		case path == a.dir.IntermediateKey():
			return nil, errorOfAll([]error{ErrNoCAKey, ErrNoCA}, "no key %s for the issuing CA %s: this directory can verify but not %s", path, c.Subject, need)
		}
		return nil, errorOfAll([]error{ErrNoCAKey, ErrNoCA}, "no key %s for the CA %s (serial %s): it is needed to %s", path, c.Subject, SerialHex(c), need)
	}
	key, err := LoadKey(path, passphrase)
	if err != nil {
		return nil, err
	}
	st, err := a.dir.LoadSettings()
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: c, Key: key, Chain: a.chainOf(c)[1:], CRLURL: st.CRLURL}
	if err := ca.check(now); err != nil {
		return nil, err
	}
	return ca, nil
}

// chainOf is c and the CAs above it, up to its root.
func (a *authority) chainOf(c *x509.Certificate) []*x509.Certificate {
	chain := []*x509.Certificate{c}
	for p := c; !isRoot(p) && len(chain) < 6; {
		if p = a.issuerOf(p); p == nil {
			break
		}
		chain = append(chain, p)
	}
	return chain
}

// issuingCA loads the CA that signs new leaves, with its key, and checks
// that the root's CRL does not list it.
func (a *authority) issuingCA(passphrase []byte, now time.Time) (*CA, error) {
	ca, err := a.loadCA(a.issuing, passphrase, now, "issue")
	if err != nil {
		return nil, err
	}
	if !a.hierarchy() {
		return ca, nil
	}
	b, err := readCRLBundle(a.dir.CRL())
	if err != nil {
		return nil, err
	}
	for _, p := range ca.Chain {
		rl, err := b.of(p)
		if err != nil {
			return nil, err
		}
		if e := signedEntry(rl, a.issuing.SerialNumber); e != nil {
			return nil, errorOf(ErrIssuerRevoked, "the issuing CA %s (serial %s) was revoked on %s: a new intermediate is needed before anything can be issued",
				a.issuing.Subject, SerialHex(a.issuing), stamp(e.RevocationTime))
		}
	}
	return ca, nil
}

// ErrIssuerRevoked means the issuing intermediate is on its root's CRL.
var ErrIssuerRevoked = errors.New("pki: issuing CA revoked")

// LoadRoot loads the current root CA of a hierarchy (the root of the
// issuing intermediate) with its key ca.key; need says what for, in the
// error wrapping ErrRootOffline when the key is not there.
func LoadRoot(dir Dir, passphrase []byte, now time.Time, need string) (*CA, error) {
	a, err := loadAuthority(dir)
	if err != nil {
		return nil, err
	}
	return a.loadCA(a.currentRoot(), passphrase, now, need)
}

// leafPEM is the file of a leaf the CA signed: the leaf, then the CA when
// it is an intermediate, so that a peer can build the chain to the root
// (what Go, OpenSSL, curl and Python expect of a certificate file).
func (ca *CA) leafPEM(leaf *x509.Certificate) []byte {
	out := PEMCert(leaf.Raw)
	if len(ca.Chain) > 0 {
		out = append(out, PEMCert(ca.Cert.Raw)...)
	}
	return out
}

// checkBundle requires every CRL of b to come from a CA of the directory:
// an unknown one could hide or fake a revocation.
func (a *authority) checkBundle(b *crlBundle) error {
	for _, rl := range b.lists {
		known := slices.ContainsFunc(a.cas(), func(c *x509.Certificate) bool { return crlFrom(rl, c) })
		if !known {
			return fmt.Errorf("the CRL of %s (number %v) in %s was not signed by any CA of %s", rl.Issuer, rl.Number, b.path, string(a.dir))
		}
	}
	return nil
}

// crlFrom reports whether rl names c as its issuer: the same name and,
// when both carry one, the same key identifier.
func crlFrom(rl *x509.RevocationList, c *x509.Certificate) bool {
	if !bytes.Equal(rl.RawIssuer, c.RawSubject) {
		return false
	}
	return len(rl.AuthorityKeyId) == 0 || len(c.SubjectKeyId) == 0 || bytes.Equal(rl.AuthorityKeyId, c.SubjectKeyId)
}

// pemCerts encodes certificates as one PEM bundle.
func pemCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, PEMCert(c.Raw)...)
	}
	return out
}
