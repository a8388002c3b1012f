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

// ExpiringWithin is how close to its end a certificate is called expiring.
const ExpiringWithin = 30 * 24 * time.Hour

// Record is one certificate the CA issued. It lists every subject
// alternative name of the certificate, of every type: an e-mail address or a
// URI can be an identity as much as the subject's common name.
type Record struct {
	Serial  string `json:"serial"` // lower-case hex
	Name    string `json:"name"`
	Kind    string `json:"kind"` // "ca", "server" or "client"
	Subject string `json:"subject"`
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
}

// Status is the state of a record at a moment.
func (r Record) Status(now time.Time) string {
	switch {
	case r.RevokedAt != nil:
		return "revoked"
	case now.After(r.NotAfter):
		return "expired"
	case now.Before(r.NotBefore):
		return "not yet valid"
	case r.NotAfter.Sub(now) < ExpiringWithin:
		return "expiring"
	}
	return "valid"
}

// Inventory is the list of everything the CA issued and the number of the
// last CRL, kept in inventory.json.
type Inventory struct {
	Certificates []Record `json:"certificates"`
	CRLNumber    int64    `json:"crl_number"`
}

// SerialHex formats a certificate serial the way the inventory stores it.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// NewRecord describes a certificate for the inventory, with all of its
// SANs.
func NewRecord(name, kind, file string, c *x509.Certificate) Record {
	r := Record{
		Serial: SerialHex(c), Name: name, Kind: kind, Subject: c.Subject.String(), CommonName: c.Subject.CommonName,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), File: file,
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
