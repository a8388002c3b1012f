package caserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs/policy"
	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caclient"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// syncBuffer collects log lines written from the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// service is a running online CA on a fresh PKI directory.
type service struct {
	dir   pki.Dir
	url   string // https://localhost:PORT
	crl   string // http://127.0.0.1:PORT of the public listener
	roots *x509.CertPool
	log   *syncBuffer
	now   *atomic.Int64 // the service's clock, unix nanoseconds
}

func startService(t *testing.T, mutate func(*caserver.Config)) *service {
	t.Helper()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	s := &service{dir: d, log: &syncBuffer{}, now: &atomic.Int64{}}
	s.now.Store(time.Now().UnixNano())
	cfg := caserver.Config{
		Dir: d, Admins: []policy.Identity{policy.ParseIdentity("ops")}, CertTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(s.log, nil)),
		Now:    func() time.Time { return time.Unix(0, s.now.Load()) },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := caserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, pub) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s.url, s.crl = "https://localhost:"+port, "http://"+pub.Addr().String()
	if s.roots, err = pki.LoadPool(d.CACert()); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *service) token(t *testing.T, name string, p pki.Profile, hosts ...string) string {
	t.Helper()
	tok, _, err := pki.NewToken(context.Background(), pki.TokenOptions{Dir: s.dir, Name: name, Profile: p, Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is a CA client presenting cert (nil: none).
func (s *service) client(t *testing.T, cert *tls.Certificate) *caclient.Client {
	t.Helper()
	o := caclient.Options{Roots: s.roots}
	if cert != nil {
		o.Certificate = func() (*tls.Certificate, error) { return cert, nil }
	}
	c, err := caclient.New(s.url, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func csrFor(t *testing.T, tmpl *x509.CertificateRequest) (*tls.Certificate, []byte) {
	t.Helper()
	key, csr, err := caclient.NewCSR(pki.ECDSAP256, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{PrivateKey: key}, csr
}

// enrolled enrolls name and returns the TLS certificate (chain and key).
func (s *service) enrolled(t *testing.T, name string, p pki.Profile) *tls.Certificate {
	t.Helper()
	holder, csr := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}})
	ans, err := s.client(t, nil).Enroll(context.Background(), s.token(t, name, p), csr, "")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCerts([]byte(ans.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		holder.Certificate = append(holder.Certificate, c.Raw)
	}
	holder.Leaf = certs[0]
	return holder
}

func refusedWith(t *testing.T, what string, err error, status int, want string) {
	t.Helper()
	var r *caclient.RefusedError
	if !errors.As(err, &r) || r.Status != status || !strings.Contains(r.Message, want) {
		t.Errorf("%s: %v, want HTTP %d with %q", what, err, status, want)
	}
}

// TestEnrollWithToken: a token enrolls its name, profile and hosts once;
// each refusal has its control (the same request, right).
func TestEnrollWithToken(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	ctx := context.Background()
	c := s.client(t, nil)

	// Control: the CSR for the token's name; SANs come from the token.
	tok := s.token(t, "web", pki.ProfileServer, "web.example", "10.0.0.7")
	_, csr := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web"}})
	ans, err := c.Enroll(ctx, tok, csr, "")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCerts([]byte(ans.Certificate))
	if err != nil || len(certs) != 2 || certs[0].VerifyHostname("web.example") != nil || certs[0].VerifyHostname("10.0.0.7") != nil {
		t.Fatalf("enrolled: %v, %d certificates", err, len(certs))
	}
	if got := certs[0].NotAfter.Sub(certs[0].NotBefore); got != time.Hour+pki.Backdate {
		t.Errorf("lifetime %v, want the service's 1h", got)
	}
	if !strings.Contains(ans.CA, "BEGIN CERTIFICATE") {
		t.Error("no trust bundle in the answer")
	}
	// A replayed token.
	_, csr2 := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web"}})
	_, err = c.Enroll(ctx, tok, csr2, "")
	refusedWith(t, "a replayed token", err, http.StatusForbidden, "was used at")

	// An expired token: its control is the first enrollment above.
	old, _, err := pki.NewToken(ctx, pki.TokenOptions{Dir: s.dir, Name: "late", Profile: pki.ProfileClient, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s.now.Add(int64(2 * time.Minute))
	_, csr3 := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "late"}})
	_, err = c.Enroll(ctx, old, csr3, "")
	refusedWith(t, "an expired token", err, http.StatusForbidden, "expired at")

	for _, tc := range []struct {
		name string
		csr  *x509.CertificateRequest
		prof pki.Profile
		want string
	}{
		{"another name", &x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin"}}, "", `the token is for "db", the CSR asks for the common name "admin"`},
		{"an extra DNS SAN", &x509.CertificateRequest{Subject: pkix.Name{CommonName: "db"}, DNSNames: []string{"db.example", "evil.example"}}, "", "does not allow the DNS SAN evil.example"},
		{"an extra e-mail SAN", &x509.CertificateRequest{Subject: pkix.Name{CommonName: "db"}, EmailAddresses: []string{"ops"}}, "", "does not allow the e-mail SAN ops"},
		{"the client profile", &x509.CertificateRequest{Subject: pkix.Name{CommonName: "db"}}, pki.ProfileClient, "is for a server certificate, not a client one"},
	} {
		tok := s.token(t, "db", pki.ProfileServer, "db.example")
		_, csr := csrFor(t, tc.csr)
		_, err := c.Enroll(ctx, tok, csr, tc.prof)
		refusedWith(t, tc.name, err, http.StatusForbidden, tc.want)
		// Control: the same token, asked right, still works (the refusal
		// did not spend it).
		_, ok := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "db"}, DNSNames: []string{"db.example"}})
		if _, err := c.Enroll(ctx, tok, ok, pki.ProfileServer); err != nil {
			t.Errorf("%s: control: %v", tc.name, err)
		}
	}

	// A CSR asking for CA:TRUE gets a leaf.
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	_, greedy := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "greedy"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}})
	ans, err = c.Enroll(ctx, s.token(t, "greedy", pki.ProfileClient), greedy, "")
	if err != nil {
		t.Fatal(err)
	}
	if certs, _ := pki.ParseCerts([]byte(ans.Certificate)); certs[0].IsCA || certs[0].BasicConstraintsValid && certs[0].MaxPathLen > 0 {
		t.Error("a CSR asking for CA:TRUE got a CA certificate")
	}
	if log := s.log.String(); !strings.Contains(log, `op=enroll outcome=ok identity=web`) || !strings.Contains(log, `op=enroll outcome=refused`) {
		t.Errorf("audit log lacks the enrollments:\n%s", log)
	}
	if strings.Contains(s.log.String(), tok) {
		t.Error("a token was logged")
	}
}

// TestEnrollRateLimit: a client address may enroll only so often.
func TestEnrollRateLimit(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *caserver.Config) { c.EnrollPerMinute = 3 })
	c := s.client(t, nil)
	var limited bool
	for i := range 5 {
		_, err := c.Enroll(context.Background(), "kvs1.nonsense", []byte("x"), "")
		var r *caclient.RefusedError
		if errors.As(err, &r) && r.Status == http.StatusTooManyRequests {
			limited = i >= 3
			break
		}
	}
	if !limited {
		t.Error("no 429 after 3 enrollments a minute")
	}
}

// TestRenewOverMutualTLS: the current certificate renews itself for a new
// key, keeping the identity; the refusals each have a control.
func TestRenewOverMutualTLS(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	ctx := context.Background()
	alice := s.enrolled(t, "alice", pki.ProfileClient)
	renewCSR := func(tmpl *x509.CertificateRequest) []byte {
		_, csr := csrFor(t, tmpl)
		return csr
	}
	same := &x509.CertificateRequest{RawSubject: alice.Leaf.RawSubject}
	// Control.
	ans, err := s.client(t, alice).Renew(ctx, renewCSR(same))
	if err != nil {
		t.Fatal(err)
	}
	renewed, _ := pki.ParseCerts([]byte(ans.Certificate))
	if renewed[0].Subject.String() != alice.Leaf.Subject.String() || pki.SerialHex(renewed[0]) == pki.SerialHex(alice.Leaf) {
		t.Errorf("renewed %s serial %s", renewed[0].Subject, pki.SerialHex(renewed[0]))
	}
	if got, want := renewed[0].NotAfter.Sub(renewed[0].NotBefore), alice.Leaf.NotAfter.Sub(alice.Leaf.NotBefore); got != want {
		t.Errorf("renewed lifetime %v, want the old %v", got, want)
	}
	// Without a certificate.
	_, err = s.client(t, nil).Renew(ctx, renewCSR(same))
	refusedWith(t, "renewal without a certificate", err, http.StatusUnauthorized, "needs mutual TLS")
	// Changing the identity.
	_, err = s.client(t, alice).Renew(ctx, renewCSR(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin"}}))
	refusedWith(t, "renewal to another name", err, http.StatusForbidden, "a renewal keeps the identity")
	_, err = s.client(t, alice).Renew(ctx, renewCSR(&x509.CertificateRequest{RawSubject: alice.Leaf.RawSubject, EmailAddresses: []string{"ops"}}))
	refusedWith(t, "renewal with a new SAN", err, http.StatusForbidden, "a renewal keeps the identity")
	// The same key.
	sameKey, err := x509.CreateCertificateRequest(rand.Reader, same, alice.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.client(t, alice).Renew(ctx, pemCSR(sameKey))
	refusedWith(t, "renewal for the same key", err, http.StatusForbidden, "needs a new key")
	// A certificate of another CA: TLS does not let it through.
	other := pki.Dir(filepath.Join(t.TempDir(), "other"))
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: other, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.LoadX509KeyPair(other.ClientCert(), other.ClientKey())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.client(t, &foreign).Renew(ctx, renewCSR(&x509.CertificateRequest{RawSubject: foreign.Leaf.RawSubject}))
	if err == nil || !errors.Is(err, caclient.ErrUnreachable) {
		t.Errorf("renewal with another CA's certificate: %v, want the handshake refused", err)
	}
	// A revoked certificate.
	bob := s.enrolled(t, "bob", pki.ProfileClient)
	if _, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: s.dir, Target: pki.SerialHex(bob.Leaf)}); err != nil {
		t.Fatal(err)
	}
	_, err = s.client(t, bob).Renew(ctx, renewCSR(&x509.CertificateRequest{RawSubject: bob.Leaf.RawSubject}))
	refusedWith(t, "renewal with a revoked certificate", err, http.StatusForbidden, "it cannot renew itself")
}

func pemCSR(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRevokeNeedsAnAdmin: only an identity of the admin list revokes, and
// the CRL served right after lists the serial.
func TestRevokeNeedsAnAdmin(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	ctx := context.Background()
	victim := s.enrolled(t, "victim", pki.ProfileClient)
	eve := s.enrolled(t, "eve", pki.ProfileClient)
	ops := s.enrolled(t, "ops", pki.ProfileClient)
	serial := pki.SerialHex(victim.Leaf)
	_, err := s.client(t, eve).Revoke(ctx, serial, "keyCompromise")
	refusedWith(t, "revocation by a non-admin", err, http.StatusForbidden, "eve is not an admin")
	_, err = s.client(t, nil).Revoke(ctx, serial, "keyCompromise")
	refusedWith(t, "revocation without a certificate", err, http.StatusUnauthorized, "needs mutual TLS")
	rv, err := s.client(t, ops).Revoke(ctx, serial, "keyCompromise") // control
	if err != nil {
		t.Fatal(err)
	}
	if rv.Serial != serial || rv.Reason != "keyCompromise" {
		t.Errorf("revocation %+v", rv)
	}
	_, err = s.client(t, ops).Revoke(ctx, serial, "")
	refusedWith(t, "revoking twice", err, http.StatusConflict, "already revoked")
	// The public CRL, DER, lists it at once.
	resp, err := http.Get(s.crl + caserver.PathCRL)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rl, err := x509.ParseRevocationList(der)
	if err != nil || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("CRL: %v (%s)", err, resp.Header.Get("Content-Type"))
	}
	found := false
	for _, e := range rl.RevokedCertificateEntries {
		found = found || pki.SerialHex(&x509.Certificate{SerialNumber: e.SerialNumber}) == serial
	}
	if !found {
		t.Error("the served CRL does not list the revoked serial")
	}
	if !strings.Contains(s.log.String(), "op=revoke outcome=refused identity=eve") {
		t.Errorf("the refused revocation is not audited:\n%s", s.log.String())
	}
}

// TestCRLsReSignThemselves: while the service runs the CRL is re-signed
// once half of its lifetime has passed, and not before.
func TestCRLsReSignThemselves(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *caserver.Config) { c.CRLDays = 2; c.CRLCheck = 20 * time.Millisecond })
	number := func() string {
		lists, err := pki.CurrentCRLs(s.dir)
		if err != nil {
			t.Fatal(err)
		}
		return lists[0].CRL.Number.String()
	}
	before := number()
	time.Sleep(200 * time.Millisecond)
	if n := number(); n != before {
		t.Fatalf("re-signed before half of its lifetime: number %s -> %s", before, n)
	}
	s.now.Add(int64(4 * 24 * time.Hour)) // past half of the 7-day CRL of init
	deadline := time.Now().Add(5 * time.Second)
	for number() == before {
		if time.Now().After(deadline) {
			t.Fatalf("not re-signed after half of its lifetime: number still %s", before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lists, _ := pki.CurrentCRLs(s.dir)
	if left := lists[0].CRL.NextUpdate.Sub(time.Unix(0, s.now.Load())); left < 47*time.Hour || left > 49*time.Hour {
		t.Errorf("the re-signed CRL lasts %v from the service's now, want --crl-days 2", left)
	}
}

// TestPublicEndpoints: the CRLs and the trust bundle over plain HTTP; the
// private endpoints are not there.
func TestPublicEndpoints(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	get := func(path string) (int, string, []byte) {
		resp, err := http.Get(s.crl + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	if code, _, b := get(caserver.PathCA); code != 200 || !bytes.Equal(b, mustRead(t, s.dir.CACert())) {
		t.Errorf("GET %s: %d", caserver.PathCA, code)
	}
	if code, _, b := get(caserver.PathCRLs); code != 200 || !bytes.Equal(b, mustRead(t, s.dir.CRL())) {
		t.Errorf("GET %s: %d", caserver.PathCRLs, code)
	}
	root, _ := pki.LoadCert(s.dir.CACert())
	if code, ct, b := get(caserver.PathCRL + "/" + pki.SerialHex(root) + "?format=pem"); code != 200 || ct != "application/x-pem-file" || !bytes.Contains(b, []byte("X509 CRL")) {
		t.Errorf("the root's CRL as PEM: %d %s", code, ct)
	}
	if code, _, _ := get(caserver.PathCRL + "/00ff"); code != 404 {
		t.Errorf("the CRL of an unknown CA: %d", code)
	}
	resp, err := http.Post(s.crl+caserver.PathEnroll, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("enroll over plain HTTP: %d, want it absent", resp.StatusCode)
	}
}

// TestBootstrapByFingerprint: the first contact trusts the CA only when a
// root it serves has the fingerprint given.
func TestBootstrapByFingerprint(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	root, _ := pki.LoadCert(s.dir.CACert())
	certs, bundle, err := caclient.Bootstrap(context.Background(), s.url, pki.Fingerprint(root.Raw))
	if err != nil || len(certs) != 1 || !certs[0].Equal(root) || !bytes.Equal(bundle, mustRead(t, s.dir.CACert())) {
		t.Fatalf("bootstrap with the right fingerprint: %v", err)
	}
	other := pki.Dir(filepath.Join(t.TempDir(), "other"))
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: other, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	otherRoot, _ := pki.LoadCert(other.CACert())
	if _, _, err := caclient.Bootstrap(context.Background(), s.url, pki.Fingerprint(otherRoot.Raw)); !errors.Is(err, caclient.ErrFingerprint) {
		t.Errorf("bootstrap with another CA's fingerprint: %v", err)
	}
	u, _ := url.Parse(s.url)
	if _, _, err := caclient.Bootstrap(context.Background(), "https://"+u.Host, "abc"); err == nil {
		t.Error("a short fingerprint was accepted")
	}
}

// TestServerCertificateRenews: a server's certificate (serverAuth only)
// authenticates its own renewal as a client's does.
func TestServerCertificateRenews(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	holder, csr := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web"}})
	ans, err := s.client(t, nil).Enroll(context.Background(), s.token(t, "web", pki.ProfileServer, "web.example"), csr, "")
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := pki.ParseCerts([]byte(ans.Certificate))
	for _, c := range certs {
		holder.Certificate = append(holder.Certificate, c.Raw)
	}
	holder.Leaf = certs[0]
	_, next := csrFor(t, &x509.CertificateRequest{RawSubject: certs[0].RawSubject})
	renewed, err := s.client(t, holder).Renew(context.Background(), next)
	if err != nil {
		t.Fatalf("a server certificate renewing itself: %v", err)
	}
	if c, _ := pki.ParseCerts([]byte(renewed.Certificate)); c[0].VerifyHostname("web.example") != nil {
		t.Error("the renewed server certificate lost its host name")
	}
}
