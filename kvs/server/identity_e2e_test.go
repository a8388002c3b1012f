package server

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// writePolicy writes a policy file for a test.
func writePolicy(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSANImpersonationRefused: a certificate of the CA with CN=eve and a
// SAN that spells "client" (e-mail or DNS) gets eve's rights only, and the
// audit line names the identity that matched (security finding 1).
func TestSANImpersonationRefused(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) {
		c.PolicyFile = writePolicy(t, "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n  eve:\n    prefixes: [\"eve/\"]\n    operations: [read, write]\n")
	})
	owner := newTestClient(t, d, ts.addr, nil)
	if _, err := owner.Put(t.Context(), "client/secret", []byte("s"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	for name, san := range map[string]func(*pki.LeafRequest){
		"email": func(r *pki.LeafRequest) { r.Emails = []string{"client"} },
		"dns":   func(r *pki.LeafRequest) { r.Hosts = []string{"client"} },
	} {
		t.Run(name, func(t *testing.T) {
			eve := signLeaf(t, d, "eve", san)
			c := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.Files = eve })
			if _, err := c.Get(t.Context(), "client/secret"); !errors.Is(err, kvs.ErrForbidden) {
				t.Errorf("eve reads client/secret: %v", err)
			}
			if err := c.Delete(t.Context(), "client/secret", kvs.Cond{}); !errors.Is(err, kvs.ErrForbidden) {
				t.Errorf("eve deletes client/secret: %v", err)
			}
			if _, err := c.Put(t.Context(), "eve/"+name, []byte("x"), kvs.Cond{}); err != nil {
				t.Errorf("eve/%s: %v", name, err)
			}
		})
	}
	var saw bool
	for _, rec := range logRecords(t, ts, "request") {
		if rec["key"] == "eve/email" {
			saw = true
			if rec["identity"] != "eve" || rec["cn"] != "eve" || rec["serial"] == "" {
				t.Errorf("audit line of eve's write: %v", rec)
			}
		}
	}
	if !saw {
		t.Error("no audit line for eve's write")
	}
}

// TestAuditNamesTypedIdentity: the audit line carries the policy identity
// that allowed the request (here a DNS SAN), next to the CN.
func TestAuditNamesTypedIdentity(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) {
		c.PolicyFile = writePolicy(t, "identities:\n  \"dns:web.example.com\":\n    prefixes: [\"web/\"]\n    operations: [write]\n")
	})
	web := signLeaf(t, d, "web-1", func(r *pki.LeafRequest) { r.Hosts = []string{"web.example.com"} })
	c := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.Files = web })
	if _, err := c.Put(t.Context(), "web/k", []byte("x"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	for _, rec := range logRecords(t, ts, "request") {
		if rec["key"] == "web/k" && (rec["identity"] != "dns:web.example.com" || rec["cn"] != "web-1") {
			t.Errorf("audit line: %v, want identity dns:web.example.com and cn web-1", rec)
		}
	}
}

// TestPolicyGuardsMetricsAndHealth: with a policy, /metrics and /healthz
// need the operations metrics and health (security finding 7: any
// certificate of the CA read them before).
func TestPolicyGuardsMetricsAndHealth(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) {
		c.PolicyFile = writePolicy(t, "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n  prom:\n    operations: [metrics]\n  lb:\n    operations: [health]\n")
	})
	get := func(files pki.Files, path string) int {
		t.Helper()
		hc := httpClient(t, clientTLS(t, files, nil), true)
		resp, err := hc.Get(serverURL(ts.addr) + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	prom, lb, outsider := signLeaf(t, d, "prom", nil), signLeaf(t, d, "lb", nil), signLeaf(t, d, "outsider", nil)
	for _, tc := range []struct {
		who   string
		files pki.Files
		path  string
		want  int
	}{
		{"client", clientFiles(t, d), "/metrics", http.StatusForbidden},
		{"client", clientFiles(t, d), "/healthz", http.StatusForbidden},
		{"outsider", outsider, "/metrics", http.StatusForbidden},
		{"outsider", outsider, "/healthz", http.StatusForbidden},
		{"prom", prom, "/metrics", http.StatusOK},
		{"prom", prom, "/healthz", http.StatusForbidden},
		{"lb", lb, "/healthz", http.StatusOK},
		{"lb", lb, "/metrics", http.StatusForbidden},
	} {
		if got := get(tc.files, tc.path); got != tc.want {
			t.Errorf("%s GET %s: %d, want %d", tc.who, tc.path, got, tc.want)
		}
	}
	// Without a policy both stay open to every client of the CA.
	open := startServer(t, d, nil, nil)
	hc := httpClient(t, clientTLS(t, outsider, nil), true)
	for _, path := range []string{"/metrics", "/healthz"} {
		resp, err := hc.Get(serverURL(open.addr) + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("no policy: GET %s: %v %v", path, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}
