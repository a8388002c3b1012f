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
// with the next CRL number. It returns the revoked record and the new CRL's
// NextUpdate.
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
// number and NextUpdate.
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

// updateCRL applies change to the inventory, bumps the CRL number and writes
// the inventory and then the CRL, under the directory lock. It returns the new
// CRL.
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
	if err := change(inv); err != nil {
		return nil, err
	}
	crlPEM, rl, err := ca.nextCRL(inv, days, now)
	if err != nil {
		return nil, err
	}
	if err := writeInventoryAndCRL(d, inv, crlPEM); err != nil {
		return nil, err
	}
	return rl, nil
}

// nextCRL bumps the inventory's CRL number and signs a CRL listing its
// revoked records.
func (ca *CA) nextCRL(inv *Inventory, days int, now time.Time) ([]byte, *x509.RevocationList, error) {
	inv.CRLNumber++
	crlPEM, err := ca.SignCRL(inv.CRLNumber, inv.Certificates, now, days)
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
