package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// CRLWarnWithin is how close to its NextUpdate a CRL is reported as about to
// expire: servers refuse every client once it has.
const CRLWarnWithin = 48 * time.Hour

// Listing is the content of a PKI directory as [List] sees it.
type Listing struct {
	Mode string `json:"mode"` // "ca" or "self-signed"
	// Layout is "hierarchy" (a root and intermediates) or "flat" (one CA
	// signs the leaves); CA mode only.
	Layout       string       `json:"layout,omitempty"`
	Certificates []ListedCert `json:"certificates"` // CAs before what they issued
	// CRL is the state of the CRL of the issuing CA (CA mode only); CRLs
	// that of every CA's, the issuing CA's first.
	CRL  *CRLStatus  `json:"crl,omitempty"`
	CRLs []CRLStatus `json:"crls,omitempty"`
}

// ListedCert is an inventory record with its status at the time of listing.
type ListedCert struct {
	Record
	Status string `json:"status"` // valid, expiring, expired, revoked, retired or not yet valid
	// Depth is the distance from the root: 0 for a root, 1 for what it
	// signed, and so on; 'pki list' indents by it.
	Depth int `json:"depth"`
}

// CRLStatus describes the directory's CRL. Warning is set when it is missing,
// does not verify, has expired or expires within CRLWarnWithin.
type CRLStatus struct {
	Issuer       string    `json:"issuer,omitempty"`        // the CA's subject
	IssuerSerial string    `json:"issuer_serial,omitempty"` // the CA's serial
	Number       string    `json:"number,omitempty"`
	ThisUpdate   time.Time `json:"this_update,omitzero"`
	NextUpdate   time.Time `json:"next_update,omitzero"`
	Revoked      int       `json:"revoked"`
	Warning      string    `json:"warning,omitempty"`
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
			r := NewRecord(f.name, f.name, f.name+".crt", c, nil)
			l.Certificates = append(l.Certificates, ListedCert{Record: r, Status: r.Status(now)})
		}
		return l, nil
	}
	inv, err := d.LoadInventory()
	if err != nil {
		return nil, err
	}
	a, err := loadAuthority(d)
	if err != nil {
		return nil, err
	}
	l.Layout = "flat"
	if a.hierarchy() {
		l.Layout = "hierarchy"
	}
	for _, r := range treeOrder(inv) {
		l.Certificates = append(l.Certificates, ListedCert{Record: r.Record, Status: r.Record.Status(now), Depth: r.depth})
	}
	b, berr := readCRLBundle(d.CRL())
	for _, c := range a.cas() {
		st := crlStatus(b, berr, c, a.signsLeaves(c), now)
		l.CRLs = append(l.CRLs, *st)
	}
	l.CRL = &l.CRLs[0]
	return l, nil
}

// treeRecord is a record with its depth below its root.
type treeRecord struct {
	Record
	depth int
}

// treeOrder lists the records depth first: each root (or flat CA), then
// what it signed, each CA before its leaves, in inventory order within a
// level. A record whose issuer is not in the inventory comes last, at
// depth 0.
func treeOrder(inv *Inventory) []treeRecord {
	children := map[string][]Record{}
	var tops []Record
	serials := map[string]bool{}
	for _, r := range inv.Certificates {
		serials[r.Serial] = true
	}
	for _, r := range inv.Certificates {
		is := r.Issuer
		if is == "" && !r.IsCA() {
			if ca := inv.flatCA(); ca != nil {
				is = ca.Serial
			}
		}
		if is == "" || is == r.Serial || !serials[is] {
			tops = append(tops, r)
			continue
		}
		children[is] = append(children[is], r)
	}
	var out []treeRecord
	seen := map[string]bool{}
	var walk func(r Record, depth int)
	walk = func(r Record, depth int) {
		if seen[r.Serial] {
			return
		}
		seen[r.Serial] = true
		out = append(out, treeRecord{r, depth})
		kids := children[r.Serial]
		// CAs first, so that a subtree is not split by leaves.
		for _, ca := range []bool{true, false} {
			for _, k := range kids {
				if k.IsCA() == ca {
					walk(k, depth+1)
				}
			}
		}
	}
	for _, r := range tops {
		if r.IsCA() {
			walk(r, 0)
		}
	}
	for _, r := range tops {
		walk(r, 0)
	}
	return out
}

// crlStatus describes the CRL of the CA c in b (berr: why b could not be
// read) and says how long it has left. signsLeaves tells a CA whose CRL
// must be re-signed often from a root of a hierarchy, whose CRL is warned
// about a month ahead, as its key is offline.
func crlStatus(b *crlBundle, berr error, c *x509.Certificate, signsLeaves bool, now time.Time) *CRLStatus {
	st := &CRLStatus{Issuer: c.Subject.String(), IssuerSerial: SerialHex(c)}
	if berr != nil {
		st.Warning, st.NeedsResign = fmt.Sprintf("cannot read the CRL (%v)", berr), true
		return st
	}
	rl, err := b.of(c)
	if err != nil {
		st.Warning, st.NeedsResign = fmt.Sprintf("the CRL does not verify against the CA (%v)", err), true
		return st
	}
	if rl == nil {
		st.Warning, st.NeedsResign = fmt.Sprintf("%s has no CRL of %s", b.path, c.Subject), true
		return st
	}
	if rl.Number != nil {
		st.Number = rl.Number.String()
	}
	st.ThisUpdate, st.NextUpdate = rl.ThisUpdate.UTC(), rl.NextUpdate.UTC()
	st.Revoked = len(rl.RevokedCertificateEntries)
	warn := CRLWarnWithin
	if !signsLeaves {
		warn = ExpiringWithin
	}
	left := rl.NextUpdate.Sub(now)
	switch {
	case rl.NextUpdate.IsZero():
	case left <= 0:
		st.Warning, st.NeedsResign = fmt.Sprintf("the CRL expired %s ago, at %s: servers refuse every client of this CA until it is re-signed", HumanDuration(left), stamp(rl.NextUpdate)), true
	case left < warn:
		st.Warning, st.NeedsResign = fmt.Sprintf("the CRL expires in %s, at %s", HumanDuration(left), stamp(rl.NextUpdate)), true
	}
	return st
}
