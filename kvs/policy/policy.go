package policy

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/kvsctl/kvsctl/kvs"

	"gopkg.in/yaml.v3"
)

// Op is an operation a policy can allow.
type Op string

// The operations of the API.
const (
	OpRead   Op = "read"
	OpWrite  Op = "write"
	OpDelete Op = "delete"
	OpList   Op = "list"
)

// File is the on-disk form of a policy (YAML or JSON):
//
//	identities:
//	  client:                 # a certificate's subject CN or one of its SANs
//	    prefixes: [""]        # "" allows every key
//	    operations: [read, write, delete, list]
//	  reporter:
//	    prefixes: ["metrics/"]
//	    operations: [read, list]
type File struct {
	Identities map[string]Rule `json:"identities" yaml:"identities"`
}

// Rule is what one identity may do.
type Rule struct {
	Prefixes   []string `json:"prefixes" yaml:"prefixes"`
	Operations []Op     `json:"operations" yaml:"operations"`
}

// Policy is a parsed, immutable policy. A nil *Policy allows everything.
type Policy struct {
	rules map[string]rule
}

type rule struct {
	prefixes []string
	ops      map[Op]bool
}

// Parse parses a YAML or JSON policy (JSON is YAML). Unknown fields,
// unknown operations and an empty identity list are errors: a typo must not
// silently widen or narrow access.
func Parse(data []byte) (*Policy, error) {
	var pf File
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&pf); err != nil {
		if strings.TrimSpace(string(data)) == "" {
			return nil, errors.New("policy is empty")
		}
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	if len(pf.Identities) == 0 {
		return nil, errors.New("policy lists no identities: everyone would be denied")
	}
	p := &Policy{rules: make(map[string]rule, len(pf.Identities))}
	for id, r := range pf.Identities {
		if id == "" {
			return nil, errors.New("policy has an empty identity")
		}
		if len(r.Prefixes) == 0 {
			return nil, fmt.Errorf("policy identity %q lists no prefixes (use \"\" for all keys)", id)
		}
		ru := rule{prefixes: r.Prefixes, ops: map[Op]bool{}}
		for _, op := range r.Operations {
			switch op {
			case OpRead, OpWrite, OpDelete, OpList:
				ru.ops[op] = true
			default:
				return nil, fmt.Errorf("policy identity %q: unknown operation %q (use read, write, delete, list)", id, op)
			}
		}
		p.rules[id] = ru
	}
	return p, nil
}

// MarshalJSON renders the policy for diagnostics.
func (p *Policy) MarshalJSON() ([]byte, error) {
	pf := File{Identities: map[string]Rule{}}
	for id, r := range p.rules {
		pr := Rule{Prefixes: r.prefixes}
		for op := range r.ops {
			pr.Operations = append(pr.Operations, op)
		}
		pf.Identities[id] = pr
	}
	return json.Marshal(pf)
}

// Identities returns the names a certificate can be matched by: its subject
// common name, then its DNS, e-mail and URI SANs.
func Identities(c *x509.Certificate) []string {
	ids := make([]string, 0, 1+len(c.DNSNames)+len(c.EmailAddresses)+len(c.URIs))
	if c.Subject.CommonName != "" {
		ids = append(ids, c.Subject.CommonName)
	}
	ids = append(ids, c.DNSNames...)
	ids = append(ids, c.EmailAddresses...)
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	return ids
}

// Allow reports whether the certificate may do op on key (for OpList, key is
// the list prefix: it must lie inside an allowed prefix). A nil policy allows
// everything; an identity the policy does not name is denied.
func (p *Policy) Allow(c *x509.Certificate, op Op, key string) error {
	if p == nil {
		return nil
	}
	known := false
	for _, id := range Identities(c) {
		r, ok := p.rules[id]
		if !ok {
			continue
		}
		known = true
		if !r.ops[op] {
			continue
		}
		for _, pre := range r.prefixes {
			if strings.HasPrefix(key, pre) {
				return nil
			}
		}
	}
	if !known {
		return fmt.Errorf("%w: identity %q is not in the policy", kvs.ErrForbidden, c.Subject.CommonName)
	}
	return fmt.Errorf("%w: %q may not %s %q", kvs.ErrForbidden, c.Subject.CommonName, op, key)
}

// Len returns the number of identities the policy names.
func (p *Policy) Len() int { return len(p.rules) }
