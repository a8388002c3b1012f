package pki

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

func TestExport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	out := t.TempDir()
	if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "alice", KeyType: ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	ca, inter := mustLoadCert(t, d.CACert()), mustLoadCert(t, d.IntermediateCert())
	for _, name := range []string{"server", "client", "alice", d.IssuedCert("alice")} {
		p12 := filepath.Join(out, filepath.Base(name)+".p12")
		ex, err := Export(ctx, ExportOptions{Dir: d, Name: name, Out: p12, Password: "s3cret"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi, _ := os.Stat(p12); fi.Mode().Perm() != KeyMode {
			t.Errorf("%s: mode %v", name, fi.Mode().Perm())
		}
		key, cert, chain, err := pkcs12.DecodeChain(mustRead(t, p12), "s3cret")
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !cert.Equal(ex.Cert) || len(chain) != 2 || !chain[0].Equal(inter) || !chain[1].Equal(ca) || key == nil {
			t.Errorf("%s: bundle content", name)
		}
		if _, _, err := pkcs12.Decode(mustRead(t, p12), "wrong"); err == nil {
			t.Errorf("%s: wrong password accepted", name)
		}
	}
	// The CA alone, as a Java trust store.
	ts := filepath.Join(out, "ca.p12")
	if _, err := Export(ctx, ExportOptions{Dir: d, Name: "ca", Out: ts, Password: "changeit"}); err != nil {
		t.Fatal(err)
	}
	certs, err := pkcs12.DecodeTrustStore(mustRead(t, ts), "changeit")
	if err != nil || len(certs) != 1 || !certs[0].Equal(ca) {
		t.Errorf("trust store: %v", err)
	}
	// Refusals write nothing.
	mk, _ := MarshalKey(mustKey(t), nil)
	writeFile(t, d.IssuedKey("alice"), mk, KeyMode)
	for _, tc := range []struct {
		name string
		o    ExportOptions
		want string
		is   error
	}{
		{"no password", ExportOptions{Name: "server", Out: filepath.Join(out, "x.p12")}, "password", ErrNoPassword},
		{"mismatched key", ExportOptions{Name: "alice", Out: filepath.Join(out, "y.p12"), Password: "p"}, "does not match", nil},
		{"unknown name", ExportOptions{Name: "bob", Out: filepath.Join(out, "z.p12"), Password: "p"}, "no certificate named", ErrUnknownCert},
		{"exists", ExportOptions{Name: "server", Out: filepath.Join(out, "server.p12"), Password: "p"}, "already exists", fs.ErrExist},
		{"unwritable", ExportOptions{Name: "server", Out: filepath.Join(out, "server.p12", "sub.p12"), Password: "p"}, "not a directory", nil},
	} {
		tc.o.Dir = d
		_, err := Export(ctx, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 5 {
		t.Errorf("%d files in the output directory, want the 5 bundles", len(entries))
	}
}
