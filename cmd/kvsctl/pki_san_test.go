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

// TestPkiIssueTypedIdentities: 'pki issue' takes --email and --uri
// (repeatable) for the typed identities a policy matches, and refuses a
// malformed one as a usage error before anything is written.
func TestPkiIssueTypedIdentities(t *testing.T) {
	f := newFixture(t)
	dir := string(f.dir)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // substrings of stdout (code 0) or stderr
	}{
		{"email and URIs", []string{"client", "svc", "--email", "svc@example.org", "--uri", "spiffe://example.org/web", "--uri", "urn:example:svc"},
			0, []string{`issued client certificate "svc"`, "SANs     email:svc@example.org, URI:spiffe://example.org/web, URI:urn:example:svc"}},
		{"email and URI as JSON", []string{"client", "svc2", "--email", "svc2@example.org", "--uri", "spiffe://example.org/svc2", "--json"},
			0, []string{`"emails": [`, `"svc2@example.org"`, `"uris": [`, `"spiffe://example.org/svc2"`}},
		{"email without @", []string{"client", "bad1", "--email", "nobody"}, exitUsage, []string{`kvsctl: invalid e-mail address "nobody"`}},
		{"email with a space", []string{"client", "bad2", "--email", "a b@example.org"}, exitUsage, []string{`invalid e-mail address "a b@example.org"`}},
		{"URI without a scheme", []string{"client", "bad3", "--uri", "example.org/web"}, exitUsage, []string{`kvsctl: invalid URI "example.org/web"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, f.root)
			code, out, errs := runPKI(t, append(append([]string{"pki", "issue"}, tc.args...), "--dir", dir)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			got := out
			if code != 0 {
				got = errs
				if diffs := diffSnapshots(before, snapshot(t, f.root)); len(diffs) > 0 {
					t.Errorf("files changed: %v", diffs)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}
