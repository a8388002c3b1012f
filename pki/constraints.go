package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// ErrNameNotPermitted is wrapped when a certificate would carry a name
// outside the name constraints of its issuing CA.
var ErrNameNotPermitted = errors.New("pki: name outside the CA's name constraints")

// NameConstraints are the names a CA may certify (RFC 5280 permitted
// subtrees). A type with no entries is not constrained. kvsctl puts them
// in a critical name constraints extension.
type NameConstraints struct {
	// DNS domains: "example.com" permits it and every name below it,
	// ".example.com" only the names below it.
	DNS []string
	IPs []*net.IPNet // address ranges, IPv4 and IPv6
	// Emails: a full address permits that mailbox, a host ("example.com")
	// its mailboxes, ".example.com" the mailboxes of every host below it.
	Emails []string
	// URIs are domains the host of a URI must be: "example.org" exactly,
	// ".example.org" any host below it.
	URIs []string
}

// Empty reports whether nc constrains nothing.
func (nc NameConstraints) Empty() bool {
	return len(nc.DNS)+len(nc.IPs)+len(nc.Emails)+len(nc.URIs) == 0
}

// ParseNameConstraints checks and parses the --permit-* values: DNS
// domains, CIDR ranges, e-mail constraints and URI domains.
func ParseNameConstraints(dns, ips, emails, uris []string) (NameConstraints, error) {
	var nc NameConstraints
	for _, d := range dns {
		if !validDomainConstraint(d) {
			return nc, fmt.Errorf("invalid DNS name constraint %q: use a domain such as example.com (it and every name below it) or .example.com (only names below it)", d)
		}
		nc.DNS = append(nc.DNS, strings.ToLower(d))
	}
	for _, s := range ips {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nc, fmt.Errorf("invalid IP name constraint %q: use a CIDR range such as 127.0.0.0/8, 10.0.0.0/8 or ::1/128", s)
		}
		if v4 := n.IP.To4(); v4 != nil {
			n.IP, n.Mask = v4, n.Mask[len(n.Mask)-4:]
		}
		nc.IPs = append(nc.IPs, n)
	}
	for _, e := range emails {
		at := strings.LastIndex(e, "@")
		domain := e[at+1:]
		if at == 0 || !validDomainConstraint(domain) || (at > 0 && strings.HasPrefix(domain, ".")) {
			return nc, fmt.Errorf("invalid e-mail name constraint %q: use an address (ops@example.com), a host (example.com) or .example.com for every host below it", e)
		}
		nc.Emails = append(nc.Emails, e)
	}
	for _, u := range uris {
		if !validDomainConstraint(u) {
			return nc, fmt.Errorf("invalid URI name constraint %q: use the domain of the URIs' host, such as example.org or .example.org", u)
		}
		nc.URIs = append(nc.URIs, strings.ToLower(u))
	}
	return nc, nil
}

func validDomainConstraint(d string) bool {
	d = strings.TrimPrefix(d, ".")
	return d != "" && !strings.Contains(d, "*") && net.ParseIP(d) == nil && IsHostName(d) && !strings.HasSuffix(d, ".")
}

// apply puts the constraints on a CA template, critical.
func (nc NameConstraints) apply(t *x509.Certificate) {
	if nc.Empty() {
		return
	}
	t.PermittedDNSDomainsCritical = true
	t.PermittedDNSDomains = slices.Clone(nc.DNS)
	t.PermittedIPRanges = slices.Clone(nc.IPs)
	t.PermittedEmailAddresses = slices.Clone(nc.Emails)
	t.PermittedURIDomains = slices.Clone(nc.URIs)
}

// ConstraintsOf returns the permitted subtrees of a CA certificate.
func ConstraintsOf(c *x509.Certificate) NameConstraints {
	return NameConstraints{DNS: c.PermittedDNSDomains, IPs: c.PermittedIPRanges, Emails: c.PermittedEmailAddresses, URIs: c.PermittedURIDomains}
}

// Strings renders the constraints as TYPE:VALUE, as 'pki inspect' shows
// them.
func (nc NameConstraints) Strings() []string {
	var out []string
	for _, d := range nc.DNS {
		out = append(out, "DNS:"+d)
	}
	for _, n := range nc.IPs {
		out = append(out, "IP:"+n.String())
	}
	for _, e := range nc.Emails {
		out = append(out, "email:"+e)
	}
	for _, u := range nc.URIs {
		out = append(out, "URI:"+u)
	}
	return out
}

// checkNames refuses a certificate with a name that one of cas does not
// permit, naming the name and the constraint. It applies the stricter
// reading where verifiers differ (a host-only e-mail or URI constraint
// permits that host alone, as RFC 5280 says and OpenSSL checks), so that
// whatever it lets through, Go, OpenSSL and browsers all accept. Excluded
// subtrees, which kvsctl never writes, are checked too.
func checkNames(t *x509.Certificate, cas []*x509.Certificate) error {
	for _, ca := range cas {
		if err := checkNamesOf(t, ca); err != nil {
			return err
		}
	}
	return nil
}

func checkNamesOf(t *x509.Certificate, ca *x509.Certificate) error {
	refuse := func(kind, name string, permitted []string) error {
		return errorOf(ErrNameNotPermitted, "%s %s is outside the name constraints of CA %s, which permit %s %s only",
			kind, name, ca.Subject, kind, strings.Join(permitted, ", "))
	}
	excluded := func(kind, name, constraint string) error {
		return errorOf(ErrNameNotPermitted, "%s %s is excluded by the name constraint %s of CA %s", kind, name, constraint, ca.Subject)
	}
	for _, d := range t.DNSNames {
		if p := ca.PermittedDNSDomains; len(p) > 0 && !slices.ContainsFunc(p, func(c string) bool { return domainMatches(d, c, true) }) {
			return refuse("DNS name", d, p)
		}
		if i := slices.IndexFunc(ca.ExcludedDNSDomains, func(c string) bool { return domainMatches(d, c, true) }); i >= 0 {
			return excluded("DNS name", d, ca.ExcludedDNSDomains[i])
		}
	}
	for _, ip := range t.IPAddresses {
		if p := ca.PermittedIPRanges; len(p) > 0 && !slices.ContainsFunc(p, func(n *net.IPNet) bool { return ipMatches(ip, n) }) {
			return refuse("IP address", ip.String(), ipStrings(p))
		}
		if i := slices.IndexFunc(ca.ExcludedIPRanges, func(n *net.IPNet) bool { return ipMatches(ip, n) }); i >= 0 {
			return excluded("IP address", ip.String(), ca.ExcludedIPRanges[i].String())
		}
	}
	for _, e := range t.EmailAddresses {
		if p := ca.PermittedEmailAddresses; len(p) > 0 && !slices.ContainsFunc(p, func(c string) bool { return emailMatches(e, c) }) {
			return refuse("e-mail address", e, p)
		}
		if i := slices.IndexFunc(ca.ExcludedEmailAddresses, func(c string) bool { return emailMatches(e, c) }); i >= 0 {
			return excluded("e-mail address", e, ca.ExcludedEmailAddresses[i])
		}
	}
	for _, u := range t.URIs {
		if p := ca.PermittedURIDomains; len(p) > 0 && !slices.ContainsFunc(p, func(c string) bool { return uriMatches(u, c) }) {
			return refuse("URI", u.String(), p)
		}
		if i := slices.IndexFunc(ca.ExcludedURIDomains, func(c string) bool { return uriMatches(u, c) }); i >= 0 {
			return excluded("URI", u.String(), ca.ExcludedURIDomains[i])
		}
	}
	return nil
}

// domainMatches reports whether name lies in the subtree of constraint:
// "example.com" is the domain and, with below, every name under it;
// ".example.com" only the names under it.
func domainMatches(name, constraint string, below bool) bool {
	name, constraint = strings.ToLower(strings.TrimSuffix(name, ".")), strings.ToLower(constraint)
	if strings.HasPrefix(constraint, ".") {
		return strings.HasSuffix(name, constraint) && len(name) > len(constraint)
	}
	return name == constraint || (below && strings.HasSuffix(name, "."+constraint))
}

func ipMatches(ip net.IP, n *net.IPNet) bool {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return len(ip) == len(n.IP) && n.Contains(ip)
}

func emailMatches(addr, constraint string) bool {
	at := strings.LastIndex(addr, "@")
	if at < 0 {
		return false
	}
	if strings.Contains(constraint, "@") {
		cat := strings.LastIndex(constraint, "@")
		return addr[:at] == constraint[:cat] && strings.EqualFold(addr[at+1:], constraint[cat+1:])
	}
	return domainMatches(addr[at+1:], constraint, false)
}

func uriMatches(u *url.URL, constraint string) bool {
	host := u.Hostname()
	if host == "" || net.ParseIP(host) != nil {
		return false
	}
	return domainMatches(host, constraint, false)
}

func ipStrings(ns []*net.IPNet) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.String()
	}
	return out
}

// Permits reports whether a host (a DNS name or an IP address) is within
// the constraints.
func (nc NameConstraints) Permits(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return len(nc.IPs) == 0 || slices.ContainsFunc(nc.IPs, func(n *net.IPNet) bool { return ipMatches(ip, n) })
	}
	return len(nc.DNS) == 0 || slices.ContainsFunc(nc.DNS, func(c string) bool { return domainMatches(host, c, true) })
}
