package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// RevokeOptions configures [Revoke].
type RevokeOptions struct {
	Dir Dir
	// Target is a serial (hex) or the path of a certificate file. With
	// Intermediate, "" means the issuing intermediate.
	Target string
	Reason string // RFC 5280 reason name; "" means unspecified
	// Intermediate confirms that Target is an intermediate CA: its root
	// signs the revocation, and every leaf under it is refused from then
	// on. Revoking an intermediate without it is refused.
	Intermediate bool
	Passphrase   []byte
	CRLDays      int // lifetime of a leaf-signing CA's new CRL; 0 means DefaultCRLDays
	RootCRLDays  int // lifetime of a root's new CRL; 0 means DefaultRootCRLDays
	Now          time.Time
}

// ErrAlreadyRevoked means the certificate to revoke is revoked already.
var ErrAlreadyRevoked = errors.New("pki: already revoked")

// Revoked says what [Revoke] did.
type Revoked struct {
	Record Record               // the revoked certificate, as recorded
	Issuer *x509.Certificate    // the CA that signed the revocation
	CRL    *x509.RevocationList // its new CRL
}

// Revoke marks a certificate revoked in the inventory and writes a new CRL
// of the CA that issued it, with the next CRL number and every entry of
// that CA's current CRL; the CRLs of the other CAs in crl.pem are kept as
// they are. A leaf is revoked by its intermediate (or the flat CA), an
// intermediate by its root, whose key must then be present.
func Revoke(ctx context.Context, o RevokeOptions) (*Revoked, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	reason, err := ParseReason(o.Reason)
	if err != nil {
		return nil, err
	}
	a, err := loadAuthority(o.Dir)
	if err != nil {
		return nil, err
	}
	serial, issuer, err := a.revocationTarget(o)
	if err != nil {
		return nil, err
	}
	job := crlJob{days: o.CRLDays}
	need := "sign the CRL of " + issuer.Subject.String()
	if !a.signsLeaves(issuer) {
		job.days = o.RootCRLDays
		if job.days == 0 {
			job.days = DefaultRootCRLDays
		}
		need = "revoke an intermediate (the root signs its CRL)"
	}
	if job.ca, err = a.loadCA(issuer, o.Passphrase, o.Now, need); err != nil {
		return nil, err
	}
	out := &Revoked{Issuer: issuer}
	lists, err := a.updateCRLs([]crlJob{job}, o.Now, func(inv *Inventory) error {
		r := inv.Find(serial)
		if r == nil {
			return errorOf(ErrUnknownCert, "serial %s is not in the inventory of %s", NormalizeSerial(serial), string(o.Dir))
		}
		if r.Kind == KindFlatCA || r.Kind == KindRoot {
			return fmt.Errorf("serial %s is a root CA: a CA cannot revoke itself (retire a root with 'pki ca retire')", r.Serial)
		}
		if r.RevokedAt != nil {
			return errorOf(ErrAlreadyRevoked, "serial %s (%s) was already revoked on %s", r.Serial, r.Name, r.RevokedAt.Format(time.RFC3339))
		}
		t := o.Now.UTC().Truncate(time.Second)
		r.RevokedAt, r.Reason = &t, reason
		out.Record = *r
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.CRL = lists[0]
	return out, nil
}

// revocationTarget resolves the target of o to a serial and the CA of the
// directory that issued it.
func (a *authority) revocationTarget(o RevokeOptions) (string, *x509.Certificate, error) {
	var cert *x509.Certificate
	serial := o.Target
	switch {
	case serial == "" && o.Intermediate:
		if !a.hierarchy() {
			return "", nil, fmt.Errorf("%s is a flat PKI: it has no intermediate to revoke", string(a.dir))
		}
		cert = a.issuing
	case serial == "":
		return "", nil, fmt.Errorf("nothing to revoke: give a serial or a certificate file")
	default:
		if fi, err := os.Stat(o.Target); err == nil && !fi.IsDir() {
			c, err := LoadCert(o.Target)
			if err != nil {
				return "", nil, err
			}
			cert = c
		} else {
			cert = a.find(serial)
		}
	}
	if cert != nil {
		serial = SerialHex(cert)
	}
	inv, err := a.dir.LoadInventory()
	if err != nil {
		return "", nil, err
	}
	rec := inv.Find(serial)
	if rec == nil {
		return "", nil, errorOf(ErrUnknownCert, "serial %s is not in the inventory of %s", NormalizeSerial(serial), string(a.dir))
	}
	isIntermediate := rec.Kind == KindIntermediate
	switch {
	case isIntermediate && !o.Intermediate:
		return "", nil, fmt.Errorf("serial %s is the intermediate CA %q: revoking it makes every leaf it signed fail; confirm with --intermediate", rec.Serial, rec.Name)
	case !isIntermediate && o.Intermediate:
		return "", nil, fmt.Errorf("serial %s is a %s certificate, not an intermediate CA: revoke it without --intermediate", rec.Serial, rec.Kind)
	}
	var issuer *x509.Certificate
	if cert != nil {
		issuer = a.issuerOf(cert)
	}
	if issuer == nil {
		is := rec.Issuer
		if is == "" && !rec.IsCA() {
			is = SerialHex(a.roots[0]) // a record before the hierarchy: the flat CA
			if c := inv.flatCA(); c != nil {
				is = c.Serial
			}
		}
		issuer = a.find(is)
	}
	if issuer == nil {
		return "", nil, fmt.Errorf("serial %s (%s) was issued by CA serial %s, which is no longer in %s: its certificates are not trusted any more anyway", rec.Serial, rec.Name, rec.Issuer, string(a.dir))
	}
	return serial, issuer, nil
}

// CRLOptions configures [UpdateCRL].
type CRLOptions struct {
	Dir        Dir
	Passphrase []byte // decrypts the CA keys
	Days       int    // lifetime of the new CRLs of CAs that sign leaves; 0 means DefaultCRLDays
	RootDays   int    // lifetime of the new CRLs of roots of a hierarchy; 0 means DefaultRootCRLDays
	Now        time.Time
}

// CRLUpdate is what [UpdateCRL] did with the CRL of one CA.
type CRLUpdate struct {
	Issuer   *x509.Certificate
	CRL      *x509.RevocationList // the new CRL, or the current one when not re-signed
	Resigned bool
	// Note says why the CRL was not re-signed: the CA's key is offline.
	Note string
}

// UpdateCRL re-signs, with the next number and a new lifetime, the CRL of
// every CA of the directory whose key is present, as a cron job would: the
// issuing CA's (whose key is required), the CRLs of CAs a rotation
// replaced, and the root's in a hierarchy when its key is here. Each new
// CRL lists the inventory's revoked records of its CA and carries forward
// every entry of the CA's current CRL, whose signature is checked first:
// the inventory is not signed, and an edit of it can never take a
// revocation off a CRL. A CRL that does not verify is an error.
func UpdateCRL(ctx context.Context, o CRLOptions) ([]CRLUpdate, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Days < 0 || o.RootDays < 0 {
		return nil, fmt.Errorf("invalid CRL lifetime of %d days", min(o.Days, o.RootDays))
	}
	if o.RootDays == 0 {
		o.RootDays = DefaultRootCRLDays
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, err := loadAuthority(o.Dir)
	if err != nil {
		return nil, err
	}
	var jobs []crlJob
	var out []CRLUpdate
	for _, c := range a.cas() {
		if !c.Equal(a.issuing) && !exists(a.keyPath(c)) {
			out = append(out, CRLUpdate{Issuer: c, Note: "its key " + a.keyPath(c) + " is not here"})
			continue
		}
		if o.Now.After(c.NotAfter) {
			out = append(out, CRLUpdate{Issuer: c, Note: "the CA expired on " + stamp(c.NotAfter)})
			continue
		}
		ca, err := a.loadCA(c, o.Passphrase, o.Now, "re-sign its CRL")
		if err != nil {
			return nil, err
		}
		days := o.Days
		if !a.signsLeaves(c) {
			days = o.RootDays
		}
		jobs = append(jobs, crlJob{ca: ca, days: days})
	}
	lists, err := a.updateCRLs(jobs, o.Now, func(*Inventory) error { return nil })
	if err != nil {
		return nil, err
	}
	for i, j := range jobs {
		out = append(out, CRLUpdate{Issuer: j.ca.Cert, CRL: lists[i], Resigned: true})
	}
	if b, err := readCRLBundle(o.Dir.CRL()); err == nil {
		for i := range out {
			if !out[i].Resigned {
				out[i].CRL, _ = b.of(out[i].Issuer)
			}
		}
	}
	return sortUpdates(a, out), nil
}

// sortUpdates orders the updates like the CAs of a.
func sortUpdates(a *authority, ups []CRLUpdate) []CRLUpdate {
	out := make([]CRLUpdate, 0, len(ups))
	for _, c := range a.cas() {
		for _, u := range ups {
			if u.Issuer.Equal(c) {
				out = append(out, u)
			}
		}
	}
	return out
}

// crlJob is a CA whose CRL a command re-signs, and the lifetime of the new
// CRL in days.
type crlJob struct {
	ca   *CA
	days int
}

// updateCRLs reads the inventory and crl.pem under the directory lock,
// checks every CRL of crl.pem against its CA and restores their
// revocations in the inventory, applies change to the inventory, signs the
// next CRL of every job's CA, and writes the inventory and then crl.pem.
// It returns the new CRLs, in the order of jobs.
func (a *authority) updateCRLs(jobs []crlJob, now time.Time, change func(*Inventory) error) ([]*x509.RevocationList, error) {
	d := a.dir
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	inv, b, err := a.readState()
	if err != nil {
		return nil, err
	}
	if err := change(inv); err != nil {
		return nil, err
	}
	out := make([]*x509.RevocationList, len(jobs))
	for i, j := range jobs {
		signed, err := b.of(j.ca.Cert)
		if err != nil {
			return nil, err
		}
		if out[i], err = j.ca.nextCRL(inv, signed, j.days, now); err != nil {
			return nil, err
		}
		b.set(j.ca.Cert, out[i])
	}
	if err := writeInventoryAndCRL(d, inv, b.encode(a.cas())); err != nil {
		return nil, err
	}
	return out, nil
}

// readState reads the inventory and crl.pem, checks every CRL against its
// CA and marks revoked every record a CRL lists: the signed CRLs, not the
// editable inventory, say what is revoked. The caller holds the lock.
func (a *authority) readState() (*Inventory, *crlBundle, error) {
	inv, err := a.dir.LoadInventory()
	if err != nil {
		return nil, nil, err
	}
	b, err := readCRLBundle(a.dir.CRL())
	if err != nil {
		return nil, nil, err
	}
	if err := a.checkBundle(b); err != nil {
		return nil, nil, err
	}
	for _, c := range a.cas() {
		rl, err := b.of(c)
		if err != nil {
			return nil, nil, err
		}
		inv.restoreRevocations(rl)
	}
	return inv, b, nil
}

// nextCRL signs the CRL of the CA that follows signed (its current CRL,
// verified; nil when there is none): its number is above both the
// inventory's and signed's, and it lists the CA's revoked records and
// every entry of signed (see revocationEntries). The inventory's number
// for the CA is set to the new one.
func (ca *CA) nextCRL(inv *Inventory, signed *x509.RevocationList, days int, now time.Time) (*x509.RevocationList, error) {
	var prev []x509.RevocationListEntry
	if signed != nil {
		prev = signed.RevokedCertificateEntries
	}
	n := max(inv.crlNumber(ca.Cert), crlNumber(signed)) + 1
	inv.setCRLNumber(ca.Cert, n)
	serial := SerialHex(ca.Cert)
	var records []Record
	for _, r := range inv.Certificates {
		if inv.issuedBy(r, serial) {
			records = append(records, r)
		}
	}
	entries, err := revocationEntries(records, prev)
	if err != nil {
		return nil, err
	}
	crlPEM, err := ca.signEntries(n, entries, now, days)
	if err != nil {
		return nil, err
	}
	return ParseCRL(crlPEM)
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

// IssuerCRL is the current CRL of one CA of a directory.
type IssuerCRL struct {
	Issuer  *x509.Certificate
	CRL     *x509.RevocationList // nil when crl.pem has none for it
	Issuing bool                 // the CA that signs new leaves
	// HasKey tells whether the CA's key is here, so that its CRL can be
	// re-signed.
	HasKey bool
}

// CurrentCRLs reads crl.pem and returns the CRL of every CA of the
// directory, each verified against its CA, in the order of the CAs (the
// intermediates, then the roots).
func CurrentCRLs(d Dir) ([]IssuerCRL, error) {
	a, err := loadAuthority(d)
	if err != nil {
		return nil, err
	}
	b, err := readCRLBundle(d.CRL())
	if err != nil {
		return nil, err
	}
	var out []IssuerCRL
	for _, c := range a.cas() {
		rl, err := b.of(c)
		if err != nil {
			return nil, err
		}
		out = append(out, IssuerCRL{Issuer: c, CRL: rl, Issuing: c.Equal(a.issuing), HasKey: exists(a.keyPath(c))})
	}
	return out, nil
}
