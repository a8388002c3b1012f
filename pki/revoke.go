package pki

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// RevokeOptions configures [Revoke].
type RevokeOptions struct {
	Dir        Dir
	Target     string // a serial (hex) or the path of a certificate file
	Reason     string // RFC 5280 reason name; "" means unspecified
	Passphrase []byte
	CRLDays    int
	Now        time.Time
}

// Revoke marks a certificate revoked in the inventory and writes a new CRL
// with the next CRL number, which keeps every entry of the current CRL. It
// returns the revoked record and the new CRL's NextUpdate.
func Revoke(ctx context.Context, o RevokeOptions) (Record, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, time.Time{}, err
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	reason, err := ParseReason(o.Reason)
	if err != nil {
		return Record{}, time.Time{}, err
	}
	serial := o.Target
	if fi, err := os.Stat(o.Target); err == nil && !fi.IsDir() {
		c, err := LoadCert(o.Target)
		if err != nil {
			return Record{}, time.Time{}, err
		}
		serial = SerialHex(c)
	}
	ca, err := LoadCA(o.Dir, o.Passphrase, o.Now)
	if err != nil {
		return Record{}, time.Time{}, err
	}
	var out Record
	rl, err := updateCRL(o.Dir, ca, o.CRLDays, o.Now, func(inv *Inventory) error {
		r := inv.Find(serial)
		if r == nil {
			return errorOf(ErrUnknownCert, "serial %s is not in the inventory of %s", NormalizeSerial(serial), string(o.Dir))
		}
		if r.Kind == "ca" {
			return fmt.Errorf("serial %s is the CA itself: a CA cannot revoke itself", r.Serial)
		}
		if r.RevokedAt != nil {
			return fmt.Errorf("serial %s (%s) was already revoked on %s", r.Serial, r.Name, r.RevokedAt.Format(time.RFC3339))
		}
		t := o.Now.UTC().Truncate(time.Second)
		r.RevokedAt, r.Reason = &t, reason
		out = *r
		return nil
	})
	if err != nil {
		return Record{}, time.Time{}, err
	}
	return out, rl.NextUpdate, nil
}

// CRLOptions configures [UpdateCRL].
type CRLOptions struct {
	Dir        Dir
	Passphrase []byte // decrypts the CA key
	Days       int    // lifetime of the new CRL; 0 means DefaultCRLDays
	Now        time.Time
}

// UpdateCRL re-signs the CRL with the next CRL number and a new lifetime,
// as a cron job would, and returns the new CRL so callers can report its
// number and NextUpdate. The new CRL lists the inventory's revoked records
// and carries forward every entry of the current crl.pem, whose signature
// is checked against the CA first: the inventory is not signed, and an
// edit of it can never take a revocation off the CRL. A crl.pem that does
// not verify is an error.
func UpdateCRL(ctx context.Context, o CRLOptions) (*x509.RevocationList, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Days < 0 {
		return nil, fmt.Errorf("invalid CRL lifetime of %d days", o.Days)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ca, err := LoadCA(o.Dir, o.Passphrase, o.Now)
	if err != nil {
		return nil, err
	}
	return updateCRL(o.Dir, ca, o.Days, o.Now, func(*Inventory) error { return nil })
}

// updateCRL reads and verifies the current CRL, restores its revocations in
// the inventory, applies change to the inventory, bumps the CRL number and
// writes the inventory and then the CRL, under the directory lock. It
// returns the new CRL.
func updateCRL(d Dir, ca *CA, days int, now time.Time, change func(*Inventory) error) (*x509.RevocationList, error) {
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	inv, err := d.LoadInventory()
	if err != nil {
		return nil, err
	}
	signed, err := ca.signedCRL(d)
	if err != nil {
		return nil, err
	}
	inv.restoreRevocations(signed)
	if err := change(inv); err != nil {
		return nil, err
	}
	crlPEM, rl, err := ca.nextCRL(inv, signed, days, now)
	if err != nil {
		return nil, err
	}
	if err := writeInventoryAndCRL(d, inv, crlPEM); err != nil {
		return nil, err
	}
	return rl, nil
}

// nextCRL signs the CRL that follows signed (the current CRL, verified; nil
// when there is none): its number is above both the inventory's and
// signed's, and it lists the inventory's revoked records and every entry of
// signed (see revocationEntries). The inventory's CRL number is set to the
// new one.
func (ca *CA) nextCRL(inv *Inventory, signed *x509.RevocationList, days int, now time.Time) ([]byte, *x509.RevocationList, error) {
	var prev []x509.RevocationListEntry
	if signed != nil {
		prev = signed.RevokedCertificateEntries
		if signed.Number != nil && signed.Number.IsInt64() && signed.Number.Int64() > inv.CRLNumber {
			inv.CRLNumber = signed.Number.Int64()
		}
	}
	inv.CRLNumber++
	entries, err := revocationEntries(inv.Certificates, prev)
	if err != nil {
		return nil, nil, err
	}
	crlPEM, err := ca.signEntries(inv.CRLNumber, entries, now, days)
	if err != nil {
		return nil, nil, err
	}
	rl, err := ParseCRL(crlPEM)
	if err != nil {
		return nil, nil, err
	}
	return crlPEM, rl, nil
}

// writeInventoryAndCRL writes the inventory first and then the CRL: if the
// CRL write fails, the next re-signing still knows every revocation.
// The caller holds the directory lock.
func writeInventoryAndCRL(d Dir, inv *Inventory, crlPEM []byte) error {
	invData, err := inv.encode()
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(d.Inventory(), invData, CertMode, true); err != nil {
		return err
	}
	if err := WriteFileAtomic(d.CRL(), crlPEM, CertMode, true); err != nil {
		return fmt.Errorf("%w (the inventory is updated; re-signing the CRL retries): %w", err, ErrCRLNotSigned)
	}
	return nil
}
