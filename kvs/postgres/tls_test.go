package postgres_test

// The store's own connection to PostgreSQL over TLS with a client
// certificate, on a private cluster (pgtest.TLSCluster) that trusts a PKI
// made with package pki, set up as docs/postgres-tls.md says: a server
// certificate "postgres" for 127.0.0.1 and localhost, a client certificate
// "kvs" whose common name is the role, ssl_ca_file the root, ssl_crl_file
// crl.pem with the CRLs of the intermediate and the root, and
// "hostssl ... cert" as the only way in over TCP.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/kvstest"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/pki"
)

// newPGPKI makes what the documented commands make: pki init, pki issue
// server postgres --hosts 127.0.0.1,localhost, pki issue client kvs.
func newPGPKI(t *testing.T, kt pki.KeyType) pki.Dir {
	t.Helper()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	ctx := t.Context()
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: d, KeyType: kt}); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Issue(ctx, pki.IssueOptions{Dir: d, Profile: pki.ProfileServer, Name: "postgres", Hosts: []string{"127.0.0.1", "localhost"}, KeyType: kt}); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Issue(ctx, pki.IssueOptions{Dir: d, Profile: pki.ProfileClient, Name: "kvs", KeyType: kt}); err != nil {
		t.Fatal(err)
	}
	return d
}

// pgTLSURL is a store URL in the documented shape.
type pgTLSURL struct {
	addr, user, mode string // user "" is kvs, mode "" is verify-full
	root, cert, key  string // cert and key "" for none
	extra            string // more parameters, "a=b&c=d"
}

func (p pgTLSURL) String() string {
	user, mode := p.user, p.mode
	if user == "" {
		user = "kvs"
	}
	if mode == "" {
		mode = "verify-full"
	}
	u := fmt.Sprintf("postgres://%s@%s/kvs?sslmode=%s&sslrootcert=%s", user, p.addr, mode, p.root)
	if p.cert != "" {
		u += "&sslcert=" + p.cert + "&sslkey=" + p.key
	}
	if p.extra != "" {
		u += "&" + p.extra
	}
	return u
}

// kvsURL is the URL of the docs for the PKI d and cluster c.
func kvsURL(c *pgtest.Cluster, d pki.Dir) pgTLSURL {
	return pgTLSURL{addr: c.Addr(), root: d.CACert(), cert: d.IssuedCert("kvs"), key: d.IssuedKey("kvs")}
}

// roundTrip puts, gets, lists and deletes a key of its own through s.
func roundTrip(t *testing.T, s kvs.Store) {
	t.Helper()
	ctx := t.Context()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	key := "tls/" + hex.EncodeToString(b)
	if _, err := s.Put(ctx, key, []byte("over tls"), kvs.Cond{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if e, err := s.Get(ctx, key); err != nil || string(e.Value) != "over tls" {
		t.Fatalf("get: %q, %v", e.Value, err)
	}
	if keys, _, err := s.List(ctx, key, "", 10); err != nil || len(keys) != 1 || keys[0].Key != key {
		t.Fatalf("list: %v, %v", keys, err)
	}
	if err := s.Delete(ctx, key, kvs.Cond{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// sslSession is what PostgreSQL saw of the TLS session of one of s's
// connections.
type sslSession struct {
	serial, issuer, version string
}

func session(t *testing.T, s *postgres.Store) sslSession {
	t.Helper()
	var ss sslSession
	err := postgres.Pool(s).QueryRow(t.Context(),
		`SELECT client_serial::text, issuer_dn, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).
		Scan(&ss.serial, &ss.issuer, &ss.version)
	if err != nil {
		t.Fatalf("pg_stat_ssl: %v", err)
	}
	return ss
}

// checkSerial checks that the connection s uses presented serial.
func checkSerial(t *testing.T, s *postgres.Store, want *big.Int) {
	t.Helper()
	if got := session(t, s).serial; got != want.String() {
		t.Fatalf("PostgreSQL saw client certificate serial %s, want %s", got, want)
	}
}

// leafOf returns the first certificate of a certificate file.
func leafOf(t *testing.T, path string) *big.Int {
	t.Helper()
	c, err := pki.LoadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// writeFile replaces path through a rename, as pki does.
func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := pki.WriteFileAtomic(path, data, mode, true); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// firstPEM returns the first PEM block of data.
func firstPEM(t *testing.T, data []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return pem.EncodeToMemory(b)
}

// splitCRLs returns the CRL of inter and the other CRL (its root's) in
// the crl.pem at path, as PEM.
func splitCRLs(t *testing.T, path string, inter *x509.Certificate) (interCRL, rootCRL []byte) {
	t.Helper()
	rest := readFile(t, path)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		rl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(rl.RawIssuer, inter.RawSubject) {
			interCRL = append(interCRL, pem.EncodeToMemory(b)...)
		} else {
			rootCRL = append(rootCRL, pem.EncodeToMemory(b)...)
		}
	}
	if interCRL == nil || rootCRL == nil {
		t.Fatalf("%s: want the CRLs of the intermediate and of the root", path)
	}
	return interCRL, rootCRL
}

// openErr opens a store on u and returns why it could not, or "" after a
// round trip through it.
func openErr(t *testing.T, u string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, u, postgres.Options{MaxConns: 1, StatementTimeout: 5 * time.Second})
	if err != nil {
		return err.Error()
	}
	defer s.Close()
	roundTrip(t, s)
	return ""
}

// sentCert connects to u's server with pgx alone, presenting the chain in
// cert whatever the server asks for: crypto/tls by itself sends no
// certificate that does not chain to one of the CAs the server names in its
// request (PostgreSQL names the roots of its ssl_ca_file). It returns why
// the connection was refused, or "".
func sentCert(t *testing.T, u pgTLSURL, cert, key string) func() string {
	return func() string {
		t.Helper()
		u.cert, u.key = "", ""
		cfg, err := pgx.ParseConfig(u.String())
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err.Error()
		}
		defer conn.Close(ctx)
		if err := conn.Ping(ctx); err != nil {
			return err.Error()
		}
		return ""
	}
}

// getErr gets a key through s and returns why that failed, or "" (a
// missing key is no failure).
func getErr(t *testing.T, s kvs.Store) string {
	t.Helper()
	if _, err := s.Get(t.Context(), "anything"); err != nil && !errors.Is(err, kvs.ErrNotFound) {
		return err.Error()
	}
	return ""
}

// refusal runs try, a connection attempt, until it says why it was
// refused. With TLS 1.3 the server verifies the client's certificate after
// the client has finished its handshake: when the server's alert and close
// overtake the client's first write, the client sees a reset connection
// instead of the alert; the next attempt usually reads the alert.
func refusal(try func() string) string {
	for i := 0; ; i++ {
		got := try()
		lost := strings.Contains(got, "connection reset by peer") || strings.Contains(got, "broken pipe") || strings.HasSuffix(got, ": EOF")
		if !lost || i == 19 {
			return got
		}
	}
}

// logRecords keeps the messages a store logs.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *logRecords) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

const (
	logReloaded    = "postgres tls files reloaded for new connections"
	logNotReloaded = "postgres tls files not reloaded: new connections keep using the previous ones"
)

// TestPostgresTLS runs the conformance suite over TLS with certificate
// authentication (RSA keys: the defaults of the documented commands), and
// checks each thing that must refuse a connection, each next to a control
// that differs in that one thing and is accepted.
func TestPostgresTLS(t *testing.T) {
	t.Parallel()
	dir := newPGPKI(t, pki.RSA2048)
	c := pgtest.TLSCluster(t, string(dir))
	good := kvsURL(c, dir)

	t.Run("Conformance", func(t *testing.T) {
		kvstest.Run(t, func(t *testing.T) kvs.Store {
			return openStore(t, good.String(), pgtest.Schema(t, c.Superuser("kvs")), postgres.Options{MaxConns: 2})
		})
	})

	t.Run("Session", func(t *testing.T) {
		s := openStore(t, good.String(), "", postgres.Options{})
		defer s.Close()
		roundTrip(t, s)
		ss := session(t, s)
		inter, err := pki.LoadCert(dir.IntermediateCert())
		if err != nil {
			t.Fatal(err)
		}
		// ssl_ca_file holds only the root: the intermediate PostgreSQL
		// names came in the client's chain, from issued/kvs.crt.
		if ss.serial != leafOf(t, dir.IssuedCert("kvs")).String() || !strings.Contains(ss.issuer, "CN="+inter.Subject.CommonName) {
			t.Errorf("PostgreSQL saw serial %s issued by %q, want issued/kvs.crt's serial from %s", ss.serial, ss.issuer, inter.Subject.CommonName)
		}
		t.Logf("session: %s, client serial %s, issuer %s", ss.version, ss.serial, ss.issuer)
	})

	t.Run("Refused", func(t *testing.T) {
		other := newPGPKI(t, pki.ECDSAP256) // another CA, with a client certificate "kvs" of its own
		leafOnly := filepath.Join(t.TempDir(), "kvs-leaf.crt")
		writeFile(t, leafOnly, firstPEM(t, readFile(t, dir.IssuedCert("kvs"))), 0o644)
		proxy := pgtest.StartProxyAt(t, "127.0.0.2:0", c.Addr()) // the same server at an address its certificate does not name
		at := func(u pgTLSURL, edit func(*pgTLSURL)) func() string {
			edit(&u)
			return func() string { return openErr(t, u.String()) }
		}
		for _, tc := range []struct {
			name string
			try  func() string
			want string // "" accepted; else the refusal's reason
		}{
			{"control: the documented URL", at(good, func(*pgTLSURL) {}), ""},
			{"control: verify-full with localhost", at(good, func(u *pgTLSURL) { u.addr = "localhost:" + fmt.Sprint(c.Port) }), ""},
			{"control: verify-ca through 127.0.0.2", at(good, func(u *pgTLSURL) { u.addr, u.mode = proxy.Addr, "verify-ca" }), ""},
			{"control: the chain sent by a forced choice", sentCert(t, good, dir.IssuedCert("kvs"), dir.IssuedKey("kvs")), ""},
			{"by the client: verify-full through 127.0.0.2", at(good, func(u *pgTLSURL) { u.addr = proxy.Addr }), "x509: certificate is valid for 127.0.0.1, not 127.0.0.2"},
			{"by the client: a server certificate of another CA", at(good, func(u *pgTLSURL) { u.root = other.CACert() }), "x509: certificate signed by unknown authority"},
			{"by PostgreSQL: no client certificate", at(good, func(u *pgTLSURL) { u.cert, u.key = "", "" }), "connection requires a valid client certificate"},
			{"by PostgreSQL: a role that is not the certificate's name", at(good, func(u *pgTLSURL) { u.user = "postgres" }), `certificate authentication failed for user "postgres"`},
			// Without the intermediate the leaf does not chain to the root the
			// server names, so crypto/tls sends none; sent anyway, PostgreSQL
			// cannot build the chain.
			{"by the client: the leaf without its intermediate is not sent", at(good, func(u *pgTLSURL) { u.cert = leafOnly }), "connection requires a valid client certificate"},
			{"by PostgreSQL: the leaf without its intermediate, sent", sentCert(t, good, leafOnly, dir.IssuedKey("kvs")), "tls: unknown certificate authority"},
			{"by the client: a client certificate of another CA is not sent", at(good, func(u *pgTLSURL) { u.cert, u.key = other.IssuedCert("kvs"), other.IssuedKey("kvs") }), "connection requires a valid client certificate"},
			{"by PostgreSQL: a client certificate of another CA, sent", sentCert(t, good, other.IssuedCert("kvs"), other.IssuedKey("kvs")), "tls: unknown certificate authority"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := refusal(tc.try)
				switch {
				case tc.want == "" && got != "":
					t.Fatalf("refused: %s", got)
				case tc.want != "" && got == "":
					t.Fatalf("accepted, want refused with %q", tc.want)
				case !strings.Contains(got, tc.want):
					t.Fatalf("refused with %q, want %q", got, tc.want)
				}
				if got != "" {
					t.Logf("refused: %s", got)
				}
			})
		}
	})
}

// TestPostgresTLSRevokedClient revokes the store's certificate: PostgreSQL
// refuses it once it reloaded crl.pem (not before). Before that, the
// controls of crl.pem itself: PostgreSQL needs the CRLs of both CAs of the
// chain in that one file, and refuses every client of a CA whose CRL has
// expired.
func TestPostgresTLSRevokedClient(t *testing.T) {
	t.Parallel()
	dir := newPGPKI(t, pki.ECDSAP256)
	c := pgtest.TLSCluster(t, string(dir))
	u := kvsURL(c, dir).String()
	s := openStore(t, u, "", postgres.Options{MaxConns: 2})
	roundTrip(t, s) // control: accepted before

	// ssl_crl_file makes OpenSSL check every certificate of the chain
	// (X509_V_FLAG_CRL_CHECK_ALL): without the root's CRL, which covers
	// the intermediate, every client is refused.
	inter, err := pki.LoadCert(dir.IntermediateCert())
	if err != nil {
		t.Fatal(err)
	}
	interCRL, rootCRL := splitCRLs(t, dir.CRL(), inter)
	crlFile := filepath.Join(t.TempDir(), "crl.pem")
	withCRL := func(data []byte) {
		t.Helper()
		writeFile(t, crlFile, data, 0o644)
		files := pgtest.PKIFiles(string(dir))
		files.CRL = crlFile
		c.ReloadFiles(t, files)
	}
	withCRL(interCRL)
	if got := refusal(func() string { return openErr(t, u) }); !strings.Contains(got, "tls: unknown certificate authority") {
		t.Fatalf("with only the intermediate's CRL: %q, want refused (unknown certificate authority)", got)
	}
	withCRL(rootCRL)
	if got := refusal(func() string { return openErr(t, u) }); !strings.Contains(got, "tls: unknown certificate authority") {
		t.Fatalf("with only the root's CRL: %q, want refused (unknown certificate authority)", got)
	}
	// An expired CRL refuses every client of its CA: crl.pem must be
	// re-signed (pki crl), copied and reloaded before it runs out.
	key, err := pki.LoadKey(dir.IntermediateKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1 << 20), ThisUpdate: now.Add(-2 * time.Hour), NextUpdate: now.Add(-time.Hour),
	}, inter, key)
	if err != nil {
		t.Fatal(err)
	}
	withCRL(append(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), rootCRL...))
	if got := refusal(func() string { return openErr(t, u) }); !strings.Contains(got, "tls: expired certificate") {
		t.Fatalf("with an expired CRL of the intermediate: %q, want refused (expired certificate)", got)
	}
	c.ReloadFiles(t, pgtest.PKIFiles(string(dir)))
	if got := openErr(t, u); got != "" {
		t.Fatalf("with crl.pem again: %s", got)
	}

	serial := leafOf(t, dir.IssuedCert("kvs"))
	if _, err := pki.Revoke(t.Context(), pki.RevokeOptions{Dir: dir, Target: dir.IssuedCert("kvs"), Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	if got := openErr(t, u); got != "" {
		t.Fatalf("revoked, before the server reloaded its CRL: %s (want still accepted: the server reads crl.pem on reload only)", got)
	}
	c.Reload(t)
	if got := refusal(func() string { return openErr(t, u) }); !strings.Contains(got, "tls: revoked certificate") {
		t.Fatalf("revoked and reloaded: %q, want refused (revoked certificate)", got)
	}

	// A session opened before the revocation is not checked again: it
	// lasts until it ends, or an administrator ends it.
	if _, err := s.Get(t.Context(), "anything"); err != nil && !errors.Is(err, kvs.ErrNotFound) {
		t.Fatalf("a connection opened before the revocation: %v", err)
	}
	c.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_ssl WHERE client_serial = $1::numeric", serial.String())
	postgres.Pool(s).Reset()
	if got := refusal(func() string { return getErr(t, s) }); !strings.Contains(got, "tls: revoked certificate") {
		t.Fatalf("the store's next connection: %q, want refused (revoked certificate)", got)
	}
}

// TestPostgresTLSRenewedClient renews the store's certificate, revokes the
// old one and rotates its CA bundle while the store stays open: new
// connections use the files as they are on disk, a broken file keeps the
// last good ones, and verify-full still checks the host name.
func TestPostgresTLSRenewedClient(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := newPGPKI(t, pki.ECDSAP256)
	c := pgtest.TLSCluster(t, string(dir))
	client := t.TempDir() // the client host's copy of the CA bundle
	root := filepath.Join(client, "root.crt")
	writeFile(t, root, readFile(t, dir.CACert()), 0o644)
	u := kvsURL(c, dir)
	u.root = root
	logs := &logRecords{}
	s := openStore(t, u.String(), "", postgres.Options{MaxConns: 2, Logger: slog.New(logs)})
	pool := postgres.Pool(s)
	first := leafOf(t, dir.IssuedCert("kvs"))
	checkSerial(t, s, first)

	// Negative control: a pool as pgx makes it, which reads the files once.
	plain, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("Renewed", func(t *testing.T) {
		renewed, err := pki.Renew(ctx, pki.RenewOptions{Dir: dir, CertFile: dir.IssuedCert("kvs")})
		if err != nil {
			t.Fatal(err)
		}
		checkSerial(t, s, first) // a connection already open keeps its certificate
		pool.Reset()             // what pool_max_conn_lifetime does in time
		checkSerial(t, s, renewed.New.SerialNumber)
		if n := logs.count(logReloaded); n != 1 {
			t.Errorf("%d reloads logged, want 1", n)
		}

		// Revoke the old certificate: the store keeps working on new
		// connections; pgx's own pool, still on the old one, is refused.
		if _, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: dir, Target: pki.NormalizeSerial(first.Text(16))}); err != nil {
			t.Fatal(err)
		}
		c.Reload(t)
		pool.Reset()
		roundTrip(t, s)
		checkSerial(t, s, renewed.New.SerialNumber)
		plain.Reset()
		ping := func() string {
			if err := plain.Ping(ctx); err != nil {
				return err.Error()
			}
			return ""
		}
		if got := refusal(ping); !strings.Contains(got, "tls: revoked certificate") {
			t.Fatalf("pgx's own pool after the renewal and the revocation: %q, want refused (revoked certificate)", got)
		}
	})

	t.Run("BrokenKeyKeepsLastGood", func(t *testing.T) {
		want := leafOf(t, dir.IssuedCert("kvs"))
		good := readFile(t, dir.IssuedKey("kvs"))
		writeFile(t, dir.IssuedKey("kvs"), []byte("-----BEGIN PRIVATE KEY-----\ntruncated\n"), 0o600)
		for range 2 {
			pool.Reset()
			roundTrip(t, s)
			checkSerial(t, s, want)
		}
		if n := logs.count(logNotReloaded); n != 1 {
			t.Errorf("the broken key was logged %d times, want once", n)
		}
		writeFile(t, dir.IssuedKey("kvs"), good, 0o600)
		pool.Reset()
		roundTrip(t, s)
		checkSerial(t, s, want)
	})

	t.Run("MaxConnLifetime", func(t *testing.T) {
		// pool_max_conn_lifetime retires connections, so that all of them
		// move to a renewed certificate without a reset.
		u2 := u
		u2.extra = "pool_max_conn_lifetime=1s"
		s2 := openStore(t, u2.String(), "", postgres.Options{MaxConns: 1})
		defer s2.Close()
		roundTrip(t, s2)
		renewed, err := pki.Renew(ctx, pki.RenewOptions{Dir: dir, CertFile: dir.IssuedCert("kvs")})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		checkSerial(t, s2, renewed.New.SerialNumber)
	})

	t.Run("CABundle", func(t *testing.T) {
		other := newPGPKI(t, pki.ECDSAP256)
		ours, theirs := readFile(t, dir.CACert()), readFile(t, other.CACert())
		for _, tc := range []struct {
			name   string
			bundle []byte
			want   string
		}{
			{"a new root first, then ours (a root rotation)", append(append([]byte{}, theirs...), ours...), ""},
			{"another CA's root only", theirs, "x509: certificate signed by unknown authority"},
			{"ours again", ours, ""},
		} {
			writeFile(t, root, tc.bundle, 0o644)
			pool.Reset()
			_, err := s.Get(ctx, "anything")
			if errors.Is(err, kvs.ErrNotFound) {
				err = nil
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%s: %v", tc.name, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%s: %v, want refused with %q", tc.name, err, tc.want)
			}
		}
	})

	t.Run("HostNameAfterReload", func(t *testing.T) {
		// The files were reloaded above; verify-full still checks the host
		// name: a server certificate for localhost only is refused at
		// 127.0.0.1.
		if _, err := pki.Issue(ctx, pki.IssueOptions{Dir: dir, Profile: pki.ProfileServer, Name: "postgres-localhost", Hosts: []string{"localhost"}, KeyType: pki.ECDSAP256}); err != nil {
			t.Fatal(err)
		}
		files := pgtest.PKIFiles(string(dir))
		files.Cert, files.Key = dir.IssuedCert("postgres-localhost"), dir.IssuedKey("postgres-localhost")
		c.ReloadFiles(t, files)
		pool.Reset()
		if _, err := s.Get(ctx, "anything"); err == nil || !strings.Contains(err.Error(), "x509: cannot validate certificate for 127.0.0.1") {
			t.Fatalf("a server certificate without 127.0.0.1: %v, want refused by the host name check", err)
		}
		c.ReloadFiles(t, pgtest.PKIFiles(string(dir)))
		pool.Reset()
		roundTrip(t, s)
	})
}

// TestPostgresTLSKeyPermissions: a client key others may read is refused
// before anything is sent, with the chmod that fixes it (libpq's rule).
func TestPostgresTLSKeyPermissions(t *testing.T) {
	dir := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(t.Context(), pki.InitOptions{Dir: dir, KeyType: pki.ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	u := pgTLSURL{addr: "127.0.0.1:1", root: dir.CACert(), cert: dir.ClientCert(), key: dir.ClientKey()}.String()
	for _, tc := range []struct {
		mode os.FileMode
		bad  bool
	}{{0o600, false}, {0o640, true}, {0o604, true}} {
		if err := os.Chmod(dir.ClientKey(), tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := postgres.Open(t.Context(), u, postgres.Options{StatementTimeout: time.Second})
		if err == nil {
			t.Fatalf("mode %04o: opened a store on 127.0.0.1:1", tc.mode)
		}
		if refused := strings.Contains(err.Error(), "run 'chmod 600 "+dir.ClientKey()+"'"); refused != tc.bad {
			t.Errorf("mode %04o: %v (want refused for the mode: %v)", tc.mode, err, tc.bad)
		}
	}
}
