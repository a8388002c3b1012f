package caclient_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caclient"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// switchable forwards connections to a target while up, and refuses them
// while down: a CA that goes away and comes back.
type switchable struct {
	ln     net.Listener
	target string
	up     atomic.Bool
}

func newSwitchable(t *testing.T, target string) *switchable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &switchable{ln: ln, target: target}
	s.up.Store(true)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.up.Load() {
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, c)
				io.Copy(c, b)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// ca is an online CA on a fresh directory, reached through a switch.
type ca struct {
	dir pki.Dir
	url string
	sw  *switchable
}

func startCA(t *testing.T, ttl time.Duration) *ca {
	t.Helper()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	srv, err := caserver.New(caserver.Config{Dir: d, CertTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	sw := newSwitchable(t, ln.Addr().String())
	_, port, _ := net.SplitHostPort(sw.ln.Addr().String())
	return &ca{dir: d, url: "https://localhost:" + port, sw: sw}
}

// enroll enrolls name into files under a new directory, as 'pki enroll'
// does: key, certificate chain, trust bundle.
func (c *ca) enroll(t *testing.T, name string) (caclient.Pair, string) {
	t.Helper()
	tok, _, err := pki.NewToken(context.Background(), pki.TokenOptions{Dir: c.dir, Name: name, Profile: pki.ProfileClient})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.LoadCert(c.dir.CACert())
	_, bundle, err := caclient.Bootstrap(context.Background(), c.url, pki.Fingerprint(root.Raw))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	cl, err := caclient.New(c.url, caclient.Options{Roots: pool})
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := caclient.NewCSR(pki.ECDSAP256, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := cl.Enroll(context.Background(), tok, csr, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := caclient.Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	pemKey, _ := pki.MarshalKey(key, nil)
	os.WriteFile(p.Key, pemKey, 0o600)
	os.WriteFile(p.Cert, []byte(ans.Certificate), 0o644)
	caFile := filepath.Join(dir, "ca.crt")
	os.WriteFile(caFile, bundle, 0o644)
	return p, caFile
}

func leafOf(t *testing.T, p caclient.Pair) *x509.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// TestAgentRenews: the agent renews a certificate once its time has come,
// with a new key, writes the pair so that it loads, keeps the identity,
// and runs the command after each renewal; the CA records the renewal.
func TestAgentRenews(t *testing.T) {
	t.Parallel()
	c := startCA(t, time.Hour)
	p, caFile := c.enroll(t, "alice")
	old := leafOf(t, p)
	out := filepath.Join(t.TempDir(), "ran")
	var renewals atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &caclient.Agent{
		CAURL: c.url, CAFile: caFile, Pairs: []caclient.Pair{p},
		Exec: []string{"sh", "-c", `echo "$KVS_RENEWED_CERT" >> ` + out},
		// Two thirds of an hour are past already for the agent.
		Now:     func() time.Time { return time.Now().Add(45 * time.Minute) },
		Renewed: func(caclient.Pair, *x509.Certificate, *x509.Certificate) { renewals.Add(1); cancel() },
	}
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if renewals.Load() != 1 {
		t.Fatalf("%d renewals", renewals.Load())
	}
	renewed := leafOf(t, p)
	if pki.SerialHex(renewed) == pki.SerialHex(old) || renewed.Subject.String() != old.Subject.String() || !pki.KeyMatches(renewed, mustKey(t, p.Key)) {
		t.Errorf("after renewal: serial %s (old %s), subject %s", pki.SerialHex(renewed), pki.SerialHex(old), renewed.Subject)
	}
	if _, err := os.Stat(p.Cert + ".prev"); err == nil {
		t.Error("the previous pair was left behind")
	}
	if fi, _ := os.Stat(p.Key); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	if data, _ := os.ReadFile(out); strings.TrimSpace(string(data)) != p.Cert {
		t.Errorf("--exec ran with %q", data)
	}
	inv, _ := c.dir.LoadInventory()
	if r := inv.Find(pki.SerialHex(old)); r == nil || r.ReplacedBy != pki.SerialHex(renewed) {
		t.Errorf("the CA's record of the old certificate: %+v", r)
	}
}

// TestAgentBacksOffWhileTheCAIsDown: renewals fail while the CA is away,
// are retried with backoff, and succeed when it is back.
func TestAgentBacksOffWhileTheCAIsDown(t *testing.T) {
	t.Parallel()
	c := startCA(t, time.Hour)
	p, caFile := c.enroll(t, "bob")
	c.sw.up.Store(false)
	var log syncLog
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var renewedAt atomic.Int64
	a := &caclient.Agent{
		CAURL: c.url, CAFile: caFile, Pairs: []caclient.Pair{p}, MaxWait: 200 * time.Millisecond,
		Now:    func() time.Time { return time.Now().Add(45 * time.Minute) },
		Logger: log.logger(),
		Renewed: func(caclient.Pair, *x509.Certificate, *x509.Certificate) {
			renewedAt.Store(time.Now().UnixNano())
			cancel()
		},
	}
	up := make(chan time.Time, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		up <- time.Now()
		c.sw.up.Store(true)
	}()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	back := <-up
	if renewedAt.Load() < back.UnixNano() {
		t.Error("renewed while the CA was down")
	}
	if n := strings.Count(log.String(), "renewal failed; retrying"); n < 2 {
		t.Errorf("%d retries logged while the CA was down, want some:\n%s", n, log.String())
	}
}

// TestAgentGivesUpOnExpiry: a certificate that expired before it could be
// renewed is an error (it cannot authenticate its own renewal); a CA that
// refuses (a revoked certificate) too, without retrying forever.
func TestAgentGivesUpOnExpiry(t *testing.T) {
	t.Parallel()
	c := startCA(t, time.Hour)
	p, caFile := c.enroll(t, "carol")
	a := &caclient.Agent{CAURL: c.url, CAFile: caFile, Pairs: []caclient.Pair{p}, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	if err := a.Run(context.Background()); !errors.Is(err, caclient.ErrExpired) || !strings.Contains(err.Error(), "enroll the host again") {
		t.Errorf("an expired certificate: %v", err)
	}
	p2, caFile2 := c.enroll(t, "dave")
	if _, err := pki.Revoke(context.Background(), pki.RevokeOptions{Dir: c.dir, Target: pki.SerialHex(leafOf(t, p2))}); err != nil {
		t.Fatal(err)
	}
	a = &caclient.Agent{CAURL: c.url, CAFile: caFile2, Pairs: []caclient.Pair{p2}, Now: func() time.Time { return time.Now().Add(45 * time.Minute) }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.Run(ctx)
	var r *caclient.RefusedError
	if !errors.As(err, &r) || !strings.Contains(r.Message, "cannot renew itself") {
		t.Errorf("a revoked certificate: %v", err)
	}
}

// TestAgentRecoversFromACutRenewal: a renewal cut off between the key and
// the certificate leaves the previous pair, which renews.
func TestAgentRecoversFromACutRenewal(t *testing.T) {
	t.Parallel()
	c := startCA(t, time.Hour)
	p, caFile := c.enroll(t, "erin")
	// The state after the crash: the previous pair kept, a new key written
	// over the old one, the certificate not yet.
	os.WriteFile(p.Key+".prev", mustReadFile(t, p.Key), 0o600)
	os.WriteFile(p.Cert+".prev", mustReadFile(t, p.Cert), 0o644)
	k, _ := pki.GenerateKey(pki.ECDSAP256)
	pemKey, _ := pki.MarshalKey(k, nil)
	os.WriteFile(p.Key, pemKey, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &caclient.Agent{CAURL: c.url, CAFile: caFile, Pairs: []caclient.Pair{p},
		Now:     func() time.Time { return time.Now().Add(45 * time.Minute) },
		Renewed: func(caclient.Pair, *x509.Certificate, *x509.Certificate) { cancel() }}
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(p.Cert, p.Key); err != nil {
		t.Errorf("the pair after recovery: %v", err)
	}
}

func mustKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	k, err := pki.LoadKey(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncLog collects the agent's log.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
