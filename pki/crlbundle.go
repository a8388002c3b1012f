package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
)

// crlBundle is the content of crl.pem: one CRL per CA of the directory,
// each a PEM block. A flat PKI has one.
type crlBundle struct {
	path  string
	lists []*x509.RevocationList
}

// readCRLBundle reads every CRL of path (PEM blocks, or one DER CRL); a
// missing file is an empty bundle. A block that does not parse is an
// error, never skipped: it could be the revocation that matters.
func readCRLBundle(path string) (*crlBundle, error) {
	b := &crlBundle{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CRL %s: %w", path, err)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		rl, err := ParseCRL(data)
		if err != nil {
			return nil, fmt.Errorf("read CRL %s: %w", path, err)
		}
		b.lists = append(b.lists, rl)
		return b, nil
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		rl, err := ParseCRL(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("read CRL %s: %w", path, err)
		}
		b.lists = append(b.lists, rl)
	}
	if len(b.lists) == 0 {
		return nil, fmt.Errorf("read CRL %s: no X509 CRL block in it", path)
	}
	return b, nil
}

// of returns the CRL of the CA c, its signature verified, or nil when the
// bundle has none. Of several, the one with the highest number wins. A
// CRL that names c but does not verify against it is an error: it was
// altered, or signed by another key of the same name.
func (b *crlBundle) of(c *x509.Certificate) (*x509.RevocationList, error) {
	var best *x509.RevocationList
	for _, rl := range b.lists {
		if !crlFrom(rl, c) {
			continue
		}
		if _, err := NewCRL(rl, c); err != nil {
			return nil, fmt.Errorf("the CRL of %s in %s does not verify against the CA (%w): it was altered, or signed by another key", c.Subject, b.path, err)
		}
		if best == nil || crlNumber(rl) > crlNumber(best) {
			best = rl
		}
	}
	return best, nil
}

// set puts rl in place of the CRLs of its issuer c, or adds it.
func (b *crlBundle) set(c *x509.Certificate, rl *x509.RevocationList) {
	b.remove(c)
	b.lists = append(b.lists, rl)
}

// remove drops the CRLs of the CA c.
func (b *crlBundle) remove(c *x509.Certificate) {
	b.lists = slices.DeleteFunc(b.lists, func(rl *x509.RevocationList) bool { return crlFrom(rl, c) })
}

// encode writes the CRLs as PEM, in the order of cas (the CRL of cas[0]
// first); CRLs of CAs not in cas come last, in their current order.
func (b *crlBundle) encode(cas []*x509.Certificate) []byte {
	rank := func(rl *x509.RevocationList) int {
		for i, c := range cas {
			if crlFrom(rl, c) {
				return i
			}
		}
		return len(cas)
	}
	lists := slices.Clone(b.lists)
	slices.SortStableFunc(lists, func(x, y *x509.RevocationList) int { return rank(x) - rank(y) })
	var out []byte
	for _, rl := range lists {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: rl.Raw})...)
	}
	return out
}

// crlNumber is the CRL's number, 0 when it has none or one too large.
func crlNumber(rl *x509.RevocationList) int64 {
	if rl == nil || rl.Number == nil || !rl.Number.IsInt64() {
		return 0
	}
	return rl.Number.Int64()
}
