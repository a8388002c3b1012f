package policy

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kvsctl/kvsctl/kvs"
)

// Op is an operation a policy can allow.
type Op string

// The operations of the API. Read, write, delete and list apply to key
// prefixes; metrics and health are the server's /metrics and /healthz,
// which hold no key and ignore the prefixes; admin is GET /v1/snapshot,
// a copy of every key, whatever the prefixes say.
const (
	OpRead    Op = "read"
	OpWrite   Op = "write"
	OpDelete  Op = "delete"
	OpList    Op = "list"
	OpMetrics Op = "metrics"
	OpHealth  Op = "health"
	OpAdmin   Op = "admin"
)

// Ops lists every operation, in the order they are documented.
var Ops = []Op{OpRead, OpWrite, OpDelete, OpList, OpMetrics, OpHealth, OpAdmin}

// keyless reports whether op is not about keys, so prefixes do not apply.
func keyless(op Op) bool { return op == OpMetrics || op == OpHealth || op == OpAdmin }

// File is the on-disk form of a policy (YAML or JSON):
//
//	identities:
//	  client:                      # a bare name is the subject common name
//	    prefixes: [""]             # "" allows every key
//	    operations: [read, write, delete, list]
//	  "dns:web.example.com":       # dns:, email: and uri: match only SANs of that type
//	    prefixes: ["web/"]
//	    operations: [read]
//	  "uri:spiffe://example.org/ns/prod/sa/api":
//	    issuer: "sha256:3A:1F:..."  # only when issued by this CA (or a subject: "CN=kvsctl CA,O=...")
//	    prefixes: ["api/"]
//	    operations: [read, write]
type File struct {
	Identities map[string]Rule `json:"identities" yaml:"identities"`
}

// Rule is what one identity may do.
type Rule struct {
	// Issuer, when set, limits the identity to certificates issued by one
	// CA: "sha256:" and the CA certificate's SHA-256 fingerprint (hex,
	// colons optional), or the CA's subject as Go prints it
	// ("CN=kvsctl CA,O=kvsctl local CA"). Without it, any CA the server
	// trusts can issue a certificate with this identity.
	Issuer     string   `json:"issuer,omitempty" yaml:"issuer,omitempty"`
	Prefixes   []string `json:"prefixes" yaml:"prefixes"`
	Operations []Op     `json:"operations" yaml:"operations"`
}

// Kind is the part of a certificate an identity is matched against.
type Kind string

// The kinds of identities.
const (
	KindCN    Kind = "cn"    // the subject common name (a bare name in the file)
	KindDNS   Kind = "dns"   // a DNS SAN, compared case-insensitively
	KindEmail Kind = "email" // an e-mail SAN, compared case-insensitively
	KindURI   Kind = "uri"   // a URI SAN (a SPIFFE ID, say), compared exactly
)

// Identity is one typed name in a policy.
type Identity struct {
	Kind  Kind
	Value string
}

// String is the identity as the policy file writes it: a bare name for a
// common name, kind:value otherwise.
func (id Identity) String() string {
	if id.Kind == KindCN {
		return id.Value
	}
	return string(id.Kind) + ":" + id.Value
}

// ParseIdentity reads an identity of a policy file: "dns:NAME",
// "email:ADDR" and "uri:URI" are SANs of that type, "cn:NAME" and any
// other name (even one with a colon) are the subject common name.
func ParseIdentity(s string) Identity {
	for _, k := range []Kind{KindDNS, KindEmail, KindURI, KindCN} {
		if v, ok := strings.CutPrefix(s, string(k)+":"); ok && v != "" {
			return normalize(Identity{k, v})
		}
	}
	return Identity{KindCN, s}
}

func normalize(id Identity) Identity {
	if id.Kind == KindDNS || id.Kind == KindEmail {
		id.Value = strings.ToLower(strings.TrimSuffix(id.Value, "."))
	}
	return id
}

// Of returns the typed identities a certificate carries: its subject
// common name and every DNS, e-mail and URI SAN, each with its kind.
func Of(c *x509.Certificate) []Identity {
	ids := make([]Identity, 0, 1+len(c.DNSNames)+len(c.EmailAddresses)+len(c.URIs))
	if c.Subject.CommonName != "" {
		ids = append(ids, Identity{KindCN, c.Subject.CommonName})
	}
	for _, d := range c.DNSNames {
		ids = append(ids, normalize(Identity{KindDNS, d}))
	}
	for _, e := range c.EmailAddresses {
		ids = append(ids, normalize(Identity{KindEmail, e}))
	}
	for _, u := range c.URIs {
		ids = append(ids, Identity{KindURI, u.String()})
	}
	return ids
}

// Policy is a parsed, immutable policy. A nil *Policy allows everything.
type Policy struct {
	entries []entry // sorted by identity, for stable decisions and output
	byID    map[Identity][]int
}

type entry struct {
	id       Identity
	name     string // as written in the file
	issuer   issuerMatch
	prefixes []string
	ops      map[Op]bool
}

// issuerMatch is a parsed Rule.Issuer; the zero value matches any CA.
type issuerMatch struct {
	text        string
	fingerprint []byte // SHA-256 of the CA certificate
	subject     string
}

func parseIssuer(s string) (issuerMatch, error) {
	m := issuerMatch{text: s}
	if s == "" {
		return m, nil
	}
	if h, ok := strings.CutPrefix(strings.ToLower(s), "sha256:"); ok {
		b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
		if err != nil || len(b) != sha256.Size {
			return m, fmt.Errorf("issuer %q: want sha256: and 64 hex digits (the CA certificate's SHA-256 fingerprint)", s)
		}
		m.fingerprint = b
		return m, nil
	}
	m.subject = s
	return m, nil
}

func (m issuerMatch) matches(issuer *x509.Certificate) bool {
	switch {
	case m.text == "":
		return true
	case issuer == nil:
		return false
	case m.fingerprint != nil:
		sum := sha256.Sum256(issuer.Raw)
		return bytes.Equal(sum[:], m.fingerprint)
	}
	return issuer.Subject.String() == m.subject
}

// Parse parses a YAML or JSON policy (JSON is YAML). Unknown fields,
// unknown operations, an identity without prefixes, two entries for one
// identity, a second YAML document and an empty identity list are errors:
// a typo must not silently widen or narrow access.
func Parse(data []byte) (*Policy, error) {
	var pf File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&pf); err != nil {
		if strings.TrimSpace(string(data)) == "" || errors.Is(err, io.EOF) {
			return nil, errors.New("policy is empty")
		}
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse policy: the file holds more than one YAML document (a second one after ---): put every identity in the first")
	}
	if len(pf.Identities) == 0 {
		return nil, errors.New("policy lists no identities: everyone would be denied")
	}
	names := make([]string, 0, len(pf.Identities))
	for name := range pf.Identities {
		names = append(names, name)
	}
	slices.Sort(names)
	p := &Policy{byID: map[Identity][]int{}}
	for _, name := range names {
		r := pf.Identities[name]
		if name == "" {
			return nil, errors.New("policy has an empty identity")
		}
		keyed := slices.ContainsFunc(r.Operations, func(op Op) bool { return !keyless(op) })
		if len(r.Prefixes) == 0 && keyed {
			return nil, fmt.Errorf("policy identity %q lists no prefixes (use \"\" for all keys)", name)
		}
		e := entry{id: ParseIdentity(name), name: name, prefixes: r.Prefixes, ops: map[Op]bool{}}
		var err error
		if e.issuer, err = parseIssuer(r.Issuer); err != nil {
			return nil, fmt.Errorf("policy identity %q: %w", name, err)
		}
		for _, op := range r.Operations {
			if !slices.Contains(Ops, op) {
				return nil, fmt.Errorf("policy identity %q: unknown operation %q (use %s)", name, op, opList())
			}
			e.ops[op] = true
		}
		p.byID[e.id] = append(p.byID[e.id], len(p.entries))
		p.entries = append(p.entries, e)
	}
	for id, idx := range p.byID {
		if len(idx) > 1 {
			return nil, fmt.Errorf("policy names identity %s more than once (as %q and %q)", id, p.entries[idx[0]].name, p.entries[idx[1]].name)
		}
	}
	return p, nil
}

func opList() string {
	s := make([]string, len(Ops))
	for i, op := range Ops {
		s[i] = string(op)
	}
	return strings.Join(s, ", ")
}

// MarshalJSON renders the policy for diagnostics.
func (p *Policy) MarshalJSON() ([]byte, error) {
	pf := File{Identities: map[string]Rule{}}
	for _, e := range p.entries {
		r := Rule{Issuer: e.issuer.text, Prefixes: e.prefixes}
		for _, op := range Ops {
			if e.ops[op] {
				r.Operations = append(r.Operations, op)
			}
		}
		pf.Identities[e.name] = r
	}
	return json.Marshal(pf)
}

// Len returns the number of identities the policy names.
func (p *Policy) Len() int { return len(p.entries) }

// Peer is the client a decision is about: its verified certificate and the
// CA that issued it (the next certificate of the verified chain; the
// certificate itself when it is pinned self-signed).
type Peer struct {
	Cert   *x509.Certificate
	Issuer *x509.Certificate
}

// Allow decides whether peer may do op on key (for OpList, key is the list
// prefix: it must lie inside an allowed prefix). A certificate matches an
// entry by its subject common name (a bare name) or by a SAN of the
// entry's type (dns:, email:, uri:), and only when the entry's issuer, if
// any, issued it; its rights are those of every entry it matches. Allow
// returns the identity whose entry allowed the request, as the policy
// writes it. A nil policy allows everything, as the certificate's common
// name. The error wraps kvs.ErrForbidden.
func (p *Policy) Allow(peer Peer, op Op, key string) (string, error) {
	c := peer.Cert
	if p == nil {
		return c.Subject.CommonName, nil
	}
	var matched []string
	for _, id := range Of(c) {
		for _, i := range p.byID[id] {
			e := &p.entries[i]
			if !e.issuer.matches(peer.Issuer) {
				continue
			}
			matched = append(matched, e.name)
			if !e.ops[op] {
				continue
			}
			if keyless(op) {
				return e.name, nil
			}
			for _, pre := range e.prefixes {
				if strings.HasPrefix(key, pre) {
					return e.name, nil
				}
			}
		}
	}
	if len(matched) == 0 {
		return "", fmt.Errorf("%w: identity %q is not in the policy", kvs.ErrForbidden, c.Subject.CommonName)
	}
	for i, m := range matched {
		matched[i] = strconv.Quote(m)
	}
	if keyless(op) {
		return "", fmt.Errorf("%w: %s may not use %s", kvs.ErrForbidden, strings.Join(matched, ", "), op)
	}
	return "", fmt.Errorf("%w: %s may not %s %q", kvs.ErrForbidden, strings.Join(matched, ", "), op, key)
}

// AllowAnywhere decides whether peer may do op on the keys of at least one
// prefix (a lease is granted before it has keys: it needs write somewhere).
// It returns the identity that allowed it, as Allow does; a nil policy
// allows everything.
func (p *Policy) AllowAnywhere(peer Peer, op Op) (string, error) {
	c := peer.Cert
	if p == nil {
		return c.Subject.CommonName, nil
	}
	matched := false
	for _, id := range Of(c) {
		for _, i := range p.byID[id] {
			e := &p.entries[i]
			if !e.issuer.matches(peer.Issuer) {
				continue
			}
			matched = true
			if e.ops[op] && (keyless(op) || len(e.prefixes) > 0) {
				return e.name, nil
			}
		}
	}
	if !matched {
		return "", fmt.Errorf("%w: identity %q is not in the policy", kvs.ErrForbidden, c.Subject.CommonName)
	}
	return "", fmt.Errorf("%w: %q may not %s anywhere", kvs.ErrForbidden, c.Subject.CommonName, op)
}
