package server

// Interop with curl, a client nobody here wrote: put and get with the client
// certificate, in both PKI modes; without a certificate, or with one of
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

			// Put and get with the client certificate.
			out, stderr, err := runCurl(t, curl, ts.addr, append(withCert, "--fail", "-X", "PUT", "--data-binary", "@"+valueFile, base+"/v1/kv/curl%2Fkey")...)
			if err != nil {
				t.Fatalf("curl PUT: %v: %s", err, stderr)
			}
			if !regexp.MustCompile(`^\{"key":"curl/key","version":\d+\}\n$`).Match(out) {
				t.Errorf("curl PUT answered %q", out)
			}
			out, stderr, err = runCurl(t, curl, ts.addr, append(withCert, "--fail", base+"/v1/kv/curl%2Fkey")...)
			if err != nil || !bytes.Equal(out, value) {
				t.Fatalf("curl GET: %d bytes, %v: %s; want the %d bytes put", len(out), err, stderr, len(value))
			}
			if e, err := ts.store.Get(context.Background(), "curl/key"); err != nil || !bytes.Equal(e.Value, value) {
				t.Errorf("the store does not hold curl's value under curl/key: %v", err)
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
