package server

// End-to-end tests of a CA hierarchy (a root, an issuing intermediate, the
// leaves it signs), over real TLS on 127.0.0.1: its clients get in, a
// revoked intermediate takes its leaves with it, a leaf forged outside the
// intermediate's name constraints is refused, and a running server follows
// an intermediate rotation and a root rotation and retirement by reloading.
// Each refusal has a control in the same setup that is let in.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

// demoConstraints are the name constraints of the constrained test PKIs:
// localhost and the loopback addresses.
func demoConstraints(t *testing.T) pki.NameConstraints {
	t.Helper()
	nc, err := pki.ParseNameConstraints([]string{"localhost"}, []string{"127.0.0.0/8", "::1/128"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// ping connects with files on a new connection and says whether the
// server let the client in.
func ping(t *testing.T, addr string, files pki.Files) error {
	t.Helper()
	return freshClient(t, addr, clientTLS(t, files, nil), false).Ping(t.Context())
}

// TestHierarchyClient: in a hierarchy, every leaf file holds the leaf and
// the intermediate; the server sends its intermediate, the client's chain
// is verified up to the root, and the default client and one issued later
// both do a round trip.
func TestHierarchyClient(t *testing.T) {
	d := testPKI(t, false)
	if !d.Hierarchy() {
		t.Fatal("pki.Init did not make a hierarchy by default")
	}
	root, err := pki.LoadCert(d.CACert())
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, d, nil, nil)
	issued, _ := issueClient(t, d, "alice")
	for name, files := range map[string]pki.Files{"default client": clientFiles(t, d), "issued client": issued} {
		t.Run(name, func(t *testing.T) {
			chain, err := pki.LoadCerts(files.Cert)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 2 || !chain[1].IsCA || chain[1].CheckSignatureFrom(root) != nil || chain[0].CheckSignatureFrom(chain[1]) != nil {
				t.Fatalf("%s holds %d certificates, want the leaf and the intermediate the root signed", files.Cert, len(chain))
			}
			conn, err := tls.Dial("tcp", ts.addr, clientTLS(t, files, nil))
			if err != nil {
				t.Fatal(err)
			}
			// The server's verdict on the client comes after the handshake
			// in TLS 1.3: a request makes sure it is in.
			c := freshClient(t, ts.addr, clientTLS(t, files, nil), false)
			if _, err := c.Put(t.Context(), "hier/"+name, []byte("v"), kvs.Cond{}); err != nil {
				t.Fatalf("put: %v", err)
			}
			if e, err := c.Get(t.Context(), "hier/"+name); err != nil || string(e.Value) != "v" {
				t.Fatalf("get: %v", err)
			}
			st := conn.ConnectionState()
			conn.Close()
			if len(st.PeerCertificates) != 2 || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) != 3 || !st.VerifiedChains[0][2].Equal(root) {
				t.Errorf("the server sent %d certificates, verified chain of %d; want its leaf and intermediate, verified up to the root",
					len(st.PeerCertificates), len(st.VerifiedChains[0]))
			}
		})
	}
}

// TestHierarchyRevokedIntermediate: an intermediate revoked by its root
// (pki.Revoke with Intermediate, after a rotation made a new issuing
// intermediate) takes every leaf it signed with it, once the server has
// reloaded; a leaf of the new intermediate stays in. Before the
// revocation, both are let in.
func TestHierarchyRevokedIntermediate(t *testing.T) {
	d := testPKI(t, false)
	ctx := context.Background()
	oldFiles, old := issueClient(t, d, "old-inter")
	oldInter, err := pki.LoadCert(d.IntermediateCert())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Rotate(ctx, pki.RotateOptions{Dir: d}); err != nil {
		t.Fatal(err)
	}
	newFiles, _ := issueClient(t, d, "new-inter")
	ts := startServer(t, d, nil, nil)
	for name, f := range map[string]pki.Files{"leaf of the old intermediate": oldFiles, "leaf of the new intermediate": newFiles} {
		if err := ping(t, ts.addr, f); err != nil {
			t.Fatalf("control: before the revocation, the %s was refused: %v", name, err)
		}
	}
	rev, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: d, Target: pki.SerialHex(oldInter), Intermediate: true, Reason: "keyCompromise"})
	if err != nil {
		t.Fatal(err)
	}
	if rev.Issuer.Equal(oldInter) || !rev.Issuer.IsCA || rev.Issuer.CheckSignatureFrom(rev.Issuer) != nil {
		t.Fatalf("the revocation was signed by %s, want the root", rev.Issuer.Subject)
	}
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	expectRejected(t, "a leaf of the revoked intermediate", ping(t, ts.addr, oldFiles))
	refused := refusedWith(t, ts, "of the chain, serial "+pki.SerialHex(oldInter))
	if reason, _ := refused["reason"].(string); !strings.Contains(reason, "revoked by "+rev.Issuer.Subject.String()) {
		t.Errorf("refusal %q does not name the root that revoked the intermediate", reason)
	}
	if old.Cert.Issuer.String() != oldInter.Subject.String() {
		t.Fatalf("the old leaf was issued by %s", old.Cert.Issuer)
	}
	if err := ping(t, ts.addr, newFiles); err != nil {
		t.Errorf("a leaf of the new intermediate after the old one was revoked: %v", err)
	}
}

// forgeLeaf signs a client certificate with the CA's key through
// crypto/x509 directly, past pki's own check of the name constraints, and
// writes it (with the intermediate) where a client can use it.
func forgeLeaf(t *testing.T, d pki.Dir, ca *pki.CA, cn string, dns []string, ips []net.IP) pki.Files {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := pki.NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames: dns, IPAddresses: ips, AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.MarshalKey(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := pki.Files{Cert: filepath.Join(dir, cn+".crt"), Key: filepath.Join(dir, cn+".key"), CA: d.CACert()}
	if err := os.WriteFile(f.Cert, leafFile(ca, der), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNameConstraintsForgedLeafRefused: the intermediate may certify
// localhost and the loopback addresses only. pki refuses to sign a name
// outside them; a leaf forged with the intermediate's key through
// crypto/x509 directly is refused by the server. The controls are forged
// the same way with names inside the constraints, and let in.
func TestNameConstraintsForgedLeafRefused(t *testing.T) {
	d := testPKIWith(t, func(o *pki.InitOptions) { o.Constraints = demoConstraints(t) })
	ca, err := pki.LoadCA(d, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(ca.Cert.PermittedDNSDomains) == 0 || !ca.Cert.PermittedDNSDomainsCritical {
		t.Fatal("the intermediate carries no critical name constraints")
	}
	// pki's own check, which the forgeries below go around.
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req := pki.LeafRequest{Profile: pki.ProfileClient, Subject: pkix.Name{CommonName: "evil"}, Hosts: []string{"evil.example.com"}, PublicKey: key.Public()}
	if _, err := ca.Sign(req, time.Now()); err == nil || !strings.Contains(err.Error(), "outside the name constraints") {
		t.Fatalf("pki signed a name outside the constraints: %v", err)
	}
	ts := startServer(t, d, nil, nil)
	for _, tc := range []struct {
		name     string
		dns      []string
		ips      []net.IP
		accepted bool
	}{
		{"DNS name inside (control)", []string{"web.localhost"}, nil, true},
		{"IP address inside (control)", nil, []net.IP{net.ParseIP("127.0.0.9")}, true},
		{"DNS name outside", []string{"evil.example.com"}, nil, false},
		{"IP address outside", nil, []net.IP{net.ParseIP("10.1.2.3")}, false},
		{"one name inside, one outside", []string{"web.localhost", "evil.example.com"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := forgeLeaf(t, d, ca, "forged", tc.dns, tc.ips)
			err := ping(t, ts.addr, f)
			if tc.accepted {
				if err != nil {
					t.Fatalf("a forged leaf inside the constraints was refused: %v", err)
				}
				return
			}
			expectRejected(t, tc.name, err)
			r := refusedWith(t, ts, "not authorized to sign for this name")
			if r["label"] != string(ReasonNameNotPermitted) {
				t.Errorf("refusal labelled %v, want %s", r["label"], ReasonNameNotPermitted)
			}
		})
	}
}

// TestRotateIntermediateHotReload: 'pki ca rotate' makes a new issuing
// intermediate under a running server that polls its files. A client of
// the new intermediate is let in once the server has picked up
// intermediates.pem and crl.pem, without a restart and without a failed
// reload on the way, and the old client keeps working.
func TestRotateIntermediateHotReload(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) { c.ReloadInterval = 20 * time.Millisecond })
	old := clientFiles(t, d)
	if err := ping(t, ts.addr, old); err != nil {
		t.Fatalf("control: the old client before the rotation: %v", err)
	}
	rot, err := pki.Rotate(context.Background(), pki.RotateOptions{Dir: d})
	if err != nil {
		t.Fatal(err)
	}
	newFiles, issued := issueClient(t, d, "after-rotation")
	if issued.Cert.Issuer.String() != rot.Intermediate.Subject.String() {
		t.Fatalf("the new client was issued by %s, want the new intermediate %s", issued.Cert.Issuer, rot.Intermediate.Subject)
	}
	// Before the server reloads, the new intermediate is unknown to it:
	// crypto/tls cannot verify the new client yet, or the CRL of its
	// issuer is missing. Either way the server takes it up by itself.
	waitFor(t, 10*time.Second, "the server to accept a client of the new intermediate", func() bool {
		return ping(t, ts.addr, newFiles) == nil
	})
	if err := ping(t, ts.addr, old); err != nil {
		t.Errorf("the old client after the rotation: %v", err)
	}
	if n := strings.Count(ts.Logs(), "tls reload failed"); n != 0 {
		t.Errorf("%d failed reloads during the rotation:\n%s", n, ts.Logs())
	}
}

// TestRetireRootRefusesOldGeneration: after 'pki ca rotate --root' the
// bundle holds the new root and the old one, and clients of both
// generations are let in; after 'pki ca retire' of the old root and a
// reload, a client holding only an old-generation certificate is refused,
// and the new generation still gets in. The server's own certificate is
// renewed under the new root first, as the procedure says, or left in the
// old generation: the reload must then still take the retirement up,
// rather than fail and keep trusting the old root.
func TestRetireRootRefusesOldGeneration(t *testing.T) {
	for _, renewServer := range []bool{true, false} {
		t.Run(map[bool]string{true: "server renewed", false: "server of the old generation"}[renewServer], func(t *testing.T) {
			d := testPKI(t, false)
			ctx := context.Background()
			oldRoot, err := pki.LoadCert(d.CACert())
			if err != nil {
				t.Fatal(err)
			}
			ts := startServer(t, d, nil, nil)
			if _, err := pki.Rotate(ctx, pki.RotateOptions{Dir: d, Root: true}); err != nil {
				t.Fatal(err)
			}
			if renewServer {
				renewServerCert(t, d)
			}
			if err := ts.srv.Reload(); err != nil {
				t.Fatal(err)
			}
			// The clients trust both roots for the server: whichever
			// generation its certificate is, this test is about the
			// server's side.
			bothRoots := concat(t, "both-roots.pem", d.CACert())
			old := clientFiles(t, d)
			old.CA = bothRoots
			newFiles, _ := issueClient(t, d, "new-generation")
			newFiles.CA = bothRoots
			for name, f := range map[string]pki.Files{"old generation": old, "new generation": newFiles} {
				if err := ping(t, ts.addr, f); err != nil {
					t.Fatalf("control: after the root rotation, before the retirement, the %s client was refused: %v", name, err)
				}
			}
			ret, err := pki.Retire(ctx, pki.RetireOptions{Dir: d, Fingerprint: pki.Fingerprint(oldRoot.Raw)})
			if err != nil {
				t.Fatal(err)
			}
			if !ret.Root.Equal(oldRoot) {
				t.Fatalf("retired %s, want the old root", ret.Root.Subject)
			}
			if err := ts.srv.Reload(); err != nil {
				t.Fatalf("reload after the retirement: %v", err)
			}
			// The server no longer names the old root among the CAs it
			// accepts, so Go's client would send nothing: present the
			// certificate anyway, as its holder would.
			oldTLS := clientTLS(t, old, presentAnyway)
			expectRejected(t, "old generation after the retirement", freshClient(t, ts.addr, oldTLS, false).Ping(ctx))
			refusedWith(t, ts, "unknown authority")
			if err := ping(t, ts.addr, newFiles); err != nil {
				t.Errorf("new generation after the retirement: %v", err)
			}
			warned := strings.Contains(ts.Logs(), "does not chain to the client CA bundle")
			if warned == renewServer {
				t.Errorf("warning that the server's own chain left the bundle: %v, want %v", warned, !renewServer)
			}
		})
	}
}
