package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"software.sslmate.com/src/go-pkcs12"
)

// runPKI runs one kvsctl command line through run, the binary's code path.
//
// The pki command tests do not call t.Parallel: urfave/cli v2 writes to its
// package-level HelpFlag and VersionFlag on every run, which the race
// detector reports when two runs overlap.
func runPKI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"kvsctl"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := runPKI(t, args...)
	if code != 0 {
		t.Fatalf("kvsctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// pkiFixture is a temporary root holding a PKI directory "certs" and any
// input files a test writes next to it.
type pkiFixture struct {
	root string
	dir  pki.Dir
}

func (f pkiFixture) path(name string) string { return filepath.Join(f.root, name) }

func (f pkiFixture) write(t *testing.T, name string, data []byte, mode fs.FileMode) string {
	t.Helper()
	p := f.path(name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// newFixture creates a CA-mode (or self-signed) PKI with ECDSA keys through
// the command line.
func newFixture(t *testing.T, extra ...string) pkiFixture {
	t.Helper()
	f := pkiFixture{root: t.TempDir()}
	f.dir = pki.Dir(f.path("certs"))
	mustRun(t, append([]string{"pki", "init", "--dir", string(f.dir), "--key-type", "ecdsa-p256", "--hosts", "localhost,127.0.0.1"}, extra...)...)
	return f
}

// snapshot records every file and directory under root: name, mode and a
// hash of the content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		entry := fi.Mode().String()
		if !d.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			entry += " " + hex.EncodeToString(sum[:8])
		}
		snap[rel] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func diffSnapshots(before, after map[string]string) []string {
	var diffs []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			diffs = append(diffs, "removed "+k)
		} else if w != v {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s -> %s", k, v, w))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, "created "+k)
		}
	}
	return diffs
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrPEM(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, ecKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// writeCA writes a CA created at "at" (in the past for an expired CA, in
// the future for a not-yet-valid one) as the fixture's CA.
func writeCA(t *testing.T, f pkiFixture, at time.Time) {
	t.Helper()
	k := ecKey(t)
	ca, err := pki.NewCA("kvsctl CA", k, at)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, _ := pki.MarshalKey(k, nil)
	if err := pki.WriteFileAtomic(f.dir.CAKey(), pemKey, pki.KeyMode, true); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(f.dir.CACert(), pki.PEMCert(ca.Cert.Raw), pki.CertMode, true); err != nil {
		t.Fatal(err)
	}
}

func certOf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := pki.LoadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPkiCommands runs every pki command successfully and checks its output
// and its effect.
func TestPkiCommands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, f pkiFixture) []string // returns the command line
		want  []string                                  // substrings of stdout
		check func(t *testing.T, f pkiFixture, stdout string)
	}{
		{
			name: "init CA mode",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "init", "--dir", f.path("new"), "--key-type", "ecdsa-p256", "--client", "alice", "--hosts", "a.example", "--hosts", "10.0.0.1,b.example"}
			},
			want: []string{"Created a root CA, an issuing intermediate", "ca.key", "ca.crt", "intermediate.key", "intermediate.crt", "intermediates.pem",
				"crl.pem", "inventory.json", "server.crt", "client.crt", "CN=alice", "(then the intermediate)", "kvsctl pki root export",
				"DNS:a.example, DNS:b.example, IP:10.0.0.1", "export KVS_CERTS=", "kvsctl serve", "kvsctl put hello world", "kvsctl get hello"},
			check: func(t *testing.T, f pkiFixture, _ string) {
				d := pki.Dir(f.path("new"))
				for path, mode := range map[string]fs.FileMode{string(d): 0o700 | fs.ModeDir, d.CAKey(): 0o600, d.ServerKey(): 0o600, d.ClientKey(): 0o600,
					d.IntermediateKey(): 0o600, d.IntermediateCert(): 0o644, d.Intermediates(): 0o644,
					d.CACert(): 0o644, d.ServerCert(): 0o644, d.ClientCert(): 0o644, d.CRL(): 0o644, d.Inventory(): 0o644} {
					fi, err := os.Stat(path)
					if err != nil || fi.Mode() != mode {
						t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode(), mode, err)
					}
				}
				if c := certOf(t, d.ClientCert()); c.Subject.CommonName != "alice" {
					t.Errorf("client CN %q", c.Subject.CommonName)
				}
			},
		},
		{
			name: "init default key type is RSA-2048",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "init", "--dir", f.path("rsa")}
			},
			want: []string{"rsa2048 keys"},
			check: func(t *testing.T, f pkiFixture, _ string) {
				d := pki.Dir(f.path("rsa"))
				for _, p := range []string{d.CACert(), d.ServerCert(), d.ClientCert()} {
					if k, ok := certOf(t, p).PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
						t.Errorf("%s: key %s", p, pki.DescribeKey(certOf(t, p).PublicKey))
					}
				}
				// Default SANs: localhost, 127.0.0.1, ::1.
				srv := certOf(t, d.ServerCert())
				for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
					if srv.VerifyHostname(h) != nil {
						t.Errorf("default SANs lack %s", h)
					}
				}
			},
		},
		{
			name: "init self-signed",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "init", "--self-signed", "--dir", f.path("ss"), "--key-type", "ed25519"}
			},
			want: []string{"self-signed PKI", "the client trusts exactly this", "kvsctl serve"},
			check: func(t *testing.T, f pkiFixture, _ string) {
				if m, _ := pki.Dir(f.path("ss")).Mode(); m != pki.ModeSelfSigned {
					t.Errorf("mode %v", m)
				}
			},
		},
		{
			name: "init --force replaces",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "init", "--dir", string(f.dir), "--key-type", "ecdsa-p256", "--force"}
			},
			want: []string{"Created a root CA, an issuing intermediate"},
		},
		{
			name: "issue with flags after the arguments",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "server", "web", "--dir", string(f.dir), "--hosts", "web.example,10.1.1.1", "--days", "30", "--key-type", "ed25519"}
			},
			want: []string{`issued server certificate "web"`, "SANs     DNS:web.example, IP:10.1.1.1", "issued/web.key (0600)", "issued/web.crt"},
			check: func(t *testing.T, f pkiFixture, _ string) {
				c := certOf(t, f.dir.IssuedCert("web"))
				if d := c.NotAfter.Sub(c.NotBefore); d > 30*24*time.Hour+time.Hour || d < 30*24*time.Hour {
					t.Errorf("validity %v", d)
				}
				if fi, _ := os.Stat(f.dir.IssuedKey("web")); fi.Mode().Perm() != 0o600 {
					t.Errorf("key mode %v", fi.Mode())
				}
			},
		},
		{
			name: "issue --json",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "--dir", string(f.dir), "--key-type", "ecdsa-p256", "--json", "client", "bob"}
			},
			check: func(t *testing.T, f pkiFixture, out string) {
				var r struct{ Serial, Name, Kind, CertFile string }
				if err := json.Unmarshal([]byte(out), &r); err != nil || r.Name != "bob" || r.Kind != "client" || r.Serial != pki.SerialHex(certOf(t, f.dir.IssuedCert("bob"))) {
					t.Errorf("JSON %q: %v", out, err)
				}
			},
		},
		{
			name: "sign a CSR",
			setup: func(t *testing.T, f pkiFixture) []string {
				csr := f.write(t, "app.csr", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}, DNSNames: []string{"app.example"}}), 0o644)
				return []string{"pki", "sign", csr, "--profile", "server", "--days", "10", "--dir", string(f.dir)}
			},
			want: []string{`signed server certificate "app"`, "app.example", "issued/app.crt"},
			check: func(t *testing.T, f pkiFixture, out string) {
				if strings.Contains(out, ".key") {
					t.Error("sign claims to have written a key")
				}
			},
		},
		{
			name: "sign a CSR claiming another identity with --allow-san",
			setup: func(t *testing.T, f pkiFixture) []string {
				csr := f.write(t, "eve.csr", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "eve"}, EmailAddresses: []string{"client"}}), 0o644)
				return []string{"pki", "sign", csr, "--profile", "client", "--allow-san", "--dir", string(f.dir)}
			},
			want: []string{`signed client certificate "eve"`, "subject  CN=eve", "SANs     email:client"},
		},
		{
			name: "inspect a certificate",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "inspect", f.dir.ServerCert()}
			},
			want: []string{"Subject:", "CN=kvsctl server", "Issuer:", "CN=kvsctl intermediate CA", "(2 of 2)", "CA:                yes, path length 0", "Authority key ID:", "Serial:", "Valid until:", "left)", "DNS:localhost", "IP:127.0.0.1",
				"ECDSA P-256", "digitalSignature", "serverAuth", "CA:", "SHA-256:"},
		},
		{
			name: "inspect the CA shows the path length",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "inspect", f.dir.CACert()}
			},
			want: []string{"yes, path length 1", "keyCertSign, cRLSign", "Self-signed:     yes"},
		},
		{
			name: "inspect a DER CRL as JSON",
			setup: func(t *testing.T, f pkiFixture) []string {
				block, _ := pem.Decode(mustRead(t, f.dir.CRL()))
				return []string{"pki", "inspect", "--json", f.write(t, "crl.der", block.Bytes, 0o644)}
			},
			want: []string{`"crls"`, `"number": "1"`, `"next_update"`, `"revoked": []`},
		},
		{
			name: "inspect a CSR asking for CA:TRUE",
			setup: func(t *testing.T, f pkiFixture) []string {
				bc, _ := hex.DecodeString("30030101ff")
				csr := csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "greedy"},
					ExtraExtensions: []pkix.Extension{{Id: []int{2, 5, 29, 19}, Critical: true, Value: bc}}})
				return []string{"pki", "inspect", f.write(t, "g.csr", csr, 0o644)}
			},
			want: []string{"certificate request", "basicConstraints (CA:TRUE) critical", "copies only the subject and the SANs", "valid"},
		},
		{
			name: "verify passes",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "verify", f.dir.ServerCert(), "--dir", string(f.dir), "--host", "localhost", "--usage", "server"}
			},
			want: []string{"OK  chain", "OK  validity", "OK  revocation", "OK  usage", "OK  hostname", "all checks passed"},
		},
		{
			name: "verify --json",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "verify", "--json", "--dir", string(f.dir), f.dir.ClientCert()}
			},
			want: []string{`"ok": true`, `"name": "revocation"`},
		},
		{
			name: "list",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "list", "--dir", string(f.dir)}
			},
			want: []string{"SERIAL", "NAME", "KIND", "ISSUER", "NOT AFTER", "STATUS", "root", "\n  intermediate-", "  intermediate  ", "\n    server", "\n    client", "valid",
				"CRL of CN=kvsctl intermediate CA", "CRL of CN=kvsctl root CA", "number 1, 0 revoked"},
		},
		{
			name: "list --json",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "list", "--json", "--dir", string(f.dir)}
			},
			check: func(t *testing.T, f pkiFixture, out string) {
				var l pki.Listing
				if err := json.Unmarshal([]byte(out), &l); err != nil || l.Mode != "ca" || l.Layout != "hierarchy" || len(l.Certificates) != 4 || l.Certificates[1].Status != "valid" || l.Certificates[2].Depth != 2 || l.CRL.Number != "1" || len(l.CRLs) != 2 {
					t.Errorf("JSON %s: %v", out, err)
				}
			},
		},
		{
			name: "list in self-signed mode",
			setup: func(t *testing.T, f pkiFixture) []string {
				mustRun(t, "pki", "init", "--self-signed", "--force", "--dir", string(f.dir), "--key-type", "ecdsa-p256")
				return []string{"pki", "list", "--dir", string(f.dir)}
			},
			want: []string{"self-signed mode: no CA", "server", "client", "valid"},
		},
		{
			name: "revoke by certificate file",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "revoke", f.dir.ClientCert(), "--reason", "keyCompromise", "--dir", string(f.dir)}
			},
			want: []string{`revoked client certificate "client"`, "keyCompromise", "crl.pem: CRL number 2 of CN=kvsctl intermediate CA", "valid until"},
			check: func(t *testing.T, f pkiFixture, _ string) {
				code, _, errs := runPKI(t, "pki", "verify", f.dir.ClientCert(), "--dir", string(f.dir))
				if code != 1 || !strings.Contains(errs, "check failed: revocation: certificate serial") {
					t.Errorf("verify after revoke: %d %q", code, errs)
				}
			},
		},
		{
			name: "revoke by serial with colons",
			setup: func(t *testing.T, f pkiFixture) []string {
				s := fmt.Sprintf("% X", certOf(t, f.dir.ServerCert()).SerialNumber.Bytes())
				return []string{"pki", "revoke", "--dir", string(f.dir), strings.ReplaceAll(s, " ", ":")}
			},
			want: []string{`revoked server certificate "server"`, "unspecified"},
		},
		{
			name: "crl",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "crl", "--days", "3", "--dir", string(f.dir)}
			},
			want: []string{"crl.pem: CRL number 2 of kvsctl intermediate CA", "0 revoked, valid until", "(in 2d 23h)", "crl.pem: CRL number 2 of kvsctl root CA", "(in 179d 23h)"},
		},
		{
			name: "renew the root server certificate",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "renew", f.dir.ServerCert(), "--revoke-old", "--dir", string(f.dir)}
			},
			want: []string{"renewed", "server.crt (server)", "new ecdsa-p256 key", "revoked the old certificate (superseded)"},
			check: func(t *testing.T, f pkiFixture, _ string) {
				out := mustRun(t, "pki", "list", "--dir", string(f.dir))
				if !strings.Contains(out, "revoked (superseded)") {
					t.Errorf("list after renew:\n%s", out)
				}
				mustRun(t, "pki", "verify", f.dir.ServerCert(), "--dir", string(f.dir), "--host", "localhost", "--usage", "server")
			},
		},
		{
			name: "renew in self-signed mode",
			setup: func(t *testing.T, f pkiFixture) []string {
				mustRun(t, "pki", "init", "--self-signed", "--force", "--dir", string(f.dir), "--key-type", "ecdsa-p256")
				return []string{"pki", "renew", f.dir.ClientCert(), "--reuse-key", "--days", "7", "--dir", string(f.dir)}
			},
			want: []string{"renewed", "kept the old key"},
		},
		{
			name: "export PKCS#12",
			setup: func(t *testing.T, f pkiFixture) []string {
				pw := f.write(t, "pw", []byte("hunter2\n"), 0o600)
				return []string{"pki", "export", "client", "--p12", f.path("client.p12"), "--password-file", pw, "--dir", string(f.dir)}
			},
			want: []string{"client.p12 (0600)", "its private key and the CA CN=kvsctl intermediate CA", ", the CA CN=kvsctl root CA", "modern (AES-256-CBC"},
			check: func(t *testing.T, f pkiFixture, out string) {
				if strings.Contains(out, "hunter2") {
					t.Error("password printed")
				}
				if _, _, _, err := pkcs12.DecodeChain(mustRead(t, f.path("client.p12")), "hunter2"); err != nil {
					t.Error(err)
				}
			},
		},
		{
			name: "help of every subcommand has a usage line, a description and an example",
			setup: func(t *testing.T, f pkiFixture) []string {
				for _, c := range pkiCommand().Subcommands {
					cmds := append([]string{c.Name}, nil...)
					if len(c.Subcommands) > 0 {
						cmds = nil
						for _, s := range c.Subcommands {
							cmds = append(cmds, c.Name+" "+s.Name)
						}
					}
					for _, name := range cmds {
						out := mustRun(t, append(append([]string{"pki"}, strings.Fields(name)...), "--help")...)
						for _, want := range []string{"USAGE:", "kvsctl pki " + name, "DESCRIPTION:", "Example"} {
							if !strings.Contains(out, want) {
								t.Errorf("'kvsctl pki %s --help' lacks %q:\n%s", name, want, out)
							}
						}
					}
				}
				return []string{"pki", "--help"}
			},
			want: []string{"init", "issue", "sign", "inspect", "verify", "list", "revoke", "crl", "renew", "export", "trust", "csr", "ca", "root"},
		},
		{
			name: "help after the arguments",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "server", "web", "--help"}
			},
			want: []string{"kvsctl pki issue server|client NAME"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			args := tc.setup(t, f)
			code, out, errs := runPKI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.check != nil {
				tc.check(t, f, out)
			}
		})
	}
}

// TestPkiBadInput: every kind of bad input ends with one line on stderr, a
// non-zero exit code and no file created or changed anywhere under the
// test's root.
func TestPkiBadInput(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fixture   []string // extra init flags; nil: default CA fixture
		setup     func(t *testing.T, f pkiFixture) []string
		code      int
		wantExact string // the whole stderr line, when set
		want      string // a substring of stderr
	}{
		{
			name: "no CA yet",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "client", "x", "--dir", f.path("empty")}
			},
			code: 1, wantExact: "kvsctl: no CA in %ROOT%/empty\nhint: run 'kvsctl pki init', or give the CA with --ca FILE",
		},
		{
			name: "no PKI to list",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "list", "--dir", f.path("empty")}
			},
			code: 1, want: "run 'kvsctl pki init'",
		},
		{
			name: "corrupt CA certificate PEM",
			setup: func(t *testing.T, f pkiFixture) []string {
				pki.WriteFileAtomic(f.dir.CACert(), []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644, true)
				return []string{"pki", "issue", "client", "x", "--dir", string(f.dir)}
			},
			code: 1, want: "parse certificate",
		},
		{
			name: "inspect corrupt PEM",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "inspect", f.write(t, "bad.pem", []byte("-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n"), 0o644)}
			},
			code: 1, want: "corrupt PEM",
		},
		{
			name: "verify corrupt certificate",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "verify", f.write(t, "bad.crt", []byte("garbage"), 0o644), "--dir", string(f.dir)}
			},
			code: 1, want: "not a PEM or DER certificate",
		},
		{
			name:    "CA key does not match its certificate",
			fixture: []string{"--flat"},
			setup: func(t *testing.T, f pkiFixture) []string {
				k, _ := pki.MarshalKey(ecKey(t), nil)
				pki.WriteFileAtomic(f.dir.CAKey(), k, 0o600, true)
				return []string{"pki", "issue", "client", "x", "--dir", string(f.dir)}
			},
			code: 1, want: "the key of CA CN=kvsctl CA,O=kvsctl local CA does not match its certificate",
		},
		{
			name: "export a key that does not match",
			setup: func(t *testing.T, f pkiFixture) []string {
				k, _ := pki.MarshalKey(ecKey(t), nil)
				pki.WriteFileAtomic(f.dir.ClientKey(), k, 0o600, true)
				pw := f.write(t, "pw", []byte("pw"), 0o600)
				return []string{"pki", "export", "client", "--p12", f.path("c.p12"), "--password-file", pw, "--dir", string(f.dir)}
			},
			code: 1, want: "does not match certificate",
		},
		{
			name: "CSR with a bad signature",
			setup: func(t *testing.T, f pkiFixture) []string {
				block, _ := pem.Decode(csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}))
				block.Bytes[len(block.Bytes)-3] ^= 0x55
				return []string{"pki", "sign", f.write(t, "x.csr", pem.EncodeToMemory(block), 0o644), "--profile", "client", "--dir", string(f.dir)}
			},
			code: 1, want: "signature is invalid",
		},
		{
			name: "sign corrupt CSR",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "sign", f.write(t, "x.csr", []byte("not a csr"), 0o644), "--profile", "client", "--dir", string(f.dir)}
			},
			code: 1, want: "parse certificate request",
		},
		{
			name: "unknown key type for init",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "init", "--dir", f.path("new"), "--key-type", "dsa1024"}
			},
			code: 2, want: `unknown key type "dsa1024": use one of rsa2048, rsa3072, rsa4096, ecdsa-p256, ed25519`,
		},
		{
			name: "unknown key type for issue",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "client", "x", "--key-type", "rsa1024", "--dir", string(f.dir)}
			},
			code: 2, want: "unknown key type",
		},
		{
			name: "unknown profile for issue",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "web", "x", "--dir", string(f.dir)}
			},
			code: 2, want: `unknown profile "web": use server or client`,
		},
		{
			name: "unknown profile for sign",
			setup: func(t *testing.T, f pkiFixture) []string {
				csr := f.write(t, "x.csr", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}), 0o644)
				return []string{"pki", "sign", csr, "--profile", "ca", "--dir", string(f.dir)}
			},
			code: 2, want: `unknown profile "ca"`,
		},
		{
			name: "init into a directory that cannot be created",
			setup: func(t *testing.T, f pkiFixture) []string {
				f.write(t, "file", []byte("x"), 0o644)
				return []string{"pki", "init", "--dir", f.path("file/sub"), "--key-type", "ecdsa-p256"}
			},
			code: 1, want: "not a directory",
		},
		{
			name: "issue when issued/ cannot be written",
			setup: func(t *testing.T, f pkiFixture) []string {
				f.write(t, "certs/issued", []byte("x"), 0o644)
				return []string{"pki", "issue", "client", "x", "--dir", string(f.dir), "--key-type", "ecdsa-p256"}
			},
			code: 1, want: "not a directory",
		},
		{
			name: "export into a directory that cannot be written",
			setup: func(t *testing.T, f pkiFixture) []string {
				pw := f.write(t, "pw", []byte("pw"), 0o600)
				return []string{"pki", "export", "server", "--p12", filepath.Join(pw, "x.p12"), "--password-file", pw, "--dir", string(f.dir)}
			},
			code: 1, want: "not a directory",
		},
		{
			name:    "wrong passphrase",
			fixture: []string{"--passphrase-file", "%PASS%"},
			setup: func(t *testing.T, f pkiFixture) []string {
				wrong := f.write(t, "wrong", []byte("not it\n"), 0o600)
				return []string{"pki", "issue", "client", "x", "--passphrase-file", wrong, "--dir", string(f.dir)}
			},
			code: 1, want: "wrong passphrase",
		},
		{
			name:    "missing passphrase",
			fixture: []string{"--passphrase-file", "%PASS%"},
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "crl", "--dir", string(f.dir)}
			},
			code: 1, want: "hint: give the CA key's passphrase with --passphrase-file or KVS_CA_PASSPHRASE",
		},
		{
			name:    "expired CA",
			fixture: []string{"--flat"},
			setup: func(t *testing.T, f pkiFixture) []string {
				writeCA(t, f, time.Now().Add(-pki.CAValidity-48*time.Hour))
				return []string{"pki", "issue", "client", "x", "--dir", string(f.dir)}
			},
			code: 1, want: "CA certificate CN=kvsctl CA,O=kvsctl local CA expired on",
		},
		{
			name:    "not yet valid CA",
			fixture: []string{"--flat"},
			setup: func(t *testing.T, f pkiFixture) []string {
				writeCA(t, f, time.Now().Add(72*time.Hour))
				return []string{"pki", "crl", "--dir", string(f.dir)}
			},
			code: 1, want: "CA certificate CN=kvsctl CA,O=kvsctl local CA is not valid until",
		},
		{
			name: "revoke an unknown serial",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "revoke", "0123456789abcdef", "--dir", string(f.dir)}
			},
			code: 1, want: "serial 123456789abcdef is not in the inventory",
		},
		{
			name: "init without --force over an existing PKI",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "init", "--dir", string(f.dir), "--key-type", "ecdsa-p256"}
			},
			code: 1, want: "already holds a ca PKI\nhint: use --force to replace it",
		},
		{
			name:    "init without --force over a self-signed PKI",
			fixture: []string{"--self-signed"},
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "init", "--self-signed", "--dir", string(f.dir)}
			},
			code: 1, want: "already holds a self-signed PKI",
		},
		{
			name:    "group-readable CA key",
			fixture: []string{"--flat"},
			setup: func(t *testing.T, f pkiFixture) []string {
				os.Chmod(f.dir.CAKey(), 0o640)
				return []string{"pki", "issue", "client", "x", "--dir", string(f.dir)}
			},
			code: 1, want: "run 'chmod 600 %ROOT%/certs/ca.key'",
		},
		{
			name: "group-readable intermediate key",
			setup: func(t *testing.T, f pkiFixture) []string {
				os.Chmod(f.dir.IntermediateKey(), 0o640)
				return []string{"pki", "issue", "client", "x", "--dir", string(f.dir)}
			},
			code: 1, want: "run 'chmod 600 %ROOT%/certs/intermediate.key'",
		},
		{
			name: "missing intermediate key",
			setup: func(t *testing.T, f pkiFixture) []string {
				os.Remove(f.dir.IntermediateKey())
				return []string{"pki", "issue", "client", "x", "--dir", string(f.dir)}
			},
			code: 1, want: "no key %ROOT%/certs/intermediate.key for the issuing CA CN=kvsctl intermediate CA",
		},
		{
			name: "root key needed but offline",
			setup: func(t *testing.T, f pkiFixture) []string {
				os.Remove(f.dir.CAKey())
				return []string{"pki", "ca", "rotate", "--dir", string(f.dir)}
			},
			code: 1, want: "the root CA key %ROOT%/certs/ca.key is not here (taken offline?): it is needed to sign a new intermediate\nhint: bring the root key back with 'kvsctl pki root import FILE'",
		},
		{
			name: "revoke an intermediate with the root key offline",
			setup: func(t *testing.T, f pkiFixture) []string {
				os.Remove(f.dir.CAKey())
				return []string{"pki", "revoke", "--intermediate", "--dir", string(f.dir)}
			},
			code: 1, want: "it is needed to revoke an intermediate (the root signs its CRL)",
		},
		{
			name: "revoke an intermediate without --intermediate",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "revoke", f.dir.IntermediateCert(), "--dir", string(f.dir)}
			},
			code: 1, want: "revoking it makes every leaf it signed fail; confirm with --intermediate",
		},
		{
			name: "TTL past the issuer",
			setup: func(t *testing.T, f pkiFixture) []string {
				// A PKI made long ago, whose intermediate expires in 100 days.
				past := time.Now().Add(-pki.IntermediateValidity + 100*24*time.Hour)
				if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: f.dir, Force: true, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}, Now: past}); err != nil {
					t.Fatal(err)
				}
				return []string{"pki", "issue", "client", "x", "--days", "101", "--dir", string(f.dir), "--key-type", "ecdsa-p256"}
			},
			code: 1, want: "would outlive its issuer CN=kvsctl intermediate CA",
		},
		{
			name: "TTL too short",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "client", "x", "--ttl", "1m", "--dir", string(f.dir)}
			},
			code: 2, want: "--ttl 1m is too short: use at least 5m0s",
		},
		{
			name: "TTL and days together",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "renew", f.dir.ClientCert(), "--ttl", "1h", "--days", "3", "--dir", string(f.dir)}
			},
			code: 2, want: "give --days or --ttl, not both",
		},
		{
			name: "a TTL that is no duration",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "client", "x", "--ttl", "soon", "--dir", string(f.dir)}
			},
			code: 2, want: `invalid TTL "soon": use a duration such as 5m, 24h, 90d or 1d12h`,
		},
		{
			name:    "a name outside the name constraints",
			fixture: []string{"--permit-dns", "example.com", "--permit-dns", "localhost", "--permit-ip", "127.0.0.0/8", "--permit-ip", "::1/128"},
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "server", "evil", "--hosts", "www.google.com", "--dir", string(f.dir), "--key-type", "ecdsa-p256"}
			},
			code: 1, want: "DNS name www.google.com is outside the name constraints of CA CN=kvsctl intermediate CA",
		},
		{
			name:    "an IP outside the name constraints, in a CSR",
			fixture: []string{"--permit-dns", "localhost", "--permit-ip", "127.0.0.0/8"},
			setup: func(t *testing.T, f pkiFixture) []string {
				csr := f.write(t, "w.csr", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "w"}, IPAddresses: []net.IP{net.ParseIP("10.9.9.9")}}), 0o644)
				return []string{"pki", "sign", csr, "--profile", "server", "--dir", string(f.dir)}
			},
			code: 1, want: "IP address 10.9.9.9 is outside the name constraints of CA CN=kvsctl intermediate CA",
		},
		{
			name: "retire the only root",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "ca", "retire", pki.Fingerprint(certOf(t, f.dir.CACert()).Raw), "--dir", string(f.dir)}
			},
			code: 1, want: "is the only root of",
		},
		{
			name: "retire an unknown root",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "ca", "retire", "deadbeef00", "--dir", string(f.dir)}
			},
			code: 1, want: "no root of %ROOT%/certs/ca.crt has the fingerprint deadbeef00",
		},
		{
			name: "rotate while another command holds the lock",
			setup: func(t *testing.T, f pkiFixture) []string {
				holdLock(t, f.dir)
				return []string{"pki", "ca", "rotate", "--dir", string(f.dir)}
			},
			code: 1, want: "another kvsctl command holds the lock",
		},
		{
			name:    "rotate a flat PKI without --root",
			fixture: []string{"--flat"},
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "ca", "rotate", "--dir", string(f.dir)}
			},
			code: 1, want: "is a flat PKI: its CA signs leaves itself and cannot sign an intermediate",
		},
		{
			name: "export the root key into the PKI directory",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "root", "export", f.dir.Path("offline.key"), "--dir", string(f.dir)}
			},
			code: 1, want: "an offline root key belongs on another medium",
		},
		{
			name: "import a key that is not the root's",
			setup: func(t *testing.T, f pkiFixture) []string {
				os.Remove(f.dir.CAKey())
				k, _ := pki.MarshalKey(ecKey(t), nil)
				return []string{"pki", "root", "import", f.write(t, "other.key", k, 0o600), "--dir", string(f.dir)}
			},
			code: 1, want: "is not the key of the current root",
		},
		{
			name: "csr over an existing key",
			setup: func(t *testing.T, f pkiFixture) []string {
				key := f.write(t, "web.key", []byte("precious"), 0o600)
				return []string{"pki", "csr", "web", "--key", key, "--out", f.path("web.csr")}
			},
			code: 1, want: "web.key already exists",
		},
		{
			name: "export without a password",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "export", "server", "--p12", f.path("s.p12"), "--dir", string(f.dir)}
			},
			code: 1, want: "hint: give the bundle's password with --password-file or KVS_P12_PASSWORD",
		},
		{
			name: "renew a certificate of another CA",
			setup: func(t *testing.T, f pkiFixture) []string {
				other := newFixture(t)
				return []string{"pki", "renew", other.dir.ClientCert(), "--reuse-key", "--dir", string(f.dir)}
			},
			code: 1, want: "was not issued by a CA in",
		},
		{
			name: "trust a certificate that is not a CA",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "trust", "install", "--ca", f.dir.ServerCert(), "--dir", string(f.dir)}
			},
			code: 1, want: "is not a CA certificate",
		},
		{
			name: "CSR claiming the identity of another certificate",
			setup: func(t *testing.T, f pkiFixture) []string {
				// openssl req -new -subj /CN=eve -addext "subjectAltName=email:client"
				csr := f.write(t, "eve.csr", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "eve"}, EmailAddresses: []string{"client"}}), 0o644)
				return []string{"pki", "sign", csr, "--profile", "client", "--dir", string(f.dir)}
			},
			code: 1, want: `SAN email:client matches the common name of client certificate "client" (serial `,
		},
		{
			name: "CSR claiming the identity of another certificate: the hint",
			setup: func(t *testing.T, f pkiFixture) []string {
				csr := f.write(t, "eve.csr", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "eve"}, EmailAddresses: []string{"client"}}), 0o644)
				return []string{"pki", "sign", csr, "--profile", "client", "--dir", string(f.dir)}
			},
			code: 1, want: "\nhint: the CSR asks for another certificate's identity; sign it with --allow-san only if it is meant to share it",
		},
		{
			name: "sign without a profile",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "sign", f.dir.ClientCert(), "--dir", string(f.dir)}
			},
			code: 2, want: "missing --profile",
		},
		{
			name: "unknown flag after the arguments",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "issue", "client", "x", "--colour", "red", "--dir", string(f.dir)}
			},
			code: 2, want: "flag provided but not defined: -colour (see 'kvsctl pki issue --help')",
		},
		{
			name: "unknown revocation reason",
			setup: func(t *testing.T, f pkiFixture) []string {
				return []string{"pki", "revoke", f.dir.ClientCert(), "--reason", "bored", "--dir", string(f.dir)}
			},
			code: 2, want: "unknown revocation reason",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f pkiFixture
			if len(tc.fixture) > 0 {
				root := t.TempDir()
				pass := filepath.Join(root, "pass")
				os.WriteFile(pass, []byte("the right one\n"), 0o600)
				flags := make([]string, len(tc.fixture))
				for i, fl := range tc.fixture {
					flags[i] = strings.ReplaceAll(fl, "%PASS%", pass)
				}
				f = pkiFixture{root: root, dir: pki.Dir(filepath.Join(root, "certs"))}
				mustRun(t, append([]string{"pki", "init", "--dir", string(f.dir), "--key-type", "ecdsa-p256"}, flags...)...)
			} else {
				f = newFixture(t)
			}
			args := tc.setup(t, f)
			before := snapshot(t, f.root)
			code, out, errs := runPKI(t, args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, errs)
			}
			if out != "" {
				t.Errorf("stdout not empty: %q", out)
			}
			lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
			if len(lines) < 1 || len(lines) > 2 || !strings.HasPrefix(errs, "kvsctl: ") || len(lines) == 2 && !strings.HasPrefix(lines[1], "hint: ") {
				t.Errorf("stderr is not one 'kvsctl: ' line and an optional 'hint: ' line: %q", errs)
			}
			if want := strings.ReplaceAll(tc.wantExact, "%ROOT%", f.root); want != "" && strings.TrimSuffix(errs, "\n") != want {
				t.Errorf("stderr %q, want %q", errs, want)
			}
			if want := strings.ReplaceAll(tc.want, "%ROOT%", f.root); !strings.Contains(errs, want) {
				t.Errorf("stderr %q lacks %q", errs, want)
			}
			if diffs := diffSnapshots(before, snapshot(t, f.root)); len(diffs) > 0 {
				t.Errorf("files changed: %v", diffs)
			}
		})
	}
}

// TestPkiListWarnsAboutCRL: 'pki list' says on stderr when the CRL is about
// to expire, and the JSON carries the warning.
func TestPkiListWarnsAboutCRL(t *testing.T) {
	f := newFixture(t, "--crl-days", "1")
	code, out, errs := runPKI(t, "pki", "list", "--dir", string(f.dir))
	if code != 0 || !strings.Contains(errs, "kvsctl: warning: the CRL expires in 23h") || !strings.Contains(errs, "run 'kvsctl pki crl'") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if !regexp.MustCompile(`CRL of CN=kvsctl intermediate CA .*: number 1, 0 revoked, next update .* \(in 23h \d+m\)`).MatchString(out) {
		t.Errorf("stdout %q", out)
	}
	mustRun(t, "pki", "crl", "--dir", string(f.dir))
	if _, _, errs := runPKI(t, "pki", "list", "--dir", string(f.dir)); errs != "" {
		t.Errorf("after 'pki crl': stderr %q", errs)
	}
}

// TestPkiEncryptedCAKey: a CA key encrypted at init is used with the right
// passphrase and its passphrase never shows in any output.
func TestPkiEncryptedCAKey(t *testing.T) {
	root := t.TempDir()
	pass := filepath.Join(root, "pass")
	os.WriteFile(pass, []byte("s3cret-passphrase\n"), 0o600)
	dir := filepath.Join(root, "certs")
	var all strings.Builder
	for _, args := range [][]string{
		{"pki", "init", "--dir", dir, "--key-type", "ecdsa-p256", "--passphrase-file", pass},
		{"pki", "issue", "client", "eve", "--dir", dir, "--key-type", "ecdsa-p256", "--passphrase-file", pass},
		{"pki", "revoke", filepath.Join(dir, "issued", "eve.crt"), "--dir", dir, "--passphrase-file", pass},
	} {
		all.WriteString(mustRun(t, args...))
	}
	if !strings.Contains(all.String(), "root CA private key (0600, encrypted)") || !strings.Contains(all.String(), "issuing CA private key (0600, encrypted)") {
		t.Errorf("init does not say the key is encrypted:\n%s", all.String())
	}
	if strings.Contains(all.String(), "s3cret") {
		t.Error("passphrase printed")
	}
	for _, k := range []string{"ca.key", "intermediate.key"} {
		if data := mustRead(t, filepath.Join(dir, k)); !bytes.Contains(data, []byte("ENCRYPTED PRIVATE KEY")) {
			t.Errorf("CA key %s not encrypted", k)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
