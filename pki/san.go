package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

// CheckEmail validates an e-mail address for an e-mail SAN: one '@' with
// something on either side, and no space or control character.
func CheckEmail(s string) error {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") ||
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("invalid e-mail address %q: use one address such as ops@example.org", s)
	}
	return nil
}

// CheckURI validates a URI for a URI SAN: it must parse and have a
// scheme, such as spiffe://example.org/web or urn:example:svc.
func CheckURI(s string) error {
	_, err := parseURI(s)
	return err
}

// san is one subject alternative name with its type: "DNS", "IP", "email"
// or "URI", the prefixes openssl and kvsctl print.
type san struct {
	kind, value string
}

func (s san) String() string { return s.kind + ":" + s.value }

// matches reports whether the identity value v is the same name as s:
// DNS names and e-mail addresses compare without regard to case, as
// servers match them; IP addresses (in canonical form) and URIs exactly.
func (s san) matches(v string) bool {
	if s.kind == "DNS" || s.kind == "email" {
		return strings.EqualFold(s.value, v)
	}
	return s.value == v
}

// csrSANs lists every SAN a CSR asks for, with its type.
func csrSANs(csr *x509.CertificateRequest) []san {
	var out []san
	for _, d := range csr.DNSNames {
		out = append(out, san{"DNS", d})
	}
	for _, ip := range csr.IPAddresses {
		out = append(out, san{"IP", ip.String()})
	}
	for _, e := range csr.EmailAddresses {
		out = append(out, san{"email", e})
	}
	for _, u := range csr.URIs {
		out = append(out, san{"URI", u.String()})
	}
	return out
}

// sans lists every SAN of the record with its type. Hosts holds DNS names
// and IP addresses together; kvsctl turns a DNS name that parses as an IP
// address into an IP SAN, so parsing tells them apart.
func (r Record) sans() []san {
	var out []san
	for _, h := range r.Hosts {
		if net.ParseIP(h) != nil {
			out = append(out, san{"IP", h})
		} else {
			out = append(out, san{"DNS", h})
		}
	}
	for _, e := range r.Emails {
		out = append(out, san{"email", e})
	}
	for _, u := range r.URIs {
		out = append(out, san{"URI", u})
	}
	return out
}

// commonName is the record's subject common name. A record written before
// the inventory kept it has it read from its certificate file (renewals
// keep the subject, so the file's certificate has the same one); "" when
// that cannot be read.
func (r Record) commonName(d Dir) string {
	if r.CommonName != "" {
		return r.CommonName
	}
	path := r.File
	if !filepath.IsAbs(path) {
		path = d.Path(path)
	}
	if c, err := LoadCert(path); err == nil {
		return c.Subject.CommonName
	}
	return ""
}

// checkSANConflicts returns an error wrapping ErrSANConflict when one of
// sans is the common name or a SAN of another certificate of the inventory
// that is still an identity at now: not revoked, not expired, and recorded
// under a name other than name (a certificate of the same name is the same
// identity, re-issued). what names the request in the error.
func (inv *Inventory) checkSANConflicts(d Dir, what, name string, sans []san, now time.Time) error {
	if len(sans) == 0 {
		return nil
	}
	for _, r := range inv.Certificates {
		if r.Name == name || r.RevokedAt != nil || now.After(r.NotAfter) {
			continue
		}
		holder := fmt.Sprintf("%s certificate %q (serial %s)", r.Kind, r.Name, r.Serial)
		cn := r.commonName(d)
		for _, s := range sans {
			if cn != "" && s.matches(cn) {
				return errorOf(ErrSANConflict, "%s: SAN %s matches the common name of %s: the new certificate would share its identity", what, s, holder)
			}
			for _, o := range r.sans() {
				if s.matches(o.value) {
					return errorOf(ErrSANConflict, "%s: SAN %s matches SAN %s of %s: the new certificate would share its identity", what, s, o, holder)
				}
			}
		}
	}
	return nil
}
