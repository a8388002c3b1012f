package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// runningCA is 'kvsctl pki serve' running in-process.
type runningCA struct {
	url, crlURL, fingerprint string
	stderr                   *lockedBuffer
}

var (
	caListening  = regexp.MustCompile(`the online CA of .* on https://(127\.0\.0\.1:\d+)`)
	caPublic     = regexp.MustCompile(`over plain HTTP on (http://127\.0\.0\.1:\d+)`)
	caRootFinger = regexp.MustCompile(`root fingerprint \(for pki enroll --fingerprint\): ([0-9A-F:]+)`)
)

func startPkiServe(t *testing.T, dir string, extra ...string) *runningCA {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningCA{stderr: &lockedBuffer{}}
	args := append([]string{"kvsctl", "pki", "serve", "--dir", dir, "--listen", "127.0.0.1:0"}, extra...)
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), &lockedBuffer{}, r.stderr) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("pki serve exited %d: %s", code, r.stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := r.stderr.String()
		if m := caListening.FindStringSubmatch(out); m != nil {
			_, port, _ := net.SplitHostPort(m[1])
			r.url = "https://localhost:" + port
			r.fingerprint = caRootFinger.FindStringSubmatch(out)[1]
			if m := caPublic.FindStringSubmatch(out); m != nil {
				r.crlURL = m[1]
			}
			return r
		}
		select {
		case c := <-done:
			done <- c
			t.Fatalf("pki serve exited %d: %s", c, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pki serve did not start: %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestTwoHostEnrollment is the README's story: the CA host serves, makes
// a token; the new host enrolls with it, checking the CA by fingerprint,
// and its certificate works with kvsctl serve on the first host's CA; the
// token cannot be used twice; the renewal agent starts on the files.
func TestTwoHostEnrollment(t *testing.T) {
	root := t.TempDir()
	caDir := filepath.Join(root, "ca")
	mustRun(t, "pki", "init", "--dir", caDir, "--key-type", "ecdsa-p256", "--hosts", "localhost,127.0.0.1")
	ca := startPkiServe(t, caDir, "--admin", "ops", "--cert-ttl", "1h")

	host := filepath.Join(root, "host")
	token := strings.TrimSpace(mustRun(t, "pki", "token", "client", "--profile", "client", "--dir", caDir))
	if !strings.HasPrefix(token, "kvs1.") {
		t.Fatalf("token %q", token)
	}
	out := mustRun(t, "pki", "enroll", "--ca-url", ca.url, "--fingerprint", ca.fingerprint, "--token", token, "--dir", host, "--key-type", "ecdsa-p256", "client")
	for _, want := range []string{"enrolled CN=client", "client.key (0600)", "client.crt", "ca.crt (the trust bundle)", "kvsctl pki renew --daemon"} {
		if !strings.Contains(out, want) {
			t.Errorf("enroll output lacks %q:\n%s", want, out)
		}
	}
	if fi, err := os.Stat(filepath.Join(host, "client.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the enrolled key: %v %v", fi, err)
	}
	// The enrolled certificate verifies against the CA host's bundle.
	if code, _, errs := runPKI(t, "pki", "verify", filepath.Join(host, "client.crt"), "--dir", caDir, "--usage", "client"); code != 0 {
		t.Errorf("verify the enrolled certificate: %s", errs)
	}
	// The token is spent; a wrong fingerprint is refused before anything.
	code, _, errs := runPKI(t, "pki", "enroll", "--ca-url", ca.url, "--fingerprint", ca.fingerprint, "--token", token, "--dir", filepath.Join(root, "again"), "client")
	if code != 1 || !strings.Contains(errs, "was used at") {
		t.Errorf("a replayed token: %d %s", code, errs)
	}
	other := filepath.Join(root, "other")
	mustRun(t, "pki", "init", "--dir", other, "--key-type", "ecdsa-p256")
	wrongFP := pki.Fingerprint(certOf(t, filepath.Join(other, "ca.crt")).Raw)
	tok2 := strings.TrimSpace(mustRun(t, "pki", "token", "x", "--profile", "client", "--dir", caDir))
	code, _, errs = runPKI(t, "pki", "enroll", "--ca-url", ca.url, "--fingerprint", wrongFP, "--token", tok2, "--dir", filepath.Join(root, "x"), "x")
	if code != 1 || !strings.Contains(errs, "fingerprint") {
		t.Errorf("a wrong fingerprint: %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(root, "x")); err == nil {
		t.Error("a refused enrollment wrote files")
	}
	// The renewal agent schedules the renewal of the enrolled pair.
	ctx, cancel := context.WithCancel(context.Background())
	agentErr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"kvsctl", "pki", "renew", "--daemon", "--ca-url", ca.url, "--cert", filepath.Join(host, "client.crt"),
			"--key", filepath.Join(host, "client.key"), "--ca-file", filepath.Join(host, "ca.crt")}, strings.NewReader(""), &lockedBuffer{}, agentErr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(agentErr.String(), "renewal scheduled") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 || !strings.Contains(agentErr.String(), "renewal scheduled") {
		t.Errorf("the agent: exit %d\n%s", code, agentErr.String())
	}
	if log := ca.stderr.String(); !strings.Contains(log, "op=enroll outcome=ok identity=client") || !strings.Contains(log, "op=enroll outcome=refused") {
		t.Errorf("the CA's audit log:\n%s", log)
	}
}

// TestCRLDistributionPoint: certificates of a CA with a CRL URL name it,
// and openssl fetches the CRL there (-crl_download) and refuses a revoked
// certificate; the control is the same check before the revocation.
func TestCRLDistributionPoint(t *testing.T) {
	ossl := requireTool(t, "openssl")
	root := t.TempDir()
	dir := filepath.Join(root, "ca")
	port := freePort(t)
	base := "http://127.0.0.1:" + port + "/v1/pki/crl"
	mustRun(t, "pki", "init", "--dir", dir, "--key-type", "ecdsa-p256", "--crl-url", base)
	mustRun(t, "pki", "issue", "client", "alice", "--dir", dir, "--key-type", "ecdsa-p256")
	d := pki.Dir(dir)
	alice := certOf(t, d.IssuedCert("alice"))
	inter := certOf(t, d.IntermediateCert())
	if len(alice.CRLDistributionPoints) != 1 || alice.CRLDistributionPoints[0] != base+"/"+pki.SerialHex(inter) {
		t.Fatalf("distribution points %v", alice.CRLDistributionPoints)
	}
	if dp := inter.CRLDistributionPoints; len(dp) != 1 || !strings.HasPrefix(dp[0], base+"/") {
		t.Errorf("the intermediate's distribution points %v, want the root's CRL", dp)
	}
	startPkiServe(t, dir, "--crl-listen", "127.0.0.1:"+port)
	verify := func() (string, error) {
		out, err := exec.Command(ossl, "verify", "-crl_download", "-crl_check", "-CAfile", d.CACert(), "-untrusted", d.IssuedCert("alice"), d.IssuedCert("alice")).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err != nil {
		t.Fatalf("control: openssl -crl_download before the revocation: %v\n%s", err, out)
	}
	mustRun(t, "pki", "revoke", d.IssuedCert("alice"), "--dir", dir)
	if out, err := verify(); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl -crl_download after the revocation: %v\n%s", err, out)
	}
	out := mustRun(t, "pki", "ca", "set", "--dir", dir)
	if !strings.Contains(out, "crl-url: "+base) {
		t.Errorf("pki ca set: %s", out)
	}
}

// TestRevocationReachesServers: a host enrolled through the online CA runs
// 'kvsctl serve --crl-url' on the CA's CRLs; a client revoked on the CA
// is refused by that server within --crl-refresh plus the reload, and the
// time it took is measured. The control is the same client before.
func TestRevocationReachesServers(t *testing.T) {
	root := t.TempDir()
	caDir := filepath.Join(root, "ca")
	mustRun(t, "pki", "init", "--dir", caDir, "--key-type", "ecdsa-p256", "--hosts", "localhost,127.0.0.1")
	ca := startPkiServe(t, caDir, "--crl-listen", "127.0.0.1:0")
	host := filepath.Join(root, "host")
	enroll := func(name string, tokenArgs ...string) {
		tok := strings.TrimSpace(mustRun(t, append([]string{"pki", "token", name, "--dir", caDir}, tokenArgs...)...))
		mustRun(t, "pki", "enroll", "--ca-url", ca.url, "--fingerprint", ca.fingerprint, "--token", tok, "--dir", host, "--key-type", "ecdsa-p256", name)
	}
	enroll("server", "--profile", "server", "--hosts", "localhost,127.0.0.1")
	enroll("client", "--profile", "client")
	srv := startServeCLI(t, host, "--crl-url", ca.crlURL+"/v1/pki/crls", "--crl-refresh", "1s", "--reload-interval", "200ms")
	put := func() (int, string) {
		code, _, errs := runPKI(t, "put", "k", "v", "--server", srv.server, "--dir", host)
		return code, errs
	}
	if code, errs := put(); code != 0 {
		t.Fatalf("control: the enrolled client before the revocation: %s", errs)
	}
	revoked := time.Now()
	mustRun(t, "pki", "revoke", filepath.Join(host, "client.crt"), "--dir", caDir)
	for {
		code, errs := put()
		if code != 0 {
			// Refused at the handshake, or, when the connection was made
			// just before the new CRL loaded, by the per-request check (403).
			if !strings.Contains(errs, "refused") && !strings.Contains(errs, "rejected") && !strings.Contains(errs, "client certificate revoked") {
				t.Errorf("after the revocation: %s", errs)
			}
			break
		}
		if time.Since(revoked) > 6*time.Second {
			t.Fatal("the server still accepts the revoked client 6s after the revocation (--crl-refresh 1s)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the revoked client was refused %v after 'pki revoke' (--crl-refresh 1s)", time.Since(revoked).Round(10*time.Millisecond))
	if _, err := os.Stat(filepath.Join(host, "crl-cache")); err != nil {
		t.Errorf("no CRL cache: %v", err)
	}
}

// TestServeCRLFromDistributionPoints: 'serve --crl-url dp' fetches the
// CRLs its own chain names, the intermediate's and the root's, and a
// revocation reaches it through them.
func TestServeCRLFromDistributionPoints(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ca")
	port := freePort(t)
	mustRun(t, "pki", "init", "--dir", dir, "--key-type", "ecdsa-p256", "--hosts", "localhost,127.0.0.1", "--crl-url", "http://127.0.0.1:"+port+"/v1/pki/crl")
	startPkiServe(t, dir, "--crl-listen", "127.0.0.1:"+port)
	srv := startServeCLI(t, dir, "--crl-url", "dp", "--crl-refresh", "1s", "--reload-interval", "200ms")
	if code, _, errs := runPKI(t, "put", "k", "v", "--server", srv.server, "--dir", dir); code != 0 {
		t.Fatalf("control: %s", errs)
	}
	mustRun(t, "pki", "revoke", filepath.Join(dir, "client.crt"), "--dir", dir)
	deadline := time.Now().Add(6 * time.Second)
	for {
		if code, _, _ := runPKI(t, "put", "k", "v", "--server", srv.server, "--dir", dir); code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation did not reach the server through the distribution points")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := strings.Count(srv.stderr.String(), `msg="crl fetched"`); n < 2 {
		t.Errorf("%d CRL fetches logged, want one per distribution point at least:\n%s", n, srv.stderr.String())
	}
}
