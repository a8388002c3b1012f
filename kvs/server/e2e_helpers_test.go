package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/pki"
)

// testPKI creates a PKI with fast ECDSA keys: a root, an intermediate and
// the leaves it signs (what pki init makes), or a self-signed one.
func testPKI(t testing.TB, selfSigned bool) pki.Dir {
	t.Helper()
	return testPKIWith(t, func(o *pki.InitOptions) { o.SelfSigned = selfSigned })
}

// testPKIWith creates a PKI with fast ECDSA keys and a server certificate
// for localhost and 127.0.0.1, with the options mutate sets (Flat,
// Constraints...).
func testPKIWith(t testing.TB, mutate func(*pki.InitOptions)) pki.Dir {
	t.Helper()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	o := pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}}
	if mutate != nil {
		mutate(&o)
	}
	if _, err := pki.Init(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return d
}

// caLayouts are the two CA layouts: a root and an issuing intermediate
// (the default), and one flat CA that signs leaves itself (pki init
// --flat, and every PKI made before the hierarchy).
var caLayouts = []struct {
	name string
	flat bool
}{{"hierarchy", false}, {"flat", true}}

// layoutPKI creates a CA-mode PKI of the given layout.
func layoutPKI(t testing.TB, flat bool) pki.Dir {
	t.Helper()
	return testPKIWith(t, func(o *pki.InitOptions) { o.Flat = flat })
}

// syncBuffer is a log sink safe for concurrent writes.
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

// testServer is a server on 127.0.0.1:0 that a test can stop before it
// ends (to reopen its store); it is stopped at the end of the test
// otherwise.
type testServer struct {
	addr  string
	srv   *Server
	store kvs.Store
	log   *syncBuffer
	stop  func()
}

// startServer serves the PKI's server files with the given store (nil: a
// bolt store in a temp dir) on 127.0.0.1:0 until stop is called or the test
// ends, logging JSON at debug level to a buffer unless mutate says
// otherwise.
func startServer(t testing.TB, d pki.Dir, store kvs.Store, mutate func(*Config)) *testServer {
	t.Helper()
	return startServerAt(t, d, store, "127.0.0.1:0", mutate)
}

// startServerAt is startServer on a given address (to restart a server
// where its clients expect it): it waits for the address to be free.
func startServerAt(t testing.TB, d pki.Dir, store kvs.Store, addr string, mutate func(*Config)) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	files, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	if store == nil {
		bs, err := bolt.Open(t.Context(), filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bs.Close() })
		store = bs
	}
	cfg := Config{Files: files, Store: store, Logger: logger}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	waitFor(t, 10*time.Second, "the address to be free", func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("server did not shut down within 20s")
			}
		})
	}
	t.Cleanup(stop)
	return &testServer{addr: ln.Addr().String(), srv: srv, store: store, log: logs, stop: stop}
}

// Logs returns everything the server logged so far (JSON lines, debug level).
func (ts *testServer) Logs() string { return ts.log.String() }

// newTestClient connects with the PKI's default client files.
func newTestClient(t testing.TB, d pki.Dir, addr string, mutate func(*client.Config)) *client.Client {
	t.Helper()
	files, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	cfg := client.Config{Server: "localhost:" + port, Files: files, Timeout: 10 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openPostgres opens a store on db in schema, closed when the test ends.
func openPostgres(t testing.TB, db, schema string, opts postgres.Options) kvs.Store {
	t.Helper()
	opts.Schema = schema
	s, err := postgres.Open(t.Context(), db, opts)
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pkiModes are the two layouts every end-to-end test runs in.
var pkiModes = []struct {
	name       string
	selfSigned bool
}{{"ca", false}, {"self-signed", true}}

// clientFiles are the default client's files of a PKI directory.
func clientFiles(t *testing.T, d pki.Dir) pki.Files {
	t.Helper()
	f, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// serverURL is the https URL of a test server, by the name its certificate
// carries.
func serverURL(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "https://localhost:" + port
}

// clientTLS is the client configuration of files, checked as kvs does it,
// with a hook to change it (pin the version, drop the certificate...).
func clientTLS(t *testing.T, files pki.Files, mutate func(*tls.Config)) *tls.Config {
	t.Helper()
	cfg, err := files.ClientConfig(pki.TLSOptions{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

// freshClient is a kvs client that opens a new TLS connection for every
// request, so each call is a handshake the server judges anew.
func freshClient(t *testing.T, addr string, cfg *tls.Config, http1 bool) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Server: strings.TrimPrefix(serverURL(addr), "https://"), TLSConfig: cfg, NewConn: true, HTTP1: http1, HTTP2: !http1, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// httpClient is a plain net/http client over mutual TLS, to look at raw
// statuses and headers.
func httpClient(t *testing.T, cfg *tls.Config, http1 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: !http1}
	if http1 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// issueClient issues a CA-mode client certificate NAME (ECDSA P-256) and
// returns the files to connect with.
func issueClient(t *testing.T, d pki.Dir, name string) (pki.Files, *pki.Issued) {
	t.Helper()
	iss, err := pki.Issue(context.Background(), pki.IssueOptions{Dir: d, Profile: pki.ProfileClient, Name: name, KeyType: pki.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	return pki.Files{Cert: iss.CertFile, Key: iss.KeyFile, CA: d.CACert()}, iss
}

// signClient signs a client certificate NAME with the CA of d, valid from
// notBefore to notAfter (an expired or future one), without recording it,
// and returns the files to connect with.
func signClient(t *testing.T, d pki.Dir, name string, notBefore, notAfter time.Time) pki.Files {
	t.Helper()
	return signLeaf(t, d, name, func(r *pki.LeafRequest) { r.NotBefore, r.NotAfter = notBefore, notAfter })
}

// signLeaf signs a client certificate NAME with the CA of d, as mutate
// makes the request (SANs, validity), without recording it, and returns
// the files to connect with.
func signLeaf(t *testing.T, d pki.Dir, name string, mutate func(*pki.LeafRequest)) pki.Files {
	t.Helper()
	ca, err := pki.LoadCA(d, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req := pki.LeafRequest{Profile: pki.ProfileClient, PublicKey: key.Public()}
	req.Subject.CommonName = name
	if mutate != nil {
		mutate(&req)
	}
	cert, err := ca.Sign(req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.MarshalKey(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := pki.Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: d.CACert()}
	if err := pki.WriteFileAtomic(f.Key, keyPEM, pki.KeyMode, false); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(f.Cert, leafFile(ca, cert.Raw), pki.CertMode, false); err != nil {
		t.Fatal(err)
	}
	return f
}

// leafFile is what a certificate file of a leaf that ca signed holds, as
// pki writes it: the leaf, then the intermediate when ca is one. Go's
// client sends a certificate only when its chain names one of the CAs the
// server asks for (the roots), so a leaf of an intermediate written alone
// is not sent at all.
func leafFile(ca *pki.CA, leafDER []byte) []byte {
	out := pki.PEMCert(leafDER)
	if len(ca.Chain) > 0 {
		out = append(out, pki.PEMCert(ca.Cert.Raw)...)
	}
	return out
}

// presentAnyway makes a client present its certificate whatever CAs the
// server says it accepts, as an attacker does: Go's client would otherwise
// send none for a certificate of a CA the server does not name, and the
// server would refuse it for lack of a certificate, not for its CA.
func presentAnyway(c *tls.Config) {
	if len(c.Certificates) == 0 {
		return
	}
	cert := c.Certificates[0]
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

// expectRejected fails unless err says the server refused this client.
func expectRejected(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, client.ErrRejected) {
		t.Errorf("%s: err = %v, want client.ErrRejected", what, err)
	}
}

// logRecords parses the server's JSON log lines with the given message.
func logRecords(t *testing.T, ts *testServer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(ts.Logs(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// refusedWith waits until the server logged a refused handshake whose
// reason contains want, and returns that record.
func refusedWith(t *testing.T, ts *testServer, want string) map[string]any {
	t.Helper()
	var found map[string]any
	waitFor(t, 5*time.Second, "a refused-handshake log line with "+want, func() bool {
		for _, r := range logRecords(t, ts, "tls handshake refused") {
			if reason, _ := r["reason"].(string); strings.Contains(reason, want) {
				found = r
				return true
			}
		}
		return false
	})
	if peer, _ := found["peer"].(string); !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("refused handshake logged without the peer address: %v", found)
	}
	return found
}

// otherPKI creates an unrelated PKI in the same mode: its client is a rogue
// to our server.
func otherPKI(t *testing.T, selfSigned bool) pki.Dir {
	t.Helper()
	return testPKI(t, selfSigned)
}

// writeSelfSignedClient replaces the client certificate and key of a
// self-signed PKI with a new pair, valid in [notBefore, notAfter] (zero:
// the default), as an operator would to stop trusting the old client.
func writeSelfSignedClient(t *testing.T, d pki.Dir, notBefore, notAfter time.Time) {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req := pki.LeafRequest{Profile: pki.ProfileClient, NotBefore: notBefore, NotAfter: notAfter}
	req.Subject.CommonName = "client"
	cert, err := pki.SelfSign(req, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.MarshalKey(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(d.ClientKey(), keyPEM, pki.KeyMode, true); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(d.ClientCert(), pki.PEMCert(cert.Raw), pki.CertMode, true); err != nil {
		t.Fatal(err)
	}
}
