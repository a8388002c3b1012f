package policy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
)

// FuzzParsePolicy feeds arbitrary bytes to ParsePolicy, the parser of the
// --policy file. It must not panic; a policy it accepts must render to JSON
// (MarshalJSON) that parses back to a policy making the same decisions. The
// seed corpus is in testdata/fuzz/FuzzParsePolicy.
func FuzzParsePolicy(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatalf("ParsePolicy returned a policy and an error: %v", err)
			}
			return
		}
		if p == nil || p.Len() == 0 {
			t.Fatal("ParsePolicy accepted a policy with no identities")
		}
		js, err := p.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON: %v", err)
		}
		if !yamlPrintable(string(js)) {
			// encoding/json leaves DEL, C1 controls and U+FFFE/U+FFFF raw,
			// and YAML (hence ParsePolicy) refuses them unescaped: a policy
			// naming such bytes renders fine for diagnostics but does not
			// re-parse. Nothing to compare.
			return
		}
		q, err := Parse(js)
		if err != nil {
			t.Fatalf("the policy's own JSON does not parse: %v\n%s", err, js)
		}
		for _, e := range p.entries {
			c := certFor(e.id)
			keys := []string{"", "x", "\xff"}
			for _, pre := range e.prefixes {
				keys = append(keys, pre, pre+"x")
				if len(pre) > 0 {
					keys = append(keys, pre[:len(pre)-1])
				}
			}
			for _, op := range append(Ops, "other") {
				for _, k := range keys {
					_, a := p.Allow(Peer{Cert: c}, op, k)
					_, b := q.Allow(Peer{Cert: c}, op, k)
					if (a == nil) != (b == nil) {
						t.Fatalf("identity %q %s %q: policy says %v, its JSON says %v\n%s", e.name, op, k, a, b, js)
					}
				}
			}
		}
		stranger := &x509.Certificate{Subject: pkix.Name{CommonName: "\x00not-an-identity"}}
		if _, ok := p.byID[Identity{KindCN, stranger.Subject.CommonName}]; !ok {
			if _, err := p.Allow(Peer{Cert: stranger}, OpRead, "x"); err == nil {
				t.Fatal("an identity not in the policy was allowed")
			}
		}
	})
}

// certFor is a certificate that carries id, for the check that a policy
// and its JSON decide the same.
func certFor(id Identity) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: "x"}}
	switch id.Kind {
	case KindDNS:
		c.DNSNames = []string{id.Value}
	case KindEmail:
		c.EmailAddresses = []string{id.Value}
	case KindURI:
		if u, err := url.Parse(id.Value); err == nil {
			c.URIs = []*url.URL{u}
		}
	default:
		c.Subject.CommonName = id.Value
	}
	return c
}

// yamlPrintable reports whether s holds only characters YAML 1.2 allows
// unescaped (its c-printable set).
func yamlPrintable(s string) bool {
	for _, r := range s {
		switch {
		case r == 0x9, r == 0xA, r == 0xD, r >= 0x20 && r <= 0x7E, r == 0x85,
			r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}
