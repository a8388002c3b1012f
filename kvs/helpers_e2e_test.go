package kvs_test

// Helpers of the end-to-end tests in package kvs_test (the *_e2e_test.go
// files besides server_e2e_test.go). They build on the bridges at the end of
// e2e_helpers_test.go and on the PostgreSQL helpers of
// store_postgres_test.go.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

// pkiModes are the two layouts every end-to-end test runs in.
var pkiModes = []struct {
	name       string
	selfSigned bool
}{{"ca", false}, {"self-signed", true}}

// clientFiles are the default client's files of a PKI directory.
func clientFiles(t *testing.T, d pki.Dir) kvs.TLSFiles {
	t.Helper()
	f, err := kvs.ClientFilesFromDir(string(d))
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
func clientTLS(t *testing.T, files kvs.TLSFiles, mutate func(*tls.Config)) *tls.Config {
	t.Helper()
	cfg, err := files.ClientConfig(kvs.ClientOptions{ServerName: "localhost"})
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
func freshClient(t *testing.T, addr string, cfg *tls.Config, http1 bool) *kvs.Client {
	t.Helper()
	c, err := kvs.NewClientTLS(kvs.ClientConfig{Server: strings.TrimPrefix(serverURL(addr), "https://"), NewConn: true, HTTP1: http1, Timeout: 10 * time.Second}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
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
// returns the files to connect with. Zero times mean the default validity.
func issueClient(t *testing.T, d pki.Dir, name string, notBefore, notAfter time.Time) (kvs.TLSFiles, *pki.Issued) {
	t.Helper()
	iss, err := pki.Issue(context.Background(), pki.IssueOptions{
		Dir: d, Profile: pki.ProfileClient, Name: name, KeyType: pki.ECDSAP256,
		NotBefore: notBefore, NotAfter: notAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	return kvs.TLSFiles{Cert: iss.CertFile, Key: iss.KeyFile, CA: d.CACert()}, iss
}

// expectRejected fails unless err says the server refused this client.
func expectRejected(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, kvs.ErrRejected) {
		t.Errorf("%s: err = %v, want kvs.ErrRejected", what, err)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	kvs.E2EWaitFor(t, timeout, what, cond)
}

// logRecords parses the server's JSON log lines with the given message.
func logRecords(t *testing.T, ts *kvs.E2EServer, msg string) []map[string]any {
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
func refusedWith(t *testing.T, ts *kvs.E2EServer, want string) map[string]any {
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
	return kvs.E2EPKI(t, selfSigned)
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
