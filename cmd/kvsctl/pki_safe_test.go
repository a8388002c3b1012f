package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/pki"
)

// TestPkiTextOutputQuotesControlCharacters: a CSR's subject and SANs are
// outside input. Printed raw, an escape sequence or a carriage return in
// them rewrites the operator's terminal (here "RED" in red, then "FAKE"
// over the start of the line) and U+202E reverses what follows. Every pki
// text output, on stdout and stderr, shows them quoted; JSON keeps the
// exact strings.
func TestPkiTextOutputQuotesControlCharacters(t *testing.T) {
	f := newFixture(t)
	dir := string(f.dir)
	const cn = "term\x1b[31mRED\x1b[0m\rFAKE"
	const org = "\u202eevil"
	const email = "eve\x1b[2J@example.org"
	subject := pkix.Name{CommonName: cn, Organization: []string{org}}
	csr := f.write(t, "term.csr", csrPEM(t, &x509.CertificateRequest{Subject: subject, EmailAddresses: []string{email}}), 0o644)
	crt := f.dir.IssuedCert("term")
	raw := []string{"\x1b", "\r", "\u202e"}

	quotedCN := `term\x1b[31mRED\x1b[0m\rFAKE`
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		shows string // what stdout and stderr show instead, escaped
	}{
		{"sign", []string{"pki", "sign", csr, "--profile", "client", "--name", "term", "--dir", dir}, 0, quotedCN},
		{"inspect the CSR", []string{"pki", "inspect", csr}, 0, quotedCN},
		{"inspect the certificate", []string{"pki", "inspect", crt}, 0, quotedCN},
		{"list", []string{"pki", "list", "--dir", dir}, 0, `email:"eve\x1b[2J@example.org"`},
		{"verify", []string{"pki", "verify", crt, "--dir", dir, "--usage", "client"}, 0, quotedCN},
		{"verify failing", []string{"pki", "verify", crt, "--dir", dir, "--usage", "server"}, 1, quotedCN},
		{"renew", []string{"pki", "renew", crt, "--reuse-key", "--dir", dir}, 0, quotedCN},
		{"trust install of a leaf", []string{"pki", "trust", "install", "--ca", crt, "--dir", dir}, 1, quotedCN},
		{"revoke", []string{"pki", "revoke", crt, "--dir", dir}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runPKI(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %q\nstderr: %q", code, tc.code, out, errs)
			}
			for _, r := range raw {
				if strings.Contains(out, r) {
					t.Errorf("stdout holds a raw %q:\n%q", r, out)
				}
				if strings.Contains(errs, r) {
					t.Errorf("stderr holds a raw %q:\n%q", r, errs)
				}
			}
			if !strings.Contains(out+errs, tc.shows) {
				t.Errorf("output does not show %s:\nstdout: %s\nstderr: %s", tc.shows, out, errs)
			}
		})
	}

	// JSON is exact.
	var rec struct {
		pki.Record
	}
	out := mustRun(t, "pki", "sign", csr, "--profile", "client", "--name", "term2", "--allow-san", "--dir", dir, "--json")
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.CommonName != cn || !strings.Contains(rec.Subject, cn) || !strings.Contains(rec.Subject, org) || len(rec.Emails) != 1 || rec.Emails[0] != email {
		t.Errorf("sign --json changed the strings: %+v", rec.Record)
	}
	var ins pki.Inspection
	if err := json.Unmarshal([]byte(mustRun(t, "pki", "inspect", "--json", csr)), &ins); err != nil {
		t.Fatal(err)
	}
	if len(ins.CSRs) != 1 || ins.CSRs[0].Subject != rec.Subject || len(ins.CSRs[0].Emails) != 1 || ins.CSRs[0].Emails[0] != email {
		t.Errorf("inspect --json changed the strings: %+v", ins.CSRs)
	}
}

// TestSafeText: safeText escapes control and bidirectional formatting
// characters and invalid UTF-8 in place, and keeps line breaks and
// everything printable.
func TestSafeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain: CN=alice, é", "plain: CN=alice, é"},
		{"two\nlines", "two\nlines"},
		{"CN=term\x1b[31mRED\rFAKE", `CN=term\x1b[31mRED\rFAKE`},
		{"a\u202eb\u2066c", `a\u202eb\u2066c`},
		{"tab\there", `tab\there`},
		{"bad \xff byte", `bad \xff byte`},
	} {
		if got := safeText(tc.in); got != tc.want {
			t.Errorf("safeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
