package main

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPkiTrustInstall installs the CA into this machine's system trust store,
// checks from new processes (curl against a TLS server using the CA's server
// certificate, and openssl verify -CApath) that the system now trusts it,
// uninstalls it and checks that it no longer does. It changes the machine,
// so it only runs with KVS_TEST_TRUSTSTORE=1, which .ci/run sets on its
// throwaway machine (as root).
func TestPkiTrustInstall(t *testing.T) {
	if os.Getenv("KVS_TEST_TRUSTSTORE") != "1" {
		t.Skip("SKIPPING trust store test: set KVS_TEST_TRUSTSTORE=1 to let it install a CA into this machine's system trust store (CI does)")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is not installed, and CI=true requires the trust store test to run")
		}
		t.Skip("SKIPPING trust store test: curl is not installed")
	}
	f := newFixture(t)
	dir := string(f.dir)
	cert, err := tls.LoadX509KeyPair(f.dir.ServerCert(), f.dir.ServerKey())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "trusted\n")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	defer srv.Close()

	// probe asks new processes whether the system trusts the CA: curl with
	// its default CA store, and openssl with the system's hashed directory.
	probe := func() (bool, string) {
		out, err := exec.Command(curl, "-sS", "--max-time", "10", srv.URL).CombinedOutput()
		curlOK := err == nil && strings.Contains(string(out), "trusted")
		msg := "curl: " + strings.TrimSpace(string(out))
		if bin, err := exec.LookPath("openssl"); err == nil {
			vout, verr := exec.Command(bin, "verify", "-CApath", "/etc/ssl/certs", f.dir.ServerCert()).CombinedOutput()
			if (verr == nil) != curlOK {
				t.Errorf("curl and openssl disagree: %s / openssl: %s", msg, vout)
			}
			msg += "; openssl: " + strings.TrimSpace(string(vout))
		}
		return curlOK, msg
	}

	if ok, msg := probe(); ok {
		t.Fatalf("the CA is trusted before install (a leftover from an earlier run?): %s", msg)
	}
	t.Cleanup(func() { runPKI(t, "pki", "trust", "uninstall", "--dir", dir) })
	out := mustRun(t, "pki", "trust", "install", "--dir", dir)
	if !strings.Contains(out, "installed system: ") || !strings.Contains(out, "SHA-256") {
		t.Errorf("install output:\n%s", out)
	}
	if ok, msg := probe(); !ok {
		t.Fatalf("after install, the system does not trust the CA: %s", msg)
	}
	out = mustRun(t, "pki", "trust", "uninstall", "--dir", dir)
	if !strings.Contains(out, "removed system: ") {
		t.Errorf("uninstall output:\n%s", out)
	}
	if ok, msg := probe(); ok {
		t.Fatalf("after uninstall, the system still trusts the CA: %s", msg)
	}
}
