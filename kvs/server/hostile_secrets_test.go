package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/kvs/stores"
	"github.com/kvsctl/kvsctl/pki"
)

// secretScanner looks for secrets in text: private key PEM armour (the
// "-----BEGIN ... PRIVATE KEY-----" lines; the bare type name may be
// printed, as in "only PRIVATE KEY (never shown)"), the
// body lines of each private key file, the private scalars in decimal and
// hex (as %v of a key would print them), and given passphrases and
// passwords.
type secretScanner struct {
	needles map[string]string // text -> what it is
}

func newSecretScanner() *secretScanner {
	return &secretScanner{needles: map[string]string{"PRIVATE KEY-----": "a private key PEM marker"}}
}

// add registers a secret by what it is.
func (s *secretScanner) add(secret, what string) {
	if len(secret) >= 6 {
		s.needles[secret] = what
	}
}

// addKeys registers every *.key file under dir (decrypted with pass when
// needed).
func (s *secretScanner) addKeys(t testing.TB, dir string, pass []byte) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || !strings.HasSuffix(path, ".key") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if b, _ := pem.Decode(data); b != nil {
			body := strings.Split(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: b.Bytes}))), "\n")
			for _, line := range body[1 : len(body)-1] {
				s.add(line, "a line of "+filepath.Base(path))
			}
		}
		key, err := pki.LoadKey(path, pass)
		if err != nil {
			return fmt.Errorf("load %s: %w", path, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			d, _ := k.Bytes()
			s.add(fmt.Sprintf("%x", d), "the private scalar of "+filepath.Base(path)+" in hex")
			s.add(new(big.Int).SetBytes(d).String(), "the private scalar of "+filepath.Base(path))
		case *rsa.PrivateKey:
			s.add(k.D.String(), "the private exponent of "+filepath.Base(path))
			s.add(k.D.Text(16), "the private exponent of "+filepath.Base(path)+" in hex")
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no key files under %s", dir)
	}
}

// scan returns one line per secret found in text, named by what it is.
func (s *secretScanner) scan(name, text string) []string {
	var found []string
	for needle, what := range s.needles {
		if i := strings.Index(text, needle); i >= 0 {
			line := text[strings.LastIndexByte(text[:i], '\n')+1:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			if len(line) > 160 {
				line = line[:160] + "..."
			}
			found = append(found, fmt.Sprintf("%s shows %s: %q", name, what, strings.ReplaceAll(line, needle, "<REDACTED BY TEST>")))
		}
	}
	return found
}

// TestSecretsNotLogged runs a representative set of operations with every
// log captured (operational, audit, TLS, store), together with every error
// text a caller would print and every answer body, and scans it all for
// private keys, the CA passphrase and the database password. It runs
// against PostgreSQL reached through a URL that carries a password (trust
// authentication accepts any). The scanner's negative control is a log that
// does show them.
func TestSecretsNotLogged(t *testing.T) {
	const passphrase = "correct-horse-battery-staple-7731"
	const dbPassword = "s3cr3t-pw-4409"
	db := pgtest.Database(t)
	ctx := t.Context()

	var all strings.Builder // everything a user or an operator could see
	note := func(what string, err error) {
		if err != nil {
			fmt.Fprintf(&all, "%s: %v\n", what, err)
		}
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	textLogs := &syncBuffer{}
	textLogger := slog.New(slog.NewTextHandler(textLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}, Passphrase: []byte(passphrase)}); err != nil {
		t.Fatal(err)
	}
	_, err := pki.Issue(ctx, pki.IssueOptions{Dir: d, Profile: pki.ProfileClient, Name: "alice", KeyType: pki.ECDSAP256, Passphrase: []byte("wrong " + passphrase)})
	note("issue with a wrong passphrase", err)
	alice, err := pki.Issue(ctx, pki.IssueOptions{Dir: d, Profile: pki.ProfileClient, Name: "alice", KeyType: pki.ECDSAP256, Passphrase: []byte(passphrase)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.Issue(ctx, pki.IssueOptions{Dir: d, Profile: pki.ProfileClient, Name: "alice", KeyType: pki.ECDSAP256, Passphrase: []byte(passphrase)})
	note("issue over an existing certificate", err)
	_, err = pki.LoadKey(d.CAKey(), nil)
	note("load the CA key without its passphrase", err)
	_, err = pki.LoadKey(d.CAKey(), []byte("wrong"))
	note("load the CA key with a wrong passphrase", err)

	// The store, through a URL with a password; and failures to open it.
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), dbPassword)
	withPassword := u.String()
	store, err := stores.Open(ctx, withPassword, stores.Options{Schema: pgtest.Schema(t, db), MaxConns: 2, Logger: logger})
	if err != nil {
		t.Fatalf("open the store with a password in the URL: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	bad := *u
	bad.Host = "127.0.0.1:1"
	_, err = stores.Open(ctx, bad.String(), stores.Options{StatementTimeout: time.Second, Logger: logger})
	note("open an unreachable database", err)
	withSetting := *u
	withSetting.RawQuery = "sslmode=bogus"
	_, err = stores.Open(ctx, withSetting.String(), stores.Options{Logger: logger})
	note("open with a bad setting", err)
	_, err = stores.Open(ctx, "postgres://postgres:"+dbPassword+"@[::1/test", stores.Options{Logger: logger})
	note("open an unparsable URL", err)
	_, err = stores.Open(ctx, strings.Replace(withPassword, "postgres", "mysql", 1), stores.Options{Logger: logger})
	note("open an unknown scheme", err)

	// The server, with both log formats.
	srv := startServer(t, d, store, func(c *Config) { c.TLS.Logger, c.Logger, c.Audit = textLogger, logger, textLogger })
	st := srv.srv.TLS()
	files, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, d, srv.addr, nil)
	ac := newTestClient(t, d, srv.addr, func(cc *client.Config) {
		cc.Files.Cert, cc.Files.Key = alice.CertFile, alice.KeyFile
		cc.NewConn = true // a handshake per request, so the revocation shows
	})
	v, err := c.Put(ctx, "secret/k", []byte("value"), kvs.Cond{})
	note("put", err)
	_, err = c.Get(ctx, "secret/k")
	note("get", err)
	_, err = c.Put(ctx, "secret/k", []byte("x"), kvs.Cond{IfVersion: v + 100})
	note("stale put", err)
	_, err = c.Get(ctx, "secret/missing")
	note("get missing", err)
	_, err = c.Put(ctx, "bad\x00key", nil, kvs.Cond{})
	note("bad key", err)
	_, err = c.Put(ctx, "big", make([]byte, DefaultMaxValue+1), kvs.Cond{})
	note("too large", err)
	_, _, err = c.List(ctx, "secret/", "", 10)
	note("list", err)
	note("delete", c.Delete(ctx, "secret/k", kvs.Cond{}))
	note("health", c.Ping(ctx))
	_, err = ac.Get(ctx, "secret/missing")
	note("alice before revocation", err)

	// Revoke alice (first with a wrong passphrase), reload, and be refused.
	_, err = pki.Revoke(context.Background(), pki.RevokeOptions{Dir: d, Target: alice.CertFile, Passphrase: []byte("wrong")})
	note("revoke with a wrong passphrase", err)
	if _, err := pki.Revoke(context.Background(), pki.RevokeOptions{Dir: d, Target: alice.CertFile, Passphrase: []byte(passphrase)}); err != nil {
		t.Fatal(err)
	}
	note("reload after revoking", st.Reload())
	_, err = ac.Get(ctx, "secret/missing")
	note("alice after revocation", err)
	_, err = pki.UpdateCRL(context.Background(), pki.CRLOptions{Dir: d, Passphrase: nil, Days: 1, Now: time.Now()})
	note("re-sign the CRL without the passphrase", err)

	// A classic mistake: the key where the certificate should be. The
	// reload must fail without quoting the file.
	certPEM, err := os.ReadFile(d.ServerCert())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(d.ServerKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ServerCert(), keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	note("reload with the key as the certificate", st.Reload())
	if err := os.WriteFile(d.ServerCert(), append(certPEM, keyPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	note("reload with the key appended to the certificate", st.Reload())
	if err := os.WriteFile(d.ServerCert(), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	note("reload restored", st.Reload())
	_, err = LoadTLS(pki.Files{CA: files.CA, Cert: files.Key, Key: files.Key}, TLSOptions{Logger: textLogger})
	note("start with the key as the certificate", err)

	// /metrics, as scraped.
	resp, err := newAttacker(t, d, srv.addr).hc.Get("https://" + srv.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics: %d", resp.StatusCode)
	}
	srv.stop()
	store.Close()
	_, err = store.Get(ctx, "secret/k")
	note("get after close", err)

	scanner := newSecretScanner()
	scanner.addKeys(t, string(d), []byte(passphrase))
	scanner.add(passphrase, "the CA passphrase")
	scanner.add(dbPassword, "the database password")

	// Negative control: the scanner finds secrets that are there.
	leak := &syncBuffer{}
	slog.New(slog.NewJSONHandler(leak, nil)).Error("oops", "key", string(keyPEM), "url", withPassword, "pass", passphrase)
	if got := scanner.scan("negative control", leak.String()); len(got) < 3 {
		t.Errorf("the scanner missed secrets in a leaky log: found only %v", got)
	}

	scanned := 0
	var findings []string
	for name, text := range map[string]string{
		"server and store log (JSON)": logs.String(),
		"audit and TLS log (text)":    textLogs.String(),
		"errors shown to callers":     all.String(),
		"/metrics":                    string(body),
	} {
		if text == "" {
			t.Errorf("%s is empty: nothing was captured", name)
		}
		scanned += len(text)
		findings = append(findings, scanner.scan(name, text)...)
	}
	for _, f := range findings {
		t.Error(f)
	}
	if !strings.Contains(logs.String(), "tls handshake refused") || !strings.Contains(all.String(), "wrong") {
		t.Error("the revoked client's refusal or the wrong-passphrase errors were not captured")
	}
	t.Logf("scanned %d bytes for %d secrets (%d key files' lines and scalars, the passphrase, the database password)", scanned, len(scanner.needles), len(scanner.needles)-3)
	figure(t, "secrets", "kvs: server, audit, TLS and store logs, caller-visible errors, /metrics", scanned, len(scanner.needles), len(findings))
	if testing.Verbose() {
		t.Logf("errors shown to callers:\n%s", all.String())
	}
}
