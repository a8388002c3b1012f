package kvs

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

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

// ErrForbidden is wrapped when a policy denies a request.
var ErrForbidden = errors.New("kvs: forbidden by policy")

// PolicyFile is the on-disk form of a policy (YAML or JSON):
//
//	identities:
//	  client:                 # a certificate's subject CN or one of its SANs
//	    prefixes: [""]        # "" allows every key
//	    operations: [read, write, delete, list]
//	  reporter:
//	    prefixes: ["metrics/"]
//	    operations: [read, list]
type PolicyFile struct {
	Identities map[string]PolicyRule `json:"identities" yaml:"identities"`
}

// PolicyRule is what one identity may do.
type PolicyRule struct {
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

// ParsePolicy parses a YAML or JSON policy (JSON is YAML). Unknown fields,
// unknown operations and an empty identity list are errors: a typo must not
// silently widen or narrow access.
func ParsePolicy(data []byte) (*Policy, error) {
	var pf PolicyFile
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
	pf := PolicyFile{Identities: map[string]PolicyRule{}}
	for id, r := range p.rules {
		pr := PolicyRule{Prefixes: r.prefixes}
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
		return fmt.Errorf("%w: identity %q is not in the policy", ErrForbidden, c.Subject.CommonName)
	}
	return fmt.Errorf("%w: %q may not %s %q", ErrForbidden, c.Subject.CommonName, op, key)
}

// PolicyHolder serves the current policy from a file and reloads it. A nil
// holder, or one without a file, means no policy.
type PolicyHolder struct {
	path   string
	log    *slog.Logger
	cur    atomic.Pointer[Policy]
	stamp  atomic.Pointer[fileStamp]
	failed atomic.Pointer[fileStamp]
}

// LoadPolicy reads a policy file; the error says what is wrong with it.
func LoadPolicy(path string, logger *slog.Logger) (*PolicyHolder, error) {
	h := &PolicyHolder{path: path, log: orDiscard(logger)}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// Current returns the policy in force (nil: everything allowed).
func (h *PolicyHolder) Current() *Policy {
	if h == nil {
		return nil
	}
	return h.cur.Load()
}

// Reload re-reads the file; on error the previous policy stays in force.
func (h *PolicyHolder) Reload() error {
	st := stampFiles([]string{h.path})
	data, err := os.ReadFile(h.path)
	if err == nil {
		var p *Policy
		if p, err = ParsePolicy(data); err == nil {
			h.cur.Store(p)
			h.stamp.Store(&st)
			h.log.Info("policy loaded", "file", filepath.Clean(h.path), "identities", len(p.rules))
			return nil
		}
	}
	err = fmt.Errorf("policy %s: %w", h.path, err)
	h.failed.Store(&st)
	if h.cur.Load() != nil {
		h.log.Error("policy reload failed, keeping the previous policy", "err", err)
	}
	return err
}

func (h *PolicyHolder) changed() bool {
	st := stampFiles([]string{h.path})
	if f := h.failed.Load(); f != nil && *f == st {
		return false
	}
	cur := h.stamp.Load()
	return cur == nil || *cur != st
}

// Watch polls the policy file and reloads it when it changes, until ctx ends.
func (h *PolicyHolder) Watch(ctx context.Context, interval time.Duration) {
	if h == nil {
		return
	}
	watch(ctx, interval, h.changed, func() { _ = h.Reload() })
}
