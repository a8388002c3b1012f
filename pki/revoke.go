package pki

import (
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
func Revoke(o RevokeOptions) (Record, time.Time, error) {
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
	next, err := updateCRL(o.Dir, ca, o.CRLDays, o.Now, func(inv *Inventory) error {
		r := inv.Find(serial)
		if r == nil {
			return fmt.Errorf("serial %s is not in the inventory of %s: see 'kvsctl pki list'", NormalizeSerial(serial), string(o.Dir))
		}
		if r.Kind == "ca" {
			return fmt.Errorf("serial %s is the CA itself: a CA cannot revoke itself, create a new PKI with 'kvsctl pki init --force'", r.Serial)
		}
		if r.RevokedAt != nil {
			return fmt.Errorf("serial %s (%s) was already revoked on %s", r.Serial, r.Name, r.RevokedAt.Format(time.RFC3339))
		}
		t := o.Now.UTC().Truncate(time.Second)
		r.RevokedAt, r.Reason = &t, reason
		out = *r
		return nil
	})
	return out, next, err
}

// RefreshCRL re-signs the CRL with the next CRL number and a new lifetime of
// days (0 means DefaultCRLDays), as a cron job would. It returns NextUpdate.
func RefreshCRL(d Dir, passphrase []byte, days int, now time.Time) (time.Time, error) {
	if now.IsZero() {
		now = time.Now()
	}
	ca, err := LoadCA(d, passphrase, now)
	if err != nil {
		return time.Time{}, err
	}
	return updateCRL(d, ca, days, now, func(*Inventory) error { return nil })
}

// updateCRL applies change to the inventory, bumps the CRL number and writes
// the inventory and then the CRL, under the directory lock. The inventory is
// written first: if the CRL write fails, the next 'kvsctl pki crl' still
// knows every revocation.
func updateCRL(d Dir, ca *CA, days int, now time.Time, change func(*Inventory) error) (time.Time, error) {
	unlock, err := d.lock()
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	inv, err := d.LoadInventory()
	if err != nil {
		return time.Time{}, err
	}
	if err := change(inv); err != nil {
		return time.Time{}, err
	}
	inv.CRLNumber++
	crlPEM, err := ca.SignCRL(inv.CRLNumber, inv.Certificates, now, days)
	if err != nil {
		return time.Time{}, err
	}
	invData, err := inv.encode()
	if err != nil {
		return time.Time{}, err
	}
	if err := WriteFileAtomic(d.Inventory(), invData, CertMode, true); err != nil {
		return time.Time{}, err
	}
	if err := WriteFileAtomic(d.CRL(), crlPEM, CertMode, true); err != nil {
		return time.Time{}, fmt.Errorf("%w (the inventory is updated: run 'kvsctl pki crl' to retry)", err)
	}
	rl, err := ParseCRL(crlPEM)
	if err != nil {
		return time.Time{}, err
	}
	return rl.NextUpdate, nil
}
