package pki

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// ExpiringWithin is how close to its end a certificate is called expiring;
// a short-lived one is called so in the last third of its life.
const ExpiringWithin = 30 * 24 * time.Hour

// Record is one certificate the CA issued. It lists every subject
// alternative name of the certificate, of every type: an e-mail address or a
// URI can be an identity as much as the subject's common name.
type Record struct {
	Serial  string `json:"serial"` // lower-case hex
	Name    string `json:"name"`
	Kind    string `json:"kind"` // "root", "intermediate", "server" or "client"; "ca" for a flat CA
	Subject string `json:"subject"`
	// Issuer is the serial of the CA that signed the certificate; empty
	// for a root. Records of releases before the hierarchy lack it: their
	// issuer is the flat CA.
	Issuer string `json:"issuer,omitempty"`
	// CommonName is the subject's common name, the identity a policy's
	// bare name matches. Inventories written before it was kept lack it.
	CommonName string `json:"common_name,omitempty"`
	// Hosts are the DNS names and then the IP addresses.
	Hosts     []string   `json:"hosts,omitempty"`
	Emails    []string   `json:"emails,omitempty"` // e-mail (rfc822Name) SANs
	URIs      []string   `json:"uris,omitempty"`   // URI SANs
	NotBefore time.Time  `json:"not_before"`
	NotAfter  time.Time  `json:"not_after"`
	File      string     `json:"file"` // relative to the PKI directory
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	// ReplacedBy is the serial of the certificate that renewed this one.
	ReplacedBy string `json:"replaced_by,omitempty"`
	// RetiredAt is when the root of the certificate left the trust
	// bundle ('pki ca retire'): no peer accepts it since.
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

// The kinds of CA records.
const (
	KindRoot         = "root"
	KindIntermediate = "intermediate"
	KindFlatCA       = "ca"
)

// IsCA reports whether the record is of a CA.
func (r Record) IsCA() bool {
	return r.Kind == KindRoot || r.Kind == KindIntermediate || r.Kind == KindFlatCA
}

// Status is the state of a record at a moment.
func (r Record) Status(now time.Time) string {
	switch {
	case r.RevokedAt != nil:
		return "revoked"
	case r.RetiredAt != nil:
		return "retired"
	case now.After(r.NotAfter):
		return "expired"
	case now.Before(r.NotBefore):
		return "not yet valid"
	case r.NotAfter.Sub(now) < min(ExpiringWithin, r.NotAfter.Sub(r.NotBefore)/3):
		return "expiring"
	}
	return "valid"
}

// Inventory is the list of everything the CAs of a directory issued and
// the number of the last CRL of each, kept in inventory.json.
type Inventory struct {
	Certificates []Record `json:"certificates"`
	// CRLNumber is the number of the last CRL of the flat CA (kind "ca").
	CRLNumber int64 `json:"crl_number"`
	// CRLNumbers are the numbers of the last CRLs of the CAs of a
	// hierarchy, by the CA's serial.
	CRLNumbers map[string]int64 `json:"crl_numbers,omitempty"`
}

// crlNumber is the number of the last CRL of the CA c.
func (inv *Inventory) crlNumber(c *x509.Certificate) int64 {
	s := SerialHex(c)
	if n, ok := inv.CRLNumbers[s]; ok {
		return n
	}
	if r := inv.Find(s); r == nil || r.Kind == KindFlatCA {
		return inv.CRLNumber
	}
	return 0
}

// setCRLNumber records n as the number of the last CRL of the CA c.
func (inv *Inventory) setCRLNumber(c *x509.Certificate, n int64) {
	s := SerialHex(c)
	if r := inv.Find(s); r != nil && r.Kind == KindFlatCA {
		inv.CRLNumber = n
		return
	}
	if inv.CRLNumbers == nil {
		inv.CRLNumbers = map[string]int64{}
	}
	inv.CRLNumbers[s] = n
}

// issuedBy reports whether the record was signed by the CA with the given
// serial. A record without an issuer (inventories before the hierarchy)
// belongs to the flat CA.
func (inv *Inventory) issuedBy(r Record, ca string) bool {
	if r.Issuer != "" {
		return r.Issuer == ca
	}
	if r.IsCA() {
		return false
	}
	c := inv.Find(ca)
	return c == nil || c.Kind == KindFlatCA
}

// SerialHex formats a certificate serial the way the inventory stores it.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// NewRecord describes a certificate for the inventory, with all of its
// SANs. issuer is the CA that signed it (nil for a root).
func NewRecord(name, kind, file string, c, issuer *x509.Certificate) Record {
	r := Record{
		Serial: SerialHex(c), Name: name, Kind: kind, Subject: c.Subject.String(), CommonName: c.Subject.CommonName,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), File: file,
	}
	if issuer != nil && !issuer.Equal(c) {
		r.Issuer = SerialHex(issuer)
	}
	r.Hosts = append(r.Hosts, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		r.Hosts = append(r.Hosts, ip.String())
	}
	r.Emails = append(r.Emails, c.EmailAddresses...)
	for _, u := range c.URIs {
		r.URIs = append(r.URIs, u.String())
	}
	return r
}

// LoadInventory reads the inventory; a missing file is an empty inventory.
func (d Dir) LoadInventory() (*Inventory, error) {
	data, err := os.ReadFile(d.Inventory())
	if errors.Is(err, fs.ErrNotExist) {
		return &Inventory{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	var inv Inventory
	if err := json.Unmarshal(data, &inv); err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", d.Inventory(), err)
	}
	return &inv, nil
}

// encode renders the inventory as indented JSON.
func (inv *Inventory) encode() ([]byte, error) {
	data, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	return append(data, '\n'), nil
}

// Find returns the record with the given serial (hex, any case, optional
// colons or 0x prefix), or nil.
func (inv *Inventory) Find(serial string) *Record {
	s := NormalizeSerial(serial)
	for i := range inv.Certificates {
		if inv.Certificates[i].Serial == s {
			return &inv.Certificates[i]
		}
	}
	return nil
}

// flatCA returns the record of the flat CA (kind "ca"), or nil.
func (inv *Inventory) flatCA() *Record {
	for i := range inv.Certificates {
		if inv.Certificates[i].Kind == KindFlatCA {
			return &inv.Certificates[i]
		}
	}
	return nil
}

// NormalizeSerial turns "0A:FF", "0x0aff" or "0AFF" into "aff".
func NormalizeSerial(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "0x")
	s = strings.ReplaceAll(s, ":", "")
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return "0"
	}
	return s
}

// caName is the inventory name of a CA of a hierarchy: its kind and the
// first four bytes of its key identifier, as in its common name
// ("intermediate-261c8995"), so that the CAs of several generations read
// apart.
func caName(kind string, c *x509.Certificate) string {
	if len(c.SubjectKeyId) < 4 {
		return kind
	}
	return fmt.Sprintf("%s-%x", kind, c.SubjectKeyId[:4])
}
