package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// CRLWarnWithin is how close to its NextUpdate a CRL is reported as about to
// expire: servers refuse every client once it has.
const CRLWarnWithin = 48 * time.Hour

// Listing is the content of a PKI directory as [List] sees it.
type Listing struct {
	Mode         string       `json:"mode"` // "ca" or "self-signed"
	Certificates []ListedCert `json:"certificates"`
	CRL          *CRLStatus   `json:"crl,omitempty"` // CA mode only
}

// ListedCert is an inventory record with its status at the time of listing.
type ListedCert struct {
	Record
	Status string `json:"status"` // valid, expiring, expired, revoked or not yet valid
}

// CRLStatus describes the directory's CRL. Warning is set when it is missing,
// does not verify, has expired or expires within CRLWarnWithin.
type CRLStatus struct {
	Number     string    `json:"number,omitempty"`
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Revoked    int       `json:"revoked"`
	Warning    string    `json:"warning,omitempty"`
	// NeedsResign is set with a Warning that re-signing the CRL cures.
	NeedsResign bool `json:"needs_resign,omitempty"`
}

// List returns every certificate the CA issued with its status at now, and
// the state of the CRL. In self-signed mode, where there is no CA and no
// inventory, it lists the server and client certificates.
func List(ctx context.Context, d Dir, now time.Time) (*Listing, error) {
	if now.IsZero() {
		now = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mode, err := d.Mode()
	if err != nil {
		return nil, err
	}
	l := &Listing{Mode: mode.String(), Certificates: []ListedCert{}}
	if mode == ModeSelfSigned {
		for _, f := range []struct{ name, path string }{{"server", d.ServerCert()}, {"client", d.ClientCert()}} {
			c, err := LoadCert(f.path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			r := NewRecord(f.name, f.name, f.name+".crt", c)
			l.Certificates = append(l.Certificates, ListedCert{Record: r, Status: r.Status(now)})
		}
		return l, nil
	}
	inv, err := d.LoadInventory()
	if err != nil {
		return nil, err
	}
	for _, r := range inv.Certificates {
		l.Certificates = append(l.Certificates, ListedCert{Record: r, Status: r.Status(now)})
	}
	ca, err := LoadCert(d.CACert())
	if err != nil {
		return nil, err
	}
	l.CRL = crlStatus(d, ca, now)
	return l, nil
}

// crlStatus reads and verifies the CRL and says how long it has left.
func crlStatus(d Dir, ca *x509.Certificate, now time.Time) *CRLStatus {
	st := &CRLStatus{}
	data, err := os.ReadFile(d.CRL())
	if err != nil {
		st.Warning, st.NeedsResign = fmt.Sprintf("cannot read the CRL (%v)", err), true
		return st
	}
	rl, err := ParseCRL(data)
	if err != nil {
		st.Warning, st.NeedsResign = fmt.Sprintf("the CRL is unreadable (%v)", err), true
		return st
	}
	if rl.Number != nil {
		st.Number = rl.Number.String()
	}
	st.ThisUpdate, st.NextUpdate = rl.ThisUpdate.UTC(), rl.NextUpdate.UTC()
	st.Revoked = len(rl.RevokedCertificateEntries)
	if _, err := NewCRL(rl, ca); err != nil {
		st.Warning, st.NeedsResign = fmt.Sprintf("the CRL does not verify against the CA (%v)", err), true
		return st
	}
	left := rl.NextUpdate.Sub(now)
	switch {
	case rl.NextUpdate.IsZero():
	case left <= 0:
		st.Warning, st.NeedsResign = fmt.Sprintf("the CRL expired %s ago, at %s: servers refuse every client until it is re-signed", HumanDuration(left), stamp(rl.NextUpdate)), true
	case left < CRLWarnWithin:
		st.Warning, st.NeedsResign = fmt.Sprintf("the CRL expires in %s, at %s", HumanDuration(left), stamp(rl.NextUpdate)), true
	}
	return st
}
