package server

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// issuerKey identifies a CA as RFC 5280 ties a CRL to its issuer: by name
// and by key identifier. A CA certificate re-issued with the same name and
// key keeps its CRL.
func issuerKey(c *x509.Certificate) string {
	return string(c.RawSubject) + "\x00" + string(c.SubjectKeyId)
}

// issuedCRL is a CRL whose signature verified against its issuer.
type issuedCRL struct {
	*pki.CRL
	issuer *x509.Certificate
	file   string
}

// crlSet is every CRL of a snapshot, by issuer.
type crlSet struct {
	byIssuer  map[string]issuedCRL
	uncovered []*x509.Certificate // CAs without a CRL, allowed by NoCRL
}

// loadCRLs reads every CRL of every file (a file may hold several PEM
// blocks, or one DER CRL) and ties each to the CA of cas that signed it. A
// CRL that no CA signed, or that does not parse, is an error: it could
// hide a revocation. For one issuer the CRL with the highest number wins.
// A file that does not exist is an error unless noCRL is set (its path is
// watched, so the CRL is loaded when it appears).
func loadCRLs(files []string, cas []*x509.Certificate, noCRL bool) (crlSet, error) {
	set := crlSet{byIssuer: map[string]issuedCRL{}}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) && noCRL {
			continue
		}
		if err != nil {
			return set, fmt.Errorf("read CRL %s: %w: %w", file, ErrNoCRL, err)
		}
		lists, err := parseCRLs(data)
		if err != nil {
			return set, fmt.Errorf("read CRL %s: %w", file, err)
		}
		for _, rl := range lists {
			issuer := crlIssuer(rl, cas)
			if issuer == nil {
				return set, fmt.Errorf("CRL %s (issuer %s, number %v) was not signed by any CA the server trusts (a root of the CA bundle, or an intermediate of the intermediates bundle or of the server's own chain that chains to one)",
					file, rlIssuerName(rl), rl.Number)
			}
			c, err := pki.NewCRL(rl, issuer)
			if err != nil {
				return set, fmt.Errorf("read CRL %s: %w", file, err)
			}
			key := issuerKey(issuer)
			if prev, ok := set.byIssuer[key]; ok && prev.List.Number.Cmp(rl.Number) >= 0 {
				continue
			}
			set.byIssuer[key] = issuedCRL{CRL: c, issuer: issuer, file: file}
		}
	}
	return set, nil
}

// parseCRLs decodes every "X509 CRL" PEM block of data, or data as one DER
// CRL.
func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		rl, err := pki.ParseCRL(data)
		if err != nil {
			return nil, err
		}
		return []*x509.RevocationList{rl}, nil
	}
	var out []*x509.RevocationList
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block %q is not a CRL", block.Type)
		}
		rl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse CRL: %w", err)
		}
		out = append(out, rl)
	}
	if len(out) == 0 {
		return nil, errors.New("no CRL in the file")
	}
	return out, nil
}

// crlIssuer finds the CA that issued the CRL: the same name, the same key
// identifier when the CRL names one, and a signature that verifies.
func crlIssuer(rl *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, c := range cas {
		if !bytes.Equal(c.RawSubject, rl.RawIssuer) {
			continue
		}
		if len(rl.AuthorityKeyId) > 0 && len(c.SubjectKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, c.SubjectKeyId) {
			continue
		}
		if rl.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

func rlIssuerName(rl *x509.RevocationList) string { return rl.Issuer.String() }

// checkRollback refuses CRLs older than those already loaded.
func (set crlSet) checkRollback(numbers map[string]*big.Int) error {
	for key, c := range set.byIssuer {
		if prev := numbers[key]; prev != nil && c.List.Number.Cmp(prev) < 0 {
			return fmt.Errorf("%w: CRL %s of %s has number %v, older than number %v already in force: refusing to un-revoke",
				ErrCRLRollback, c.file, c.issuer.Subject, c.List.Number, prev)
		}
	}
	return nil
}

// checkCoverage requires a CRL for every CA of cas (a pinned self-signed
// leaf is no CA and needs none), unless noCRL allows CAs without one; those
// are remembered to be logged.
func (set *crlSet) checkCoverage(cas []*x509.Certificate, noCRL bool) error {
	var missing []string
	for _, c := range cas {
		if !c.IsCA {
			continue
		}
		if _, ok := set.byIssuer[issuerKey(c)]; ok {
			continue
		}
		if noCRL {
			set.uncovered = append(set.uncovered, c)
			continue
		}
		missing = append(missing, c.Subject.String())
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w for CA %s: revocation of its certificates could not be checked", ErrNoCRL, strings.Join(missing, "; CA "))
	}
	return nil
}

// check reports a CRL that is not current at now.
func (set crlSet) check(now time.Time) error {
	for _, c := range set.sorted() {
		if err := c.Check(now); err != nil {
			return fmt.Errorf("%w: CRL of %s: %w", ErrCRLUnavailable, c.issuer.Subject, err)
		}
	}
	return nil
}

// sorted returns the CRLs in a stable order, for logs.
func (set crlSet) sorted() []issuedCRL {
	out := make([]issuedCRL, 0, len(set.byIssuer))
	for _, c := range set.byIssuer {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b issuedCRL) int { return strings.Compare(a.issuer.Subject.String(), b.issuer.Subject.String()) })
	return out
}

// checkChain checks every certificate of a verified chain (leaf first,
// root last) against the CRL of the CA above it, and returns how long the
// answer holds: until the first NextUpdate of the CRLs used. A CA without a
// CRL fails closed unless it is one that NoCRL let in.
func (set crlSet) checkChain(chain []*x509.Certificate, now time.Time, noCRL bool) (time.Time, error) {
	until := time.Time{}
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		c, ok := set.byIssuer[issuerKey(issuer)]
		if !ok {
			if noCRL {
				continue
			}
			return time.Time{}, fmt.Errorf("%w: no CRL for %s", ErrCRLUnavailable, issuer.Subject)
		}
		if err := c.Check(now); err != nil {
			return time.Time{}, fmt.Errorf("%w: CRL of %s: %w", ErrCRLUnavailable, issuer.Subject, err)
		}
		if c.Revoked(cert.SerialNumber) {
			if i > 0 {
				return time.Time{}, fmt.Errorf("%w: the CA %s of the chain, serial %s, revoked by %s", ErrRevoked, cert.Subject, serialText(cert.SerialNumber), issuer.Subject)
			}
			return time.Time{}, fmt.Errorf("%w: serial %s (%s)", ErrRevoked, serialText(cert.SerialNumber), cert.Subject.CommonName)
		}
		if nu := c.List.NextUpdate; !nu.IsZero() && (until.IsZero() || nu.Before(until)) {
			until = nu
		}
	}
	return until, nil
}
