package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"
)

// DefaultCRLDays is the default lifetime of the CRL of a CA that signs
// leaves: it must be re-signed (kvsctl pki crl) before it runs out, or
// servers refuse every client.
const DefaultCRLDays = 7

// DefaultRootCRLDays is the default lifetime of the CRL of a root of a
// hierarchy, which lists revoked intermediates: the root key is offline
// most of the time, so its CRL must last until it is next brought back.
const DefaultRootCRLDays = 180

// ErrCRLExpired is wrapped when a CRL is past its NextUpdate. Servers fail
// closed on it.
var ErrCRLExpired = errors.New("pki: CRL expired")

// Revocation reasons (RFC 5280 CRLReason) accepted by --reason.
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"certificateHold":      6,
	"privilegeWithdrawn":   9,
}

// ParseReason validates a revocation reason name (case-insensitive) and
// returns its canonical spelling; the empty string means "unspecified".
func ParseReason(s string) (string, error) {
	if s == "" {
		return "unspecified", nil
	}
	for name := range reasonCodes {
		if strings.EqualFold(name, s) {
			return name, nil
		}
	}
	return "", fmt.Errorf("unknown revocation reason %q: use one of keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, unspecified", s)
}

// SignCRL creates a PEM CRL with the given number, listing every revoked
// record of the inventory, valid for days.
func (ca *CA) SignCRL(number int64, records []Record, now time.Time, days int) ([]byte, error) {
	entries, err := revocationEntries(records, nil)
	if err != nil {
		return nil, err
	}
	return ca.signEntries(number, entries, now, days)
}

// revocationEntries lists the revoked records as CRL entries, merged by
// serial with the entries of signed, the current CRL the CA signed: an
// entry of signed keeps its revocation time and reason, and one whose
// record is missing is kept as it is, so that no edit of the inventory
// drops or changes a signed revocation.
func revocationEntries(records []Record, signed []x509.RevocationListEntry) ([]x509.RevocationListEntry, error) {
	var entries []x509.RevocationListEntry
	at := map[string]int{} // serial (hex) -> index in entries
	for _, e := range signed {
		if e.SerialNumber == nil {
			continue
		}
		s := e.SerialNumber.Text(16)
		if _, dup := at[s]; dup {
			continue
		}
		at[s] = len(entries)
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber: e.SerialNumber, RevocationTime: e.RevocationTime.UTC(), ReasonCode: e.ReasonCode,
		})
	}
	for _, r := range records {
		if r.RevokedAt == nil {
			continue
		}
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("inventory has an invalid serial %q", r.Serial)
		}
		if _, kept := at[serial.Text(16)]; kept {
			continue // the signed entry wins
		}
		at[serial.Text(16)] = len(entries)
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   serial,
			RevocationTime: r.RevokedAt.UTC(),
			ReasonCode:     reasonCodes[r.Reason],
		})
	}
	return entries, nil
}

// signEntries signs a PEM CRL with the given number and entries, valid for
// days.
func (ca *CA) signEntries(number int64, entries []x509.RevocationListEntry, now time.Time, days int) ([]byte, error) {
	if days <= 0 {
		days = DefaultCRLDays
	}
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                now.Add(-backdate),
		NextUpdate:                now.Add(time.Duration(days) * 24 * time.Hour),
		RevokedCertificateEntries: entries,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// restoreRevocations marks every record that signed (the current, verified
// CRL) lists as revoked, with the CRL's time and reason, so that the
// inventory and 'pki list' agree with the CRL again after an edit, and a
// revoked certificate cannot be renewed or revoked anew.
func (inv *Inventory) restoreRevocations(signed *x509.RevocationList) {
	if signed == nil {
		return
	}
	for _, e := range signed.RevokedCertificateEntries {
		if e.SerialNumber == nil {
			continue
		}
		r := inv.Find(e.SerialNumber.Text(16))
		if r == nil {
			continue
		}
		t := e.RevocationTime.UTC()
		r.RevokedAt, r.Reason = &t, ReasonName(e.ReasonCode)
	}
}

// signedEntry returns the entry of rl for serial, or nil when rl is nil or
// does not list it.
func signedEntry(rl *x509.RevocationList, serial *big.Int) *x509.RevocationListEntry {
	if rl == nil {
		return nil
	}
	for i, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(serial) == 0 {
			return &rl.RevokedCertificateEntries[i]
		}
	}
	return nil
}

// ParseCRL decodes a PEM or DER CRL without checking it.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block %q is not a CRL", block.Type)
		}
		data = block.Bytes
	}
	rl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	return rl, nil
}

// CRL is a parsed CRL whose signature was verified, with its serials indexed
// for constant-time lookups on every handshake.
type CRL struct {
	List    *x509.RevocationList
	serials map[string]struct{}
}

// NewCRL verifies rl against its issuer (signature, issuer name) and indexes
// it. It does not check NextUpdate; call [CRL.Check] for that, on every use.
func NewCRL(rl *x509.RevocationList, issuer *x509.Certificate) (*CRL, error) {
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("CRL signature does not verify against %s: %w", issuer.Subject, err)
	}
	c := &CRL{List: rl, serials: make(map[string]struct{}, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		c.serials[string(e.SerialNumber.Bytes())] = struct{}{}
	}
	return c, nil
}

// LoadCRL reads, verifies and indexes a CRL file, and checks that it is
// current at now.
func LoadCRL(path string, issuer *x509.Certificate, now time.Time) (*CRL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CRL %s: %w", path, err)
	}
	rl, err := ParseCRL(data)
	if err != nil {
		return nil, fmt.Errorf("read CRL %s: %w", path, err)
	}
	c, err := NewCRL(rl, issuer)
	if err != nil {
		return nil, fmt.Errorf("read CRL %s: %w", path, err)
	}
	if err := c.Check(now); err != nil {
		return nil, fmt.Errorf("read CRL %s: %w", path, err)
	}
	return c, nil
}

// Check returns an error wrapping ErrCRLExpired when now is past NextUpdate,
// and an error when the CRL is not valid yet.
func (c *CRL) Check(now time.Time) error {
	if now.Before(c.List.ThisUpdate) {
		return fmt.Errorf("CRL is not valid until %s", c.List.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !c.List.NextUpdate.IsZero() && now.After(c.List.NextUpdate) {
		return errorOf(ErrCRLExpired, "CRL expired at %s: re-sign it",
			c.List.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// Revoked reports whether serial is listed.
func (c *CRL) Revoked(serial *big.Int) bool {
	_, ok := c.serials[string(serial.Bytes())]
	return ok
}
