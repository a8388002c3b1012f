package main

import (
	"io/fs"
	"os"
	"strings"
	"testing"
)

// TestPkiSecretFilesMustBePrivate: a passphrase or password file that
// group or others can read is refused, with the chmod that fixes it,
// before anything is done: --passphrase-file of every pki command that
// takes one, and --password-file of 'pki export'.
func TestPkiSecretFilesMustBePrivate(t *testing.T) {
	for _, tc := range []struct {
		name string
		what string // "passphrase" or "password"
		mode fs.FileMode
		args func(f pkiFixture, secret string) []string
	}{
		{"issue --passphrase-file", "passphrase", 0o644, func(f pkiFixture, s string) []string {
			return []string{"pki", "issue", "client", "x", "--passphrase-file", s, "--dir", string(f.dir)}
		}},
		{"crl --passphrase-file", "passphrase", 0o640, func(f pkiFixture, s string) []string {
			return []string{"pki", "crl", "--passphrase-file", s, "--dir", string(f.dir)}
		}},
		{"init --passphrase-file", "passphrase", 0o604, func(f pkiFixture, s string) []string {
			return []string{"pki", "init", "--passphrase-file", s, "--dir", f.path("new"), "--key-type", "ecdsa-p256"}
		}},
		{"export --password-file", "password", 0o644, func(f pkiFixture, s string) []string {
			return []string{"pki", "export", "client", "--p12", f.path("client.p12"), "--password-file", s, "--dir", string(f.dir)}
		}},
		{"export --password-file, group only", "password", 0o640, func(f pkiFixture, s string) []string {
			return []string{"pki", "export", "client", "--p12", f.path("client.p12"), "--password-file", s, "--dir", string(f.dir)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			secret := f.write(t, "secret", []byte("hunter2\n"), 0o600)
			if err := os.Chmod(secret, tc.mode); err != nil { // umask-proof
				t.Fatal(err)
			}
			before := snapshot(t, f.root)
			code, out, errs := runPKI(t, tc.args(f, secret)...)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			if want := tc.what + " file " + secret + " is readable by group or others"; !strings.Contains(errs, want) {
				t.Errorf("stderr %q lacks %q", errs, want)
			}
			if want := "run 'chmod 600 " + secret + "'"; !strings.Contains(errs, want) {
				t.Errorf("stderr %q lacks %q", errs, want)
			}
			if strings.Contains(errs, "hunter2") {
				t.Error("the secret is printed")
			}
			if diffs := diffSnapshots(before, snapshot(t, f.root)); len(diffs) > 0 {
				t.Errorf("files changed: %v", diffs)
			}
		})
	}
}
