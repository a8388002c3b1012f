package policy

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
)

func mustParse(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func leaf(cn string, f func(*x509.Certificate)) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	if f != nil {
		f(c)
	}
	return c
}

const clientAndEve = `identities:
  client:
    prefixes: [""]
    operations: [read, write, delete, list]
  eve:
    prefixes: ["eve/"]
    operations: [read, write]
`

// TestSANsDoNotBorrowIdentities: a certificate whose CN is eve and whose
// SAN spells "client" gets eve's rights, not client's (security finding 1;
// before typed identities every SAN counted as a name).
func TestSANsDoNotBorrowIdentities(t *testing.T) {
	p := mustParse(t, clientAndEve)
	u, _ := url.Parse("client")
	for name, c := range map[string]*x509.Certificate{
		"email SAN": leaf("eve", func(c *x509.Certificate) { c.EmailAddresses = []string{"client"} }),
		"DNS SAN":   leaf("eve", func(c *x509.Certificate) { c.DNSNames = []string{"client", "CLIENT"} }),
		"URI SAN":   leaf("eve", func(c *x509.Certificate) { c.URIs = []*url.URL{u} }),
	} {
		if id, err := p.Allow(Peer{Cert: c}, OpWrite, "client/secret"); !errors.Is(err, kvs.ErrForbidden) {
			t.Errorf("%s: eve writes outside eve/ (as %q)", name, id)
		}
		if id, err := p.Allow(Peer{Cert: c}, OpWrite, "eve/x"); err != nil || id != "eve" {
			t.Errorf("%s: eve/x: %q %v, want allowed as eve", name, id, err)
		}
	}
}

// TestTypedIdentities: dns:, email: and uri: entries match only SANs of
// their type; a bare name only the CN; the identity that allowed the
// request is returned.
func TestTypedIdentities(t *testing.T) {
	p := mustParse(t, `identities:
  "dns:web.example.com":
    prefixes: ["web/"]
    operations: [read]
  "email:Ops@Example.com":
    prefixes: ["ops/"]
    operations: [read, write]
  "uri:spiffe://example.org/api":
    prefixes: ["api/"]
    operations: [read, write, delete, list]
  "cn:with:colon":
    prefixes: ["c/"]
    operations: [read]
  plain:name:
    prefixes: ["p/"]
    operations: [read]
`)
	spiffe, _ := url.Parse("spiffe://example.org/api")
	for _, tc := range []struct {
		name   string
		cert   *x509.Certificate
		op     Op
		key    string
		wantID string // "" for denied
	}{
		{"DNS SAN", leaf("x", func(c *x509.Certificate) { c.DNSNames = []string{"WEB.example.com"} }), OpRead, "web/a", "dns:web.example.com"},
		{"DNS name as CN is not a DNS SAN", leaf("web.example.com", nil), OpRead, "web/a", ""},
		{"email SAN, any case", leaf("x", func(c *x509.Certificate) { c.EmailAddresses = []string{"ops@example.COM"} }), OpWrite, "ops/a", "email:Ops@Example.com"},
		{"email as CN", leaf("ops@example.com", nil), OpRead, "ops/a", ""},
		{"email as DNS SAN", leaf("x", func(c *x509.Certificate) { c.DNSNames = []string{"ops@example.com"} }), OpRead, "ops/a", ""},
		{"URI SAN", leaf("x", func(c *x509.Certificate) { c.URIs = []*url.URL{spiffe} }), OpDelete, "api/a", "uri:spiffe://example.org/api"},
		{"URI as CN", leaf("spiffe://example.org/api", nil), OpRead, "api/a", ""},
		{"cn: prefix", leaf("with:colon", nil), OpRead, "c/a", "cn:with:colon"},
		{"a bare name with a colon is a CN", leaf("plain:name", nil), OpRead, "p/a", "plain:name"},
		{"DNS SAN outside its prefix", leaf("x", func(c *x509.Certificate) { c.DNSNames = []string{"web.example.com"} }), OpRead, "ops/a", ""},
		{"DNS SAN without the operation", leaf("x", func(c *x509.Certificate) { c.DNSNames = []string{"web.example.com"} }), OpWrite, "web/a", ""},
	} {
		id, err := p.Allow(Peer{Cert: tc.cert}, tc.op, tc.key)
		switch {
		case tc.wantID == "" && err == nil:
			t.Errorf("%s: allowed as %q, want denied", tc.name, id)
		case tc.wantID != "" && (err != nil || id != tc.wantID):
			t.Errorf("%s: %q, %v; want allowed as %q", tc.name, id, err, tc.wantID)
		}
	}
}

// TestIssuerScoping: an entry with an issuer matches only certificates of
// that CA, by fingerprint or by subject; without one any CA's certificate
// carrying the name matches (security finding 3).
func TestIssuerScoping(t *testing.T) {
	ca1 := &x509.Certificate{Raw: []byte("ca one"), Subject: pkix.Name{CommonName: "CA 1"}}
	ca2 := &x509.Certificate{Raw: []byte("ca two"), Subject: pkix.Name{CommonName: "CA 2"}}
	sum := sha256.Sum256(ca1.Raw)
	var fp []string
	for _, b := range sum {
		fp = append(fp, fmt.Sprintf("%02X", b))
	}
	for _, issuer := range []string{"sha256:" + strings.Join(fp, ":"), "SHA256:" + strings.Join(fp, ""), "CN=CA 1"} {
		p := mustParse(t, fmt.Sprintf("identities:\n  client:\n    issuer: %q\n    prefixes: [\"\"]\n    operations: [read]\n", issuer))
		c := leaf("client", nil)
		if _, err := p.Allow(Peer{Cert: c, Issuer: ca1}, OpRead, "k"); err != nil {
			t.Errorf("issuer %s: CA 1's client refused: %v", issuer, err)
		}
		if _, err := p.Allow(Peer{Cert: c, Issuer: ca2}, OpRead, "k"); !errors.Is(err, kvs.ErrForbidden) {
			t.Errorf("issuer %s: CA 2's client got CA 1's client's rights", issuer)
		}
	}
	p := mustParse(t, "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read]\n")
	if _, err := p.Allow(Peer{Cert: leaf("client", nil), Issuer: ca2}, OpRead, "k"); err != nil {
		t.Errorf("without an issuer, any CA's client matches: %v", err)
	}
	if _, err := Parse([]byte("identities:\n  client:\n    issuer: \"sha256:abcd\"\n    prefixes: [\"\"]\n    operations: [read]\n")); err == nil {
		t.Error("a short fingerprint was accepted")
	}
}

// TestKeylessOperations: metrics and health need their operation and no
// prefix.
func TestKeylessOperations(t *testing.T) {
	p := mustParse(t, "identities:\n  prom:\n    operations: [metrics]\n  lb:\n    operations: [health]\n  client:\n    prefixes: [\"\"]\n    operations: [read]\n")
	for _, tc := range []struct {
		cn string
		op Op
		ok bool
	}{{"prom", OpMetrics, true}, {"prom", OpHealth, false}, {"lb", OpHealth, true}, {"lb", OpRead, false}, {"client", OpMetrics, false}, {"client", OpHealth, false}} {
		_, err := p.Allow(Peer{Cert: leaf(tc.cn, nil)}, tc.op, "")
		if (err == nil) != tc.ok {
			t.Errorf("%s %s: %v, want allowed=%v", tc.cn, tc.op, err, tc.ok)
		}
	}
}

// TestParseRefusals: what a typo could turn into wider or narrower access
// is an error, including a second YAML document (security finding 13,
// which was silently ignored before).
func TestParseRefusals(t *testing.T) {
	for name, text := range map[string]string{
		"second document":       "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read]\n---\nidentities:\n  eve:\n    prefixes: [\"\"]\n    operations: [read, write]\n",
		"empty second document": "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read]\n---\n",
		"unknown operation":     "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [admin-everything]\n",
		"unknown field":         "identities:\n  client:\n    prefix: [\"\"]\n    operations: [read]\n",
		"no prefixes":           "identities:\n  client:\n    operations: [read]\n",
		"twice, two spellings":  "identities:\n  \"dns:a.example\":\n    prefixes: [\"\"]\n    operations: [read]\n  \"dns:A.example.\":\n    prefixes: [\"\"]\n    operations: [write]\n",
		"empty":                 "",
		"no identities":         "identities: {}\n",
	} {
		if _, err := Parse([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
