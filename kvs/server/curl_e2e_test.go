package server

// Interop with curl, a client nobody here wrote: put and get with the client
// certificate, in both PKI modes, over HTTP/1.1 and HTTP/2; without a certificate, or with one of
// another PKI, curl is refused and nothing is written.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
)

// curlPath finds curl; without it the test skips, or fails under CI=true.
func curlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("curl is not installed: CI=true requires the curl interop tests")
	}
	t.Skip("!!! curl is not installed: curl interop tests NOT RUN !!!")
	return ""
}

// runCurl runs curl without ~/.curlrc or proxies, resolving localhost to
// the server's address.
func runCurl(t *testing.T, curl, addr string, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	full := append([]string{"-q", "--silent", "--show-error", "--noproxy", "*", "--max-time", "10",
		"--resolve", "localhost:" + port + ":127.0.0.1"}, args...)
	cmd := exec.Command(curl, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.Bytes(), errb.String(), err
}

func TestE2ECurl(t *testing.T) {
	curl := curlPath(t)
	for _, mode := range pkiModes {
		t.Run(mode.name, func(t *testing.T) {
			d := testPKI(t, mode.selfSigned)
			ts := startServer(t, d, nil, nil)
			f := clientFiles(t, d)
			base := serverURL(ts.addr)
			withCert := []string{"--cert", f.Cert, "--key", f.Key, "--cacert", f.CA}
			value := binaryValue()
			valueFile := filepath.Join(t.TempDir(), "value")
			if err := os.WriteFile(valueFile, value, 0o600); err != nil {
				t.Fatal(err)
			}

			// Put and get with the client certificate, over both protocols;
			// curl reports the one it used.
			for _, proto := range []struct{ flag, version string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
				t.Run(strings.TrimPrefix(proto.flag, "--"), func(t *testing.T) {
					key := "curl/key" + proto.version
					url := base + "/v1/kv/" + strings.ReplaceAll(key, "/", "%2F")
					args := append(withCert, proto.flag, "--fail", "-w", "\n%{http_version}")
					out, stderr, err := runCurl(t, curl, ts.addr, append(args, "-X", "PUT", "--data-binary", "@"+valueFile, url)...)
					if err != nil {
						t.Fatalf("curl PUT: %v: %s", err, stderr)
					}
					if !regexp.MustCompile(`^\{"key":"` + regexp.QuoteMeta(key) + `","version":\d+\}\n\n` + regexp.QuoteMeta(proto.version) + `$`).Match(out) {
						t.Errorf("curl PUT answered %q, want the version and HTTP/%s", out, proto.version)
					}
					out, stderr, err = runCurl(t, curl, ts.addr, append(args, url)...)
					if want := append(append([]byte{}, value...), "\n"+proto.version...); err != nil || !bytes.Equal(out, want) {
						t.Fatalf("curl GET: %d bytes, %v: %s; want the %d bytes put and HTTP/%s", len(out), err, stderr, len(value), proto.version)
					}
					if e, err := ts.store.Get(context.Background(), key); err != nil || !bytes.Equal(e.Value, value) {
						t.Errorf("the store does not hold curl's value under %s: %v", key, err)
					}
				})
			}

			// Refused: no client certificate, and one of another PKI.
			other := clientFiles(t, otherPKI(t, mode.selfSigned))
			for _, tc := range []struct {
				name   string
				args   []string
				reason string
			}{
				{"no certificate", []string{"--cacert", f.CA}, "didn't provide a certificate"},
				{"another PKI's certificate", []string{"--cert", other.Cert, "--key", other.Key, "--cacert", f.CA}, "unknown authority"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					out, stderr, err := runCurl(t, curl, ts.addr, append(tc.args, "-X", "PUT", "--data-binary", "rogue", base+"/v1/kv/rogue")...)
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						t.Fatalf("curl without a valid certificate succeeded: %v, %q", err, out)
					}
					t.Logf("curl exit %d: %s", ee.ExitCode(), strings.TrimSpace(stderr))
					refusedWith(t, ts, tc.reason)
					if _, err := ts.store.Get(context.Background(), "rogue"); !errors.Is(err, kvs.ErrNotFound) {
						t.Errorf("a refused curl wrote: %v", err)
					}
				})
			}
		})
	}
}
