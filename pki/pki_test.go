package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/youmark/pkcs8"
)

// A checkout creates certs/ 0755 (it holds a README); init must take group
// and other access away before writing keys into it.
func TestInitRestrictsExistingDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // umask-proof
		t.Fatal(err)
	}
	if _, err := Init(context.Background(), InitOptions{Dir: Dir(dir), KeyType: ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != DirMode {
		t.Errorf("directory mode after init = %04o, want %04o", fi.Mode().Perm(), DirMode)
	}
}

func TestInitCAMode(t *testing.T) {
	t.Parallel()
	for _, flat := range []bool{false, true} {
		t.Run(map[bool]string{false: "hierarchy", true: "flat"}[flat], func(t *testing.T) {
			t.Parallel()
			checkInitCAMode(t, flat)
		})
	}
}

func checkInitCAMode(t *testing.T, flat bool) {
	d := newPKI(t, false)
	if flat {
		d = newFlatPKI(t)
	}
	if m, err := d.Mode(); err != nil || m != ModeCA || d.Hierarchy() == flat {
		t.Fatalf("Mode = %v, %v, hierarchy %v; want ca, %v", m, err, d.Hierarchy(), !flat)
	}
	fi, err := os.Stat(string(d))
	if err != nil || fi.Mode().Perm() != DirMode {
		t.Errorf("directory mode = %v, want %v", fi.Mode().Perm(), DirMode)
	}
	modes := map[string]fs.FileMode{
		d.CAKey(): KeyMode, d.ServerKey(): KeyMode, d.ClientKey(): KeyMode,
		d.CACert(): CertMode, d.ServerCert(): CertMode, d.ClientCert(): CertMode, d.CRL(): CertMode, d.Inventory(): CertMode,
	}
	if !flat {
		modes[d.IntermediateKey()], modes[d.IntermediateCert()], modes[d.Intermediates()] = KeyMode, CertMode, CertMode
	}
	for path, want := range modes {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %04o, want %04o", filepath.Base(path), fi.Mode().Perm(), want)
		}
	}
	root := mustLoadCert(t, d.CACert())
	issuing := root
	wantPathLen := 0
	if !flat {
		wantPathLen = 1
		issuing = mustLoadCert(t, d.IntermediateCert())
		if !issuing.IsCA || !issuing.BasicConstraintsValid || issuing.MaxPathLen != 0 || !issuing.MaxPathLenZero || issuing.CheckSignatureFrom(root) != nil {
			t.Errorf("intermediate: IsCA=%v MaxPathLen=%d zero=%v, signed by the root: %v", issuing.IsCA, issuing.MaxPathLen, issuing.MaxPathLenZero, issuing.CheckSignatureFrom(root))
		}
		if got := issuing.NotAfter.Sub(issuing.NotBefore); got < IntermediateValidity || got > IntermediateValidity+time.Hour {
			t.Errorf("intermediate validity %v, want 5 years", got)
		}
		if issuing.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || !bytes.Equal(issuing.AuthorityKeyId, root.SubjectKeyId) {
			t.Errorf("intermediate key usage %v, AKID %x (root SKID %x)", issuing.KeyUsage, issuing.AuthorityKeyId, root.SubjectKeyId)
		}
	}
	if !root.IsCA || !root.BasicConstraintsValid || root.MaxPathLen != wantPathLen || root.MaxPathLenZero != flat {
		t.Errorf("root basic constraints: IsCA=%v MaxPathLen=%d zero=%v", root.IsCA, root.MaxPathLen, root.MaxPathLenZero)
	}
	if root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(root.SubjectKeyId) == 0 {
		t.Errorf("CA key usage %v, SKID %x", root.KeyUsage, root.SubjectKeyId)
	}
	if got := root.NotAfter.Sub(root.NotBefore); got < CAValidity {
		t.Errorf("CA validity %v, want 10 years", got)
	}
	srv := mustLoadCert(t, d.ServerCert())
	if !slices.Equal(srv.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || srv.IsCA {
		t.Errorf("server EKU %v IsCA %v", srv.ExtKeyUsage, srv.IsCA)
	}
	if srv.VerifyHostname("localhost") != nil || srv.VerifyHostname("127.0.0.1") != nil || srv.VerifyHostname("::1") != nil {
		t.Errorf("server SANs %v %v", srv.DNSNames, srv.IPAddresses)
	}
	if days := srv.NotAfter.Sub(srv.NotBefore).Hours() / 24; days > MaxLeafDays+0.01 {
		t.Errorf("server validity %.1f days, more than %d", days, MaxLeafDays)
	}
	cli := mustLoadCert(t, d.ClientCert())
	if !slices.Equal(cli.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || cli.Subject.CommonName != "client" {
		t.Errorf("client EKU %v CN %q", cli.ExtKeyUsage, cli.Subject.CommonName)
	}
	for _, f := range []string{d.ServerCert(), d.ClientCert()} {
		certs, err := LoadCerts(f)
		if err != nil {
			t.Fatal(err)
		}
		// A leaf file is the leaf and, in a hierarchy, its intermediate.
		if want := map[bool]int{true: 1, false: 2}[flat]; len(certs) != want || !certs[len(certs)-1].Equal(issuing) && !flat {
			t.Errorf("%s holds %d certificates, want %d (the leaf, then the intermediate)", f, len(certs), want)
		}
		c := certs[0]
		if err := c.CheckSignatureFrom(issuing); err != nil {
			t.Errorf("%s not signed by the issuing CA: %v", c.Subject, err)
		}
		if c.SerialNumber.BitLen() < 64 {
			t.Errorf("serial %x looks too short for a 128-bit random serial", c.SerialNumber)
		}
		if skew := time.Since(c.NotBefore); skew < Backdate-5*time.Second || skew > Backdate+time.Minute {
			t.Errorf("%s starts %v before now, want about the backdate of %v", f, skew, Backdate)
		}
	}
	crl, err := LoadCRL(d.CRL(), issuing, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(crl.List.RevokedCertificateEntries); n != 0 || crl.List.Number.Int64() != 1 {
		t.Errorf("initial CRL: %d entries, number %v", n, crl.List.Number)
	}
	if left := time.Until(crl.List.NextUpdate); left < 6*24*time.Hour || left > 7*24*time.Hour {
		t.Errorf("CRL lifetime %v, want 7 days", left)
	}
	if !flat {
		// crl.pem's second CRL is the root's, for intermediates, long-lived.
		b, err := readCRLBundle(d.CRL())
		if err != nil || len(b.lists) != 2 {
			t.Fatalf("crl.pem: %v, %d CRLs, want 2", err, len(b.lists))
		}
		rl, err := b.of(root)
		if err != nil || rl == nil || len(rl.RevokedCertificateEntries) != 0 {
			t.Fatalf("root CRL: %v %v", rl, err)
		}
		if left := time.Until(rl.NextUpdate); left < (DefaultRootCRLDays-1)*24*time.Hour || left > DefaultRootCRLDays*24*time.Hour {
			t.Errorf("root CRL lifetime %v, want %d days", left, DefaultRootCRLDays)
		}
	}
}

func TestInitSelfSignedMode(t *testing.T) {
	t.Parallel()
	d := newPKI(t, true)
	if m, _ := d.Mode(); m != ModeSelfSigned {
		t.Fatalf("Mode = %v", m)
	}
	for _, p := range []string{d.CACert(), d.CAKey(), d.CRL(), d.Inventory()} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists in self-signed mode", p)
		}
	}
	sf, _ := d.ServerFiles()
	cf, _ := d.ClientFiles()
	if sf.CA != d.ClientCert() || cf.CA != d.ServerCert() || len(sf.CRLs) != 0 {
		t.Errorf("files: server %+v client %+v", sf, cf)
	}
	srv := mustLoadCert(t, d.ServerCert())
	if srv.IsCA || !IsSelfSigned(srv) {
		t.Errorf("server certificate is not a self-signed leaf")
	}
	// Self-signed mode has no CA: issuing says so.
	_, err := Issue(context.Background(), IssueOptions{Dir: d, Profile: ProfileClient, Name: "x", KeyType: ECDSAP256})
	if !errors.Is(err, ErrNoCA) || !strings.Contains(err.Error(), "self-signed") {
		t.Errorf("Issue in self-signed mode: %v", err)
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	before, _ := os.ReadFile(d.CACert())
	_, err := Init(context.Background(), InitOptions{Dir: d, KeyType: ECDSAP256})
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "already holds a ca PKI") {
		t.Fatalf("Init over a PKI: %v", err)
	}
	after, _ := os.ReadFile(d.CACert())
	if string(before) != string(after) {
		t.Fatal("ca.crt changed")
	}
	// --force replaces, and switching to self-signed removes the CA.
	if _, err := Init(context.Background(), InitOptions{Dir: d, KeyType: ECDSAP256, SelfSigned: true, Force: true}); err != nil {
		t.Fatal(err)
	}
	if m, _ := d.Mode(); m != ModeSelfSigned {
		t.Errorf("after --force --self-signed, mode %v", m)
	}
}

func TestNoCAMessage(t *testing.T) {
	t.Parallel()
	d := Dir(filepath.Join(t.TempDir(), "certs"))
	_, err := LoadCA(d, nil, time.Now())
	if !errors.Is(err, ErrNoCA) {
		t.Fatalf("err %v", err)
	}
	if want := "no CA in " + string(d); err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestLoadKeyRefusesGroupReadable(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o660} {
		if err := os.Chmod(d.ServerKey(), mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKey(d.ServerKey(), nil)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+d.ServerKey()) {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	os.Chmod(d.ServerKey(), 0o400)
	if _, err := LoadKey(d.ServerKey(), nil); err != nil {
		t.Errorf("0400 key refused: %v", err)
	}
}

func TestEncryptedCAKey(t *testing.T) {
	t.Parallel()
	d := Dir(filepath.Join(t.TempDir(), "certs"))
	pass := []byte("correct horse battery staple")
	if _, err := Init(context.Background(), InitOptions{Dir: d, KeyType: ECDSAP256, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(d.CAKey())
	if !strings.Contains(string(data), "BEGIN ENCRYPTED PRIVATE KEY") {
		t.Fatalf("CA key is not encrypted PKCS#8")
	}
	if _, err := LoadCA(d, pass, time.Now()); err != nil {
		t.Fatalf("right passphrase: %v", err)
	}
	if _, err := LoadCA(d, []byte("wrong"), time.Now()); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
	if _, err := LoadCA(d, nil, time.Now()); !errors.Is(err, ErrNeedPassphrase) {
		t.Errorf("no passphrase: %v", err)
	}
	// Leaf keys are never encrypted (servers load them unattended).
	if _, err := LoadKey(d.ServerKey(), nil); err != nil {
		t.Errorf("server key: %v", err)
	}
	// A passphrase in self-signed mode is a mistake, not silently ignored.
	if _, err := Init(context.Background(), InitOptions{Dir: d, KeyType: ECDSAP256, Passphrase: pass, SelfSigned: true, Force: true}); err == nil {
		t.Error("passphrase accepted in self-signed mode")
	}
}

func TestCAValidityWindow(t *testing.T) {
	t.Parallel()
	for name, at := range map[string]time.Time{
		"expired":       time.Now().Add(-CAValidity - 48*time.Hour),
		"not yet valid": time.Now().Add(48 * time.Hour),
	} {
		d := writeCADir(t, at)
		_, err := Issue(context.Background(), IssueOptions{Dir: d, Profile: ProfileClient, Name: "x", KeyType: ECDSAP256})
		if err == nil || !strings.Contains(err.Error(), strings.Split(name, " ")[0]) {
			t.Errorf("%s CA: %v", name, err)
		}
		if _, err := os.Stat(d.IssuedCert("x")); err == nil {
			t.Errorf("%s CA: a certificate was written", name)
		}
	}
}

func TestKeyMismatch(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	other, _ := MarshalKey(mustKey(t), nil)
	writeFile(t, d.IntermediateKey(), other, KeyMode)
	_, err := LoadCA(d, nil, time.Now())
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched CA key: %v", err)
	}
}

func TestKeyTypes(t *testing.T) {
	t.Parallel()
	for _, kt := range []KeyType{RSA2048, ECDSAP256, Ed25519} {
		k, err := GenerateKey(kt)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := KeyTypeOf(k.Public()); err != nil || got != kt {
			t.Errorf("KeyTypeOf(%s) = %v, %v", kt, got, err)
		}
		pemKey, _ := MarshalKey(k, nil)
		back, err := ParseKey(pemKey, nil)
		if err != nil || !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("%s round trip: %v", kt, err)
		}
	}
	if _, err := ParseKeyType("dsa"); err == nil || !strings.Contains(err.Error(), "rsa2048") {
		t.Errorf("unknown key type: %v", err)
	}
	legacy := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}})
	if _, err := ParseKey(legacy, []byte("pw")); err == nil || !strings.Contains(err.Error(), "legacy PEM encryption") {
		t.Errorf("legacy encrypted key: %v", err)
	}
	if _, err := GenerateKey("dsa"); err == nil {
		t.Error("GenerateKey(dsa) succeeded")
	}
}

func TestIssue(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	ctx := context.Background()
	iss, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileServer, Name: "web", Hosts: []string{"web.example.com", "10.1.2.3"}, Days: 30, KeyType: Ed25519})
	if err != nil {
		t.Fatal(err)
	}
	if iss.Cert.VerifyHostname("web.example.com") != nil || iss.Cert.VerifyHostname("10.1.2.3") != nil {
		t.Errorf("SANs %v %v", iss.Cert.DNSNames, iss.Cert.IPAddresses)
	}
	if d := iss.Cert.NotAfter.Sub(iss.Cert.NotBefore); d < 30*24*time.Hour || d > 30*24*time.Hour+time.Hour {
		t.Errorf("validity %v, want 30 days", d)
	}
	inv, _ := d.LoadInventory()
	if r := inv.Find(SerialHex(iss.Cert)); r == nil || r.Name != "web" || r.Kind != "server" || r.File != filepath.Join("issued", "web.crt") {
		t.Errorf("inventory record %+v", r)
	}
	// The same name again needs --force.
	if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileServer, Name: "web", KeyType: ECDSAP256}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("reissue without force: %v", err)
	}
	for _, tc := range []struct {
		name string
		o    IssueOptions
		want string
	}{
		{"bad name", IssueOptions{Profile: ProfileClient, Name: "../x"}, "invalid name"},
		{"bad profile", IssueOptions{Profile: "web", Name: "x"}, "unknown profile"},
		{"bad key type", IssueOptions{Profile: ProfileClient, Name: "x", KeyType: "dsa"}, "unknown key type"},
		{"too long", IssueOptions{Profile: ProfileClient, Name: "x", Days: 900, KeyType: ECDSAP256}, "900 days"},
		{"bad host", IssueOptions{Profile: ProfileServer, Name: "x", Hosts: []string{"a b"}, KeyType: ECDSAP256}, "invalid host"},
	} {
		tc.o.Dir = d
		if _, err := Issue(ctx, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestInventoryStatuses(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name   string
		nb, na time.Time
	}{
		{"fresh", time.Time{}, time.Time{}},
		{"soon", now.Add(-60 * 24 * time.Hour), now.Add(10 * 24 * time.Hour)},
		{"short", now.Add(-time.Minute), now.Add(time.Hour)},                   // short-lived, in the first third of its life
		{"shortending", now.Add(-50 * time.Minute), now.Add(10 * time.Minute)}, // and in the last third
		{"old", now.Add(-60 * 24 * time.Hour), now.Add(-24 * time.Hour)},
		{"future", now.Add(24 * time.Hour), now.Add(48 * time.Hour)},
		{"bad", time.Time{}, time.Time{}},
	} {
		if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: tc.name, KeyType: ECDSAP256, notBefore: tc.nb, notAfter: tc.na}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: d.IssuedCert("bad"), Reason: "keycompromise"}); err != nil {
		t.Fatal(err)
	}
	l, err := List(ctx, d, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range l.Certificates {
		got[strings.Split(c.Name, "-")[0]] = c.Status // root-1a2b3c4d: root
	}
	want := map[string]string{"root": "valid", "intermediate": "valid", "server": "valid", "client": "valid", "fresh": "valid", "soon": "expiring", "short": "valid", "shortending": "expiring", "old": "expired", "future": "not yet valid", "bad": "revoked"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: status %q, want %q", k, got[k], v)
		}
	}
	if l.CRL == nil || l.CRL.Revoked != 1 || l.CRL.Warning != "" {
		t.Errorf("CRL status %+v", l.CRL)
	}
	// A CRL about to expire, and an expired one, are warned about.
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Now().Add(6 * 24 * time.Hour), "expires in"},
		{time.Now().Add(8 * 24 * time.Hour), "expired"},
	} {
		l, err := List(ctx, d, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(l.CRL.Warning, tc.want) {
			t.Errorf("at %v: warning %q, want %q", tc.at, l.CRL.Warning, tc.want)
		}
	}
}

func TestCRLNumberIncreases(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	ctx := context.Background()
	last := mustCRL(t, d).Number.Int64()
	step := func(what string) {
		t.Helper()
		rl := mustCRL(t, d)
		if n := rl.Number.Int64(); n <= last {
			t.Fatalf("after %s: CRL number %d, not above %d", what, n, last)
		}
		last = rl.Number.Int64()
	}
	if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "a", KeyType: ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: d.IssuedCert("a")}); err != nil {
		t.Fatal(err)
	}
	step("revoke")
	if _, err := UpdateCRL(context.Background(), CRLOptions{Dir: d, Passphrase: nil, Days: 3, Now: time.Time{}}); err != nil {
		t.Fatal(err)
	}
	step("refresh")
	ups, err := UpdateCRL(ctx, CRLOptions{Dir: d, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	rl := ups[0].CRL
	step("update")
	if left := time.Until(rl.NextUpdate); left > 24*time.Hour || left < 23*time.Hour {
		t.Errorf("--days 1: next update in %v", left)
	}
	if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.ClientCert(), RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	step("renew --revoke-old")
	if n := len(mustCRL(t, d).RevokedCertificateEntries); n != 2 {
		t.Errorf("CRL lists %d, want 2", n)
	}
	// Revoking twice or an unknown serial fails and leaves the CRL alone.
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: d.IssuedCert("a")}); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Errorf("second revoke: %v", err)
	}
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: "0xdeadbeef"}); err == nil || !strings.Contains(err.Error(), "deadbeef is not in the inventory") {
		t.Errorf("unknown serial: %v", err)
	}
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: d.CACert()}); err == nil || !strings.Contains(err.Error(), "cannot revoke itself") {
		t.Errorf("revoke CA: %v", err)
	}
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: d.ServerCert(), Reason: "bored"}); err == nil || !strings.Contains(err.Error(), "unknown revocation reason") {
		t.Errorf("bad reason: %v", err)
	}
	if n := mustCRL(t, d).Number.Int64(); n != last {
		t.Errorf("failed revocations changed the CRL number to %d", n)
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		824*24*time.Hour + 23*time.Hour: "824d 23h",
		5*time.Hour + 12*time.Minute:    "5h 12m",
		-3 * time.Minute:                "3m 0s",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestKDFLimits(t *testing.T) {
	t.Parallel()
	k := mustKey(t)
	for _, tc := range []struct {
		name string
		kdf  pkcs8.KDFOpts
		lim  kdfLimits
		want string
	}{
		{"pbkdf2 within", pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 1000, HMACHash: crypto.SHA256}, kdfLimits{1000, 1 << 20}, ""},
		{"pbkdf2 over", pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 1001, HMACHash: crypto.SHA256}, kdfLimits{1000, 1 << 20}, "refusing more than 1000"},
		{"scrypt within", pkcs8.ScryptOpts{SaltSize: 16, CostParameter: 1 << 10, BlockSize: 8, ParallelizationParameter: 1}, kdfLimits{1000, 1 << 20}, ""},
		{"scrypt over", pkcs8.ScryptOpts{SaltSize: 16, CostParameter: 1 << 11, BlockSize: 8, ParallelizationParameter: 1}, kdfLimits{1000, 1 << 20}, "refusing more than 1 MiB"},
	} {
		der, err := pkcs8.MarshalPrivateKey(k, []byte("pw"), &pkcs8.Opts{Cipher: pkcs8.AES256CBC, KDFOpts: tc.kdf})
		if err != nil {
			t.Fatal(err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
		_, err = parseKey(data, []byte("pw"), tc.lim)
		if (tc.want == "" && err != nil) || (tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want))) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if tc.want == "" {
			if _, err := parseKey(data, []byte("wrong"), tc.lim); !errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("%s wrong passphrase: %v", tc.name, err)
			}
		}
	}
}
