package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
)

// TestPkiOutputShowsEverySAN: every pki output that shows a certificate
// shows all of its SANs, each with its type, in text and in JSON. A SAN
// that no output shows is a right nobody reviewed.
func TestPkiOutputShowsEverySAN(t *testing.T) {
	f := newFixture(t)
	dir := string(f.dir)
	u, _ := url.Parse("spiffe://example.org/eve")
	csr := f.write(t, "eve.csr", csrPEM(t, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "eve"},
		DNSNames: []string{"eve.example"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.9")},
		EmailAddresses: []string{"eve@example.org"}, URIs: []*url.URL{u},
	}), 0o644)
	typed := []string{"DNS:eve.example", "IP:10.0.0.9", "email:eve@example.org", "URI:spiffe://example.org/eve"}
	inJSON := []string{`"eve.example"`, `"10.0.0.9"`, `"emails": [`, `"eve@example.org"`, `"uris": [`, `"spiffe://example.org/eve"`}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"sign", []string{"pki", "sign", csr, "--profile", "client", "--dir", dir}, typed},
		{"sign --json", []string{"pki", "sign", csr, "--profile", "client", "--name", "eve2", "--allow-san", "--dir", dir, "--json"}, inJSON}, // the same SANs as eve
		{"list", []string{"pki", "list", "--dir", dir}, append([]string{"SANS"}, typed...)},
		{"list --json", []string{"pki", "list", "--dir", dir, "--json"}, inJSON},
		{"inspect", []string{"pki", "inspect", f.dir.IssuedCert("eve")}, typed},
		{"renew", []string{"pki", "renew", f.dir.IssuedCert("eve"), "--reuse-key", "--dir", dir}, typed},
		{"renew --json", []string{"pki", "renew", f.dir.IssuedCert("eve2"), "--reuse-key", "--dir", dir, "--json"}, inJSON},
		{"issue", []string{"pki", "issue", "server", "web", "--hosts", "web.example,10.1.1.1", "--dir", dir}, []string{"DNS:web.example", "IP:10.1.1.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustRun(t, tc.args...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
