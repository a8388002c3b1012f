package pki

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"slices"
	"testing"
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
