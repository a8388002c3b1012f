package pki

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRenew(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name             string
		selfSigned       bool
		file             func(Dir) string
		reuseKey, revoke bool
		wantRevoked      bool
	}{
		{"CA server new key", false, Dir.ServerCert, false, false, false},
		{"CA client reuse key", false, Dir.ClientCert, true, false, false},
		{"CA server revoke old", false, Dir.ServerCert, false, true, true},
		{"self-signed server", true, Dir.ServerCert, false, false, false},
		{"self-signed client reuse key", true, Dir.ClientCert, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newPKI(t, tc.selfSigned)
			file := tc.file(d)
			old := mustLoadCert(t, file)
			oldKey := mustRead(t, strings.TrimSuffix(file, ".crt")+".key")
			r, err := Renew(ctx, RenewOptions{Dir: d, CertFile: file, ReuseKey: tc.reuseKey, RevokeOld: tc.revoke})
			if err != nil {
				t.Fatal(err)
			}
			c := mustLoadCert(t, file)
			if c.SerialNumber.Cmp(old.SerialNumber) == 0 || !c.NotAfter.After(old.NotAfter.Add(-time.Minute)) {
				t.Errorf("not renewed: serial %x, not after %v", c.SerialNumber, c.NotAfter)
			}
			if string(c.RawSubject) != string(old.RawSubject) || !slices.Equal(c.DNSNames, old.DNSNames) ||
				len(c.IPAddresses) != len(old.IPAddresses) || !slices.Equal(c.ExtKeyUsage, old.ExtKeyUsage) || c.KeyUsage != old.KeyUsage {
				t.Errorf("subject, SANs or usage changed")
			}
			if lt, want := c.NotAfter.Sub(c.NotBefore), old.NotAfter.Sub(old.NotBefore); lt < want-time.Hour || lt > want+time.Hour {
				t.Errorf("lifetime %v, want the old %v", lt, want)
			}
			newKey := mustRead(t, strings.TrimSuffix(file, ".crt")+".key")
			if tc.reuseKey != (string(newKey) == string(oldKey)) || (r.KeyFile == "") != tc.reuseKey {
				t.Errorf("reuse-key %v: key changed %v, KeyFile %q", tc.reuseKey, string(newKey) != string(oldKey), r.KeyFile)
			}
			k, err := LoadKey(strings.TrimSuffix(file, ".crt")+".key", nil)
			if err != nil || !KeyMatches(c, k) {
				t.Errorf("key does not match the renewed certificate: %v", err)
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != CertMode {
				t.Errorf("certificate mode %v", fi.Mode().Perm())
			}
			if tc.selfSigned {
				if !IsSelfSigned(c) {
					t.Error("renewed certificate is not self-signed")
				}
				return
			}
			inv, _ := d.LoadInventory()
			oldRec, newRec := inv.Find(SerialHex(old)), inv.Find(SerialHex(c))
			if oldRec == nil || newRec == nil || oldRec.ReplacedBy != newRec.Serial || newRec.Name != oldRec.Name {
				t.Fatalf("inventory: old %+v new %+v", oldRec, newRec)
			}
			if (oldRec.RevokedAt != nil) != tc.wantRevoked {
				t.Errorf("old revoked = %v", oldRec.RevokedAt != nil)
			}
			crl, err := LoadCRL(d.CRL(), mustLoadCert(t, d.IntermediateCert()), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if crl.Revoked(old.SerialNumber) != tc.wantRevoked || crl.Revoked(c.SerialNumber) {
				t.Error("CRL does not match --revoke-old")
			}
		})
	}
}

func TestRenewRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	// A signed CSR has no key here: only --reuse-key can renew it.
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ext"}}, mustKey(t))
	csrFile := filepath.Join(t.TempDir(), "ext.csr")
	os.WriteFile(csrFile, csrDER, 0o644)
	if _, err := SignCSR(ctx, SignOptions{Dir: d, CSRFile: csrFile, Profile: ProfileClient}); err != nil {
		t.Fatal(err)
	}
	foreign, _ := leafFrom(t, otherCA(t), ProfileClient, "alien")
	foreignFile := filepath.Join(t.TempDir(), "alien.crt")
	os.WriteFile(foreignFile, PEMCert(foreign.Raw), 0o644)
	mismatch := filepath.Join(t.TempDir(), "mm.crt")
	os.WriteFile(mismatch, mustRead(t, d.ClientCert()), 0o644)
	mk, _ := MarshalKey(mustKey(t), nil)
	os.WriteFile(filepath.Join(filepath.Dir(mismatch), "mm.key"), mk, 0o600)

	for _, tc := range []struct {
		name string
		o    RenewOptions
		want string
	}{
		{"CSR without key", RenewOptions{CertFile: d.IssuedCert("ext")}, "keep the old key"},
		{"CA", RenewOptions{CertFile: d.CACert()}, "CA certificate"},
		{"foreign", RenewOptions{CertFile: foreignFile, ReuseKey: true}, "not issued by a CA"},
		{"mismatched key", RenewOptions{CertFile: mismatch}, "does not match"},
		{"missing", RenewOptions{CertFile: filepath.Join(string(d), "nope.crt")}, "no such file"},
	} {
		tc.o.Dir = d
		before := mustRead(t, d.Inventory())
		_, err := Renew(ctx, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if string(mustRead(t, d.Inventory())) != string(before) {
			t.Errorf("%s: inventory changed", tc.name)
		}
	}
	if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.IssuedCert("ext"), ReuseKey: true, Days: 5}); err != nil {
		t.Errorf("renew signed CSR with --reuse-key: %v", err)
	}
	ss := newPKI(t, true)
	if _, err := Renew(ctx, RenewOptions{Dir: ss, CertFile: ss.ServerCert(), RevokeOld: true}); err == nil || !strings.Contains(err.Error(), "revoke") {
		t.Errorf("--revoke-old in self-signed mode: %v", err)
	}
}

// TestReplaceFilesRollsBack checks that a failed multi-file replacement puts
// the earlier files back.
func TestReplaceFilesRollsBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	os.WriteFile(a, []byte("old a"), 0o600)
	err := replaceFiles([]pendingFile{
		{a, []byte("new a"), KeyMode},
		{filepath.Join(dir, "b"), []byte("new b"), CertMode},
		{filepath.Join(dir, "missing", "c"), []byte("c"), CertMode},
	})
	if err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if got := string(mustRead(t, a)); got != "old a" {
		t.Errorf("a = %q after rollback", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); err == nil {
		t.Error("b left behind")
	}
}
