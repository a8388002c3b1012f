package pki

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRecordKeepsEverySAN: the inventory records every SAN of a signed
// certificate, of every type, so a SAN that grants an identity (an e-mail
// address or a URI a policy matches) is never invisible in 'pki list'.
func TestRecordKeepsEverySAN(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("spiffe://example.org/eve")
	for _, tc := range []struct {
		name string
		csr  x509.CertificateRequest
		key  string // the inventory.json field
		want []string
	}{
		{"dns", x509.CertificateRequest{DNSNames: []string{"eve.example"}}, "hosts", []string{"eve.example"}},
		{"ip", x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("10.0.0.9")}}, "hosts", []string{"10.0.0.9"}},
		{"email", x509.CertificateRequest{EmailAddresses: []string{"eve@example.org"}}, "emails", []string{"eve@example.org"}},
		{"uri", x509.CertificateRequest{URIs: []*url.URL{u}}, "uris", []string{"spiffe://example.org/eve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newPKI(t, false)
			tc.csr.Subject = pkix.Name{CommonName: "eve"}
			if _, err := SignCSR(context.Background(), SignOptions{Dir: d, CSRFile: writeCSR(t, &tc.csr, mustKey(t)), Profile: ProfileClient}); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(d.Inventory())
			if err != nil {
				t.Fatal(err)
			}
			var inv struct {
				Certificates []map[string]any `json:"certificates"`
			}
			if err := json.Unmarshal(data, &inv); err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(inv.Certificates, func(r map[string]any) bool { return r["name"] == "eve" })
			if i < 0 {
				t.Fatalf("eve not in the inventory:\n%s", data)
			}
			var got []string
			if v, ok := inv.Certificates[i][tc.key].([]any); ok {
				for _, s := range v {
					got = append(got, s.(string))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("inventory %q = %q, want %q; the record: %v", tc.key, got, tc.want, inv.Certificates[i])
			}
		})
	}
}

// dirFiles lists every file under d with its content (a symbolic link with
// its target), to show that a refused operation wrote nothing.
func dirFiles(t *testing.T, d Dir) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(string(d), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			files[p] = "-> " + target
			return err
		}
		data, err := os.ReadFile(p)
		files[p] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestSignCSRRefusesAnotherIdentitysSAN: a client CSR whose SAN equals the
// common name or a SAN of another current certificate would get that
// certificate's rights from any policy that matches the SAN (an email:,
// dns: or uri: identity); it is refused unless AllowSAN says so, and
// nothing is written.
func TestSignCSRRefusesAnotherIdentitysSAN(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false) // ca, server (localhost, 127.0.0.1, ::1), client (CN client)
	web, _ := url.Parse("spiffe://example.org/web")
	sign := func(name string, csr x509.CertificateRequest, o SignOptions) (*Issued, error) {
		t.Helper()
		if csr.Subject.CommonName == "" {
			csr.Subject.CommonName = name
		}
		o.Dir, o.CSRFile, o.Name = d, writeCSR(t, &csr, mustKey(t)), name
		if o.Profile == "" {
			o.Profile = ProfileClient
		}
		return SignCSR(ctx, o)
	}
	if _, err := sign("web-id", x509.CertificateRequest{URIs: []*url.URL{web}}, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"gone", "old", "alice"} {
		if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: n, KeyType: ECDSAP256}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Revoke(ctx, RevokeOptions{Dir: d, Target: d.IssuedCert("gone")}); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add((DefaultLeafDays + 1) * 24 * time.Hour) // "old" and every other leaf have expired, the CA has not

	for i, tc := range []struct {
		name    string
		csr     x509.CertificateRequest
		o       SignOptions
		refused string // the collision named in the error; "" means signed
	}{
		{"email equal to a common name", x509.CertificateRequest{EmailAddresses: []string{"client"}}, SignOptions{}, `SAN email:client matches the common name of client certificate "client"`},
		{"email in another case", x509.CertificateRequest{EmailAddresses: []string{"CLIENT"}}, SignOptions{}, `SAN email:CLIENT matches the common name of client certificate "client"`},
		{"DNS equal to a common name", x509.CertificateRequest{DNSNames: []string{"Alice"}}, SignOptions{}, `SAN DNS:Alice matches the common name of client certificate "alice"`},
		{"DNS equal to a server's SAN", x509.CertificateRequest{DNSNames: []string{"localhost"}}, SignOptions{}, `SAN DNS:localhost matches SAN DNS:localhost of server certificate "server"`},
		{"IP equal to a server's SAN", x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, SignOptions{}, `SAN IP:127.0.0.1 matches SAN IP:127.0.0.1 of server certificate "server"`},
		{"URI equal to a URI SAN", x509.CertificateRequest{URIs: []*url.URL{web}}, SignOptions{}, `SAN URI:spiffe://example.org/web matches SAN URI:spiffe://example.org/web of client certificate "web-id"`},
		{"URI differing in case", x509.CertificateRequest{URIs: []*url.URL{must(url.Parse("spiffe://example.org/WEB"))}}, SignOptions{}, ""},
		{"common name of a revoked certificate", x509.CertificateRequest{EmailAddresses: []string{"gone"}}, SignOptions{}, ""},
		{"common name of an expired certificate", x509.CertificateRequest{EmailAddresses: []string{"old"}}, SignOptions{Now: later}, ""},
		{"its own name", x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}, EmailAddresses: []string{"alice"}}, SignOptions{Name: "alice", Force: true}, ""},
		{"allowed", x509.CertificateRequest{EmailAddresses: []string{"client"}}, SignOptions{AllowSAN: true}, ""},
		{"server profile", x509.CertificateRequest{DNSNames: []string{"localhost"}}, SignOptions{Profile: ProfileServer}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.o.Name
			if name == "" {
				name = fmt.Sprintf("eve%d", i)
			}
			if tc.o.Now.IsZero() {
				tc.o.Now = time.Now()
			}
			before := dirFiles(t, d)
			iss, err := sign(name, tc.csr, tc.o)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if iss.Record.Name != name {
					t.Errorf("record %+v", iss.Record)
				}
				return
			}
			if !errors.Is(err, ErrSANConflict) || !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("error %v, want one wrapping ErrSANConflict that says %q", err, tc.refused)
			}
			if after := dirFiles(t, d); !maps.Equal(before, after) {
				t.Errorf("a refused CSR changed the directory: %d files before, %d after", len(before), len(after))
			}
		})
	}
}

// TestIssueTypedIdentities: Issue puts e-mail and URI SANs into a
// certificate (typed identities for the server's policy), records them,
// and refuses malformed ones before writing anything.
func TestIssueTypedIdentities(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	for _, tc := range []struct {
		name   string
		emails []string
		uris   []string
		want   string // a substring of the error; "" means issued
	}{
		{"email and URI", []string{"svc@example.org"}, []string{"spiffe://example.org/web", "urn:example:svc"}, ""},
		{"email without @", []string{"svc"}, nil, `invalid e-mail address "svc"`},
		{"email with two @", []string{"a@b@example.org"}, nil, `invalid e-mail address "a@b@example.org"`},
		{"email with a space", []string{"a b@example.org"}, nil, `invalid e-mail address "a b@example.org"`},
		{"email with nothing before @", []string{"@example.org"}, nil, `invalid e-mail address "@example.org"`},
		{"URI without a scheme", nil, []string{"example.org/web"}, `invalid URI "example.org/web"`},
		{"URI that does not parse", nil, []string{"spiffe://exa mple.org/%zz"}, `invalid URI "spiffe://exa mple.org/%zz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dirFiles(t, d)
			name := "svc" + fmt.Sprint(len(before))
			iss, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: name, KeyType: ECDSAP256, Emails: tc.emails, URIs: tc.uris})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				if after := dirFiles(t, d); !maps.Equal(before, after) {
					t.Error("a refused issue changed the directory")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, u := range iss.Cert.URIs {
				uris = append(uris, u.String())
			}
			if !slices.Equal(iss.Cert.EmailAddresses, tc.emails) || !slices.Equal(uris, tc.uris) {
				t.Errorf("certificate SANs %q %q, want %q %q", iss.Cert.EmailAddresses, uris, tc.emails, tc.uris)
			}
			if !slices.Equal(iss.Record.Emails, tc.emails) || !slices.Equal(iss.Record.URIs, tc.uris) {
				t.Errorf("record %+v", iss.Record)
			}
		})
	}
}
