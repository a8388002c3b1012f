package pki

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// verifyLeaf verifies the leaf file (leaf, then intermediates) against the
// roots of the directory's ca.crt, as a peer would.
func verifyLeaf(t *testing.T, d Dir, file string) error {
	t.Helper()
	certs, err := LoadCerts(file)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range must(LoadCerts(d.CACert())) {
		roots.AddCert(c)
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// issuerSerial is the serial of the CA that signed the leaf in file, by
// signature among the CAs of the directory.
func issuerSerial(t *testing.T, d Dir, file string) string {
	t.Helper()
	a, err := loadAuthority(d)
	if err != nil {
		t.Fatal(err)
	}
	c := a.issuerOf(mustLoadCert(t, file))
	if c == nil {
		t.Fatalf("%s: issued by no CA of %s", file, d)
	}
	return SerialHex(c)
}

// TestRotateIntermediate: a new intermediate issues the new leaves, the old
// ones keep verifying, renewal moves a leaf to the new intermediate, and
// the old intermediate's CRL keeps being signed (with its key moved under
// retired/) and takes revocations of its leaves.
func TestRotateIntermediate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	old := mustLoadCert(t, d.IntermediateCert())
	alice, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "alice", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Rotate(ctx, RotateOptions{Dir: d})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Replaced.Equal(old) || r.Intermediate.Equal(old) || !r.Root.Equal(mustLoadCert(t, d.CACert())) || len(r.Roots) != 1 {
		t.Fatalf("rotation result %+v", r)
	}
	if got := mustLoadCert(t, d.IntermediateCert()); !got.Equal(r.Intermediate) {
		t.Error("intermediate.crt is not the new intermediate")
	}
	if !exists(d.RetiredKey(SerialHex(old))) || !exists(d.RetiredCert(SerialHex(old))) {
		t.Error("the old intermediate's key and certificate are not under retired/")
	}
	if fi, err := os.Stat(d.RetiredKey(SerialHex(old))); err != nil || fi.Mode().Perm() != KeyMode {
		t.Errorf("retired key mode: %v %v", fi, err)
	}
	inters := must(LoadCerts(d.Intermediates()))
	if len(inters) != 2 || !inters[0].Equal(r.Intermediate) || !inters[1].Equal(old) {
		t.Errorf("intermediates.pem holds %d CAs, want the new one then the old one", len(inters))
	}
	// Old leaves still verify; new ones come from the new intermediate.
	for _, f := range []string{alice.CertFile, d.ServerCert(), d.ClientCert()} {
		if err := verifyLeaf(t, d, f); err != nil {
			t.Errorf("%s after rotation: %v", f, err)
		}
	}
	bob, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "bob", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if got := issuerSerial(t, d, bob.CertFile); got != SerialHex(r.Intermediate) || bob.Record.Issuer != got {
		t.Errorf("bob issued by %s (record %s), want the new intermediate %s", got, bob.Record.Issuer, SerialHex(r.Intermediate))
	}
	if err := verifyLeaf(t, d, bob.CertFile); err != nil {
		t.Error(err)
	}
	// Renewal re-issues an old leaf from the new intermediate.
	if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.ServerCert(), RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	if got := issuerSerial(t, d, d.ServerCert()); got != SerialHex(r.Intermediate) {
		t.Errorf("renewed server issued by %s, want the new intermediate", got)
	}
	// Revoking a leaf of the old intermediate goes to the old one's CRL.
	rv, err := Revoke(ctx, RevokeOptions{Dir: d, Target: alice.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	if !rv.Issuer.Equal(old) || len(rv.CRL.RevokedCertificateEntries) != 2 { // the old server (superseded) and alice
		t.Errorf("alice revoked by %s with %d entries, want the old intermediate's CRL with 2", rv.Issuer.Subject, len(rv.CRL.RevokedCertificateEntries))
	}
	// pki crl re-signs every CA whose key is here: two intermediates, the root.
	ups, err := UpdateCRL(ctx, CRLOptions{Dir: d})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 3 || !ups[0].Resigned || !ups[1].Resigned || !ups[2].Resigned || !ups[2].Issuer.Equal(r.Root) {
		t.Errorf("UpdateCRL: %+v", ups)
	}
	l, err := List(ctx, d, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var tree []string
	for _, c := range l.Certificates {
		tree = append(tree, strings.Repeat(" ", c.Depth)+c.Name)
	}
	// The root, its intermediates (each with its leaves), in order; a CA is
	// named after its key identifier.
	want := fmt.Sprintf("root-%x| intermediate-%x|  server|  client|  alice| intermediate-%x|  bob|  server",
		r.Root.SubjectKeyId[:4], old.SubjectKeyId[:4], r.Intermediate.SubjectKeyId[:4])
	if got := strings.Join(tree, "|"); got != want {
		t.Errorf("list tree %q, want %q", got, want)
	}
	if len(l.CRLs) != 3 {
		t.Errorf("list shows %d CRLs, want 3", len(l.CRLs))
	}
}

// TestRotateRootAndRetire: a root rotation keeps both generations working
// until the old root is retired; retiring drops the old root, its
// intermediate and their CRLs, marks the generation retired, and refuses
// the only or current root.
func TestRotateRootAndRetire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	oldRoot, oldInter := mustLoadCert(t, d.CACert()), mustLoadCert(t, d.IntermediateCert())
	if _, err := Retire(ctx, RetireOptions{Dir: d, Fingerprint: Fingerprint(oldRoot.Raw)}); err == nil || !strings.Contains(err.Error(), "is the only root") {
		t.Errorf("retire the only root: %v", err)
	}
	r, err := Rotate(ctx, RotateOptions{Dir: d, Root: true})
	if err != nil {
		t.Fatal(err)
	}
	roots := must(LoadCerts(d.CACert()))
	if len(roots) != 2 || !roots[0].Equal(r.Root) || !roots[1].Equal(oldRoot) || r.Root.Subject.String() == oldRoot.Subject.String() {
		t.Fatalf("ca.crt after a root rotation: %d roots", len(roots))
	}
	if !exists(d.RetiredKey(SerialHex(oldRoot))) || !exists(d.RetiredKey(SerialHex(oldInter))) {
		t.Error("the old root's and intermediate's keys are not under retired/")
	}
	if !KeyMatches(r.Root, must(LoadKey(d.CAKey(), nil))) {
		t.Error("ca.key is not the new root's key")
	}
	newLeaf, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "new", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{d.ClientCert(), newLeaf.CertFile} {
		if err := verifyLeaf(t, d, f); err != nil {
			t.Errorf("%s during the overlap: %v", f, err)
		}
	}
	b := must(readCRLBundle(d.CRL()))
	if len(b.lists) != 4 {
		t.Errorf("crl.pem holds %d CRLs, want 4 (two roots, two intermediates)", len(b.lists))
	}
	if _, err := Retire(ctx, RetireOptions{Dir: d, Fingerprint: Fingerprint(r.Root.Raw)[:11]}); err == nil || !strings.Contains(err.Error(), "is the current root") {
		t.Errorf("retire the current root: %v", err)
	}
	if _, err := Retire(ctx, RetireOptions{Dir: d, Fingerprint: "abc"}); err == nil || !strings.Contains(err.Error(), "at least 8 digits") {
		t.Errorf("retire with a short fingerprint: %v", err)
	}
	if _, err := Retire(ctx, RetireOptions{Dir: d, Fingerprint: "0123456789"}); !errors.Is(err, ErrUnknownRoot) {
		t.Errorf("retire an unknown root: %v", err)
	}
	// The fingerprint as 'pki inspect' prints it, colons and all.
	ret, err := Retire(ctx, RetireOptions{Dir: d, Fingerprint: strings.ToLower(Fingerprint(oldRoot.Raw))})
	if err != nil {
		t.Fatal(err)
	}
	if len(ret.CAs) != 2 || !ret.CAs[1].Equal(oldInter) {
		t.Errorf("retired %d CAs, want the old root and its intermediate", len(ret.CAs))
	}
	// server.crt and client.crt were never renewed: they are stale now.
	if len(ret.Stale) != 2 || ret.Stale[0] != d.ServerCert() || ret.Stale[1] != d.ClientCert() {
		t.Errorf("stale files %v, want server.crt and client.crt", ret.Stale)
	}
	if roots := must(LoadCerts(d.CACert())); len(roots) != 1 || !roots[0].Equal(r.Root) {
		t.Errorf("ca.crt after retire holds %d roots", len(roots))
	}
	if inters := must(LoadCerts(d.Intermediates())); len(inters) != 1 || !inters[0].Equal(r.Intermediate) {
		t.Errorf("intermediates.pem after retire holds %d CAs", len(inters))
	}
	if b := must(readCRLBundle(d.CRL())); len(b.lists) != 2 {
		t.Errorf("crl.pem after retire holds %d CRLs, want 2", len(b.lists))
	}
	if err := verifyLeaf(t, d, d.ClientCert()); err == nil {
		t.Error("a client of the retired generation still verifies against ca.crt")
	}
	if err := verifyLeaf(t, d, newLeaf.CertFile); err != nil {
		t.Errorf("a client of the new generation: %v", err)
	}
	statuses := map[string]string{}
	l := must(List(ctx, d, time.Now()))
	for _, c := range l.Certificates {
		statuses[c.Serial] = c.Status
	}
	for _, c := range []*x509.Certificate{oldRoot, oldInter, mustLoadCert(t, d.ClientCert())} {
		if statuses[SerialHex(c)] != "retired" {
			t.Errorf("%s: status %q, want retired", c.Subject, statuses[SerialHex(c)])
		}
	}
	if statuses[SerialHex(newLeaf.Cert)] != "valid" {
		t.Errorf("the new leaf: %q", statuses[SerialHex(newLeaf.Cert)])
	}
	// Everything still works after the retirement.
	if _, err := UpdateCRL(ctx, CRLOptions{Dir: d}); err != nil {
		t.Errorf("UpdateCRL after retire: %v", err)
	}
	if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: newLeaf.CertFile}); err != nil {
		t.Errorf("renew after retire: %v", err)
	}
}

// TestRevokeIntermediate: revoking the issuing intermediate needs
// --intermediate, is signed by the root, fails every leaf under it, and
// stops issuance until a rotation.
func TestRevokeIntermediate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	inter, root := mustLoadCert(t, d.IntermediateCert()), mustLoadCert(t, d.CACert())
	if _, err := Revoke(ctx, RevokeOptions{Dir: d, Target: SerialHex(inter)}); err == nil || !strings.Contains(err.Error(), "confirm with --intermediate") {
		t.Errorf("revoke an intermediate without Intermediate: %v", err)
	}
	if _, err := Revoke(ctx, RevokeOptions{Dir: d, Target: d.ClientCert(), Intermediate: true}); err == nil || !strings.Contains(err.Error(), "not an intermediate CA") {
		t.Errorf("revoke a leaf with Intermediate: %v", err)
	}
	report := func() *VerifyReport {
		r, err := VerifyFiles(ctx, VerifyFileOptions{Dir: d, CertFile: d.ClientCert()})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := report(); !r.OK { // control
		t.Fatalf("before the revocation: %+v", r.Failed())
	}
	rv, err := Revoke(ctx, RevokeOptions{Dir: d, Intermediate: true, Reason: "cACompromise"})
	if err != nil {
		t.Fatal(err)
	}
	if !rv.Issuer.Equal(root) || rv.Record.Kind != KindIntermediate || signedEntry(rv.CRL, inter.SerialNumber) == nil {
		t.Fatalf("revocation %+v", rv)
	}
	if left := time.Until(rv.CRL.NextUpdate); left < (DefaultRootCRLDays-1)*24*time.Hour {
		t.Errorf("the root's new CRL lasts %v, want about %d days", left, DefaultRootCRLDays)
	}
	if r := report(); r.OK || !strings.Contains(r.Failed()[0].Detail, "intermediate CN=kvsctl intermediate CA") {
		t.Errorf("a leaf of the revoked intermediate: %+v", r.Checks)
	}
	if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "x", KeyType: ECDSAP256}); !errors.Is(err, ErrIssuerRevoked) {
		t.Errorf("issue from a revoked intermediate: %v", err)
	}
	if _, err := Rotate(ctx, RotateOptions{Dir: d}); err != nil {
		t.Fatal(err)
	}
	if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "x", KeyType: ECDSAP256}); err != nil {
		t.Errorf("issue after the rotation: %v", err)
	}
}

// TestRootKeyOffline: with ca.key exported, every command but those that
// need the root works; those say why they need it; importing brings it
// back, and only the right key is accepted.
func TestRootKeyOffline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	offline := filepath.Join(t.TempDir(), "root.key")
	if _, err := ExportRootKey(ctx, RootKeyOptions{Dir: d, File: d.Path("here.key")}); err == nil || !strings.Contains(err.Error(), "another medium") {
		t.Errorf("export into the directory: %v", err)
	}
	moved, err := ExportRootKey(ctx, RootKeyOptions{Dir: d, File: offline})
	if err != nil {
		t.Fatal(err)
	}
	if exists(d.CAKey()) || !exists(offline) || moved.Encrypted {
		t.Fatalf("after export: ca.key exists %v, %s exists %v", exists(d.CAKey()), offline, exists(offline))
	}
	if fi, _ := os.Stat(offline); fi.Mode().Perm() != KeyMode {
		t.Errorf("exported key mode %v", fi.Mode().Perm())
	}
	if _, err := ExportRootKey(ctx, RootKeyOptions{Dir: d, File: offline + "2"}); !errors.Is(err, ErrRootOffline) {
		t.Errorf("export twice: %v", err)
	}
	// Day-to-day work goes on.
	alice, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "alice", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Revoke(ctx, RevokeOptions{Dir: d, Target: alice.CertFile}); err != nil {
		t.Fatal(err)
	}
	if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.ServerCert(), RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	ups, err := UpdateCRL(ctx, CRLOptions{Dir: d})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || !ups[0].Resigned || ups[1].Resigned || !strings.Contains(ups[1].Note, "is not here") || ups[1].CRL == nil {
		t.Errorf("UpdateCRL with the root offline: %+v", ups)
	}
	// What needs the root says so, and writes nothing.
	before := dirFiles(t, d)
	for name, op := range map[string]func() error{
		"rotate":                func() error { _, err := Rotate(ctx, RotateOptions{Dir: d}); return err },
		"revoke --intermediate": func() error { _, err := Revoke(ctx, RevokeOptions{Dir: d, Intermediate: true}); return err },
	} {
		if err := op(); !errors.Is(err, ErrRootOffline) || !strings.Contains(err.Error(), "it is needed to") {
			t.Errorf("%s with the root offline: %v", name, err)
		}
	}
	if after := dirFiles(t, d); !maps.Equal(before, after) {
		t.Error("a refused command changed the directory")
	}
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	writeFile(t, wrong, must(MarshalKey(mustKey(t), nil)), KeyMode)
	if _, err := ImportRootKey(ctx, RootKeyOptions{Dir: d, File: wrong}); err == nil || !strings.Contains(err.Error(), "is not the key of the current root") {
		t.Errorf("import a wrong key: %v", err)
	}
	if _, err := ImportRootKey(ctx, RootKeyOptions{Dir: d, File: offline}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(ctx, RotateOptions{Dir: d}); err != nil {
		t.Errorf("rotate with the root back: %v", err)
	}
	// A flat CA signs every leaf: its key cannot go offline.
	if _, err := ExportRootKey(ctx, RootKeyOptions{Dir: newFlatPKI(t), File: filepath.Join(t.TempDir(), "k")}); err == nil || !strings.Contains(err.Error(), "flat PKI") {
		t.Errorf("export the key of a flat CA: %v", err)
	}
}

// TestRotateRefusesWhileLocked: rotation does not wait for a lock another
// command holds, and writes nothing.
func TestRotateRefusesWhileLocked(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	unlock, err := d.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	before := dirFiles(t, d)
	start := time.Now()
	if _, err := Rotate(context.Background(), RotateOptions{Dir: d}); !errors.Is(err, ErrLocked) {
		t.Errorf("rotate while locked: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("rotate waited for the lock")
	}
	if _, err := Retire(context.Background(), RetireOptions{Dir: d, Fingerprint: "00000000"}); !errors.Is(err, ErrLocked) {
		t.Errorf("retire while locked: %v", err)
	}
	if after := dirFiles(t, d); !maps.Equal(before, after) {
		t.Error("a refused rotation changed the directory")
	}
}

// constrainedPKI is a hierarchy whose intermediate (and root) may sign only
// for example.com, localhost, 127.0.0.0/8, ::1, mailboxes at example.com
// and URIs of hosts under example.org.
func constrainedPKI(t *testing.T) Dir {
	t.Helper()
	nc, err := ParseNameConstraints([]string{"example.com", "localhost"}, []string{"127.0.0.0/8", "::1/128"}, []string{"example.com"}, []string{".example.org"})
	if err != nil {
		t.Fatal(err)
	}
	d := Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := Init(context.Background(), InitOptions{Dir: d, KeyType: ECDSAP256, Constraints: nc, ConstrainRoot: true}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestNameConstraintsRefuseOutsideNames: issue, sign and renew refuse a
// name outside the constraints, naming the name and the constraint, and
// write nothing; names inside pass.
func TestNameConstraintsRefuseOutsideNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := constrainedPKI(t)
	inter := mustLoadCert(t, d.IntermediateCert())
	if !inter.PermittedDNSDomainsCritical || len(inter.PermittedDNSDomains) != 2 || len(mustLoadCert(t, d.CACert()).PermittedIPRanges) != 2 {
		t.Fatalf("constraints not on the CAs: %v %v", inter.PermittedDNSDomains, inter.PermittedIPRanges)
	}
	srv := mustLoadCert(t, d.ServerCert())
	for _, h := range srv.DNSNames {
		if h != "localhost" {
			t.Errorf("init put %s, outside the constraints, on the server certificate", h)
		}
	}
	for _, ok := range []IssueOptions{
		{Profile: ProfileServer, Name: "web", Hosts: []string{"web.example.com", "127.0.0.9", "::1"}},
		{Profile: ProfileServer, Name: "apex", Hosts: []string{"example.com"}},
		{Profile: ProfileClient, Name: "ops", Emails: []string{"ops@example.com"}, URIs: []string{"spiffe://a.example.org/ops"}},
	} {
		ok.Dir, ok.KeyType = d, ECDSAP256
		if _, err := Issue(ctx, ok); err != nil {
			t.Errorf("%s, within the constraints: %v", ok.Name, err)
		}
	}
	before := dirFiles(t, d)
	for _, tc := range []struct {
		o    IssueOptions
		want string
	}{
		{IssueOptions{Profile: ProfileServer, Name: "g", Hosts: []string{"www.google.com"}}, "DNS name www.google.com is outside the name constraints of CA CN=kvsctl intermediate CA"},
		{IssueOptions{Profile: ProfileServer, Name: "g", Hosts: []string{"notexample.com"}}, "DNS name notexample.com is outside"},
		{IssueOptions{Profile: ProfileServer, Name: "g", Hosts: []string{"10.0.0.1"}}, "IP address 10.0.0.1 is outside the name constraints of CA CN=kvsctl intermediate CA"},
		{IssueOptions{Profile: ProfileClient, Name: "g", Emails: []string{"eve@evil.example"}}, "e-mail address eve@evil.example is outside"},
		{IssueOptions{Profile: ProfileClient, Name: "g", Emails: []string{"eve@sub.example.com"}}, "e-mail address eve@sub.example.com is outside"},
		{IssueOptions{Profile: ProfileClient, Name: "g", URIs: []string{"spiffe://example.org/x"}}, "URI spiffe://example.org/x is outside"},
		{IssueOptions{Profile: ProfileClient, Name: "g", URIs: []string{"https://evil.example/x"}}, "which permit URI .example.org only"},
	} {
		tc.o.Dir, tc.o.KeyType = d, ECDSAP256
		_, err := Issue(ctx, tc.o)
		if !errors.Is(err, ErrNameNotPermitted) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.o.Hosts, err, tc.want)
		}
	}
	csr := writeCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil"}, DNSNames: []string{"evil.example"}}, mustKey(t))
	if _, err := SignCSR(ctx, SignOptions{Dir: d, CSRFile: csr, Profile: ProfileServer}); !errors.Is(err, ErrNameNotPermitted) {
		t.Errorf("sign an out-of-constraint CSR: %v", err)
	}
	if after := dirFiles(t, d); !maps.Equal(before, after) {
		t.Error("a refused request changed the directory")
	}
	// Init checks the names it is given before generating anything.
	if _, err := Init(ctx, InitOptions{Dir: Dir(filepath.Join(t.TempDir(), "x")), KeyType: ECDSAP256, Hosts: []string{"evil.example"},
		Constraints: NameConstraints{DNS: []string{"example.com"}}}); !errors.Is(err, ErrNameNotPermitted) {
		t.Errorf("init with a host outside its constraints: %v", err)
	}
}

// TestNameConstraintsHoldWhenBypassed: a leaf forged outside the
// constraints by signing with the intermediate's key directly, past pki's
// own check, is refused by Go's verifier; the same forgery inside them
// verifies (negative control).
func TestNameConstraintsHoldWhenBypassed(t *testing.T) {
	t.Parallel()
	d := constrainedPKI(t)
	ca, err := LoadCA(d, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(mustLoadCert(t, d.CACert()))
	forge := func(mutate func(*x509.Certificate)) error {
		k := mustKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: must(NewSerial()), Subject: pkix.Name{CommonName: "forged"},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		mutate(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf := must(x509.ParseCertificate(der))
		inter := x509.NewCertPool()
		inter.AddCert(ca.Cert)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	u, _ := url.Parse("spiffe://a.example.org/web")
	for name, ok := range map[string]func(*x509.Certificate){
		"DNS": func(c *x509.Certificate) { c.DNSNames = []string{"web.example.com"} },
		"IP":  func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")} },
		"URI": func(c *x509.Certificate) { c.URIs = []*url.URL{u} },
	} {
		if err := forge(ok); err != nil {
			t.Errorf("control, %s inside the constraints: %v", name, err)
		}
	}
	evil, _ := url.Parse("spiffe://evil.example/web")
	for name, bad := range map[string]func(*x509.Certificate){
		"DNS":   func(c *x509.Certificate) { c.DNSNames = []string{"www.google.com"} },
		"IP":    func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("8.8.8.8")} },
		"email": func(c *x509.Certificate) { c.EmailAddresses = []string{"ceo@evil.example"} },
		"URI":   func(c *x509.Certificate) { c.URIs = []*url.URL{evil} },
	} {
		var ce x509.CertificateInvalidError
		if err := forge(bad); !errors.As(err, &ce) || ce.Reason != x509.CANotAuthorizedForThisName {
			t.Errorf("forged %s outside the constraints: %v, want CANotAuthorizedForThisName", name, err)
		}
	}
}

// TestConstraintMatching pins the reading of each constraint type, the
// strict one where Go and OpenSSL differ.
func TestConstraintMatching(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, constraint string
		below, want      bool
	}{
		{"example.com", "example.com", true, true},
		{"a.b.example.com", "example.com", true, true},
		{"EXAMPLE.com", "example.COM", true, true},
		{"notexample.com", "example.com", true, false},
		{"example.com", ".example.com", true, false},
		{"a.example.com", ".example.com", true, true},
		{"a.example.com", "example.com", false, false}, // host-only: e-mail and URI
	} {
		if got := domainMatches(tc.name, tc.constraint, tc.below); got != tc.want {
			t.Errorf("domainMatches(%q, %q, %v) = %v", tc.name, tc.constraint, tc.below, got)
		}
	}
	for _, tc := range []struct {
		addr, constraint string
		want             bool
	}{
		{"ops@example.com", "example.com", true},
		{"ops@mail.example.com", "example.com", false},
		{"ops@mail.example.com", ".example.com", true},
		{"ops@example.com", "ops@example.com", true},
		{"OPS@example.com", "ops@example.com", false}, // the local part is case-sensitive
		{"ops@EXAMPLE.com", "ops@example.com", true},
	} {
		if got := emailMatches(tc.addr, tc.constraint); got != tc.want {
			t.Errorf("emailMatches(%q, %q) = %v", tc.addr, tc.constraint, got)
		}
	}
	_, n, _ := net.ParseCIDR("127.0.0.0/8")
	if !ipMatches(net.ParseIP("127.1.2.3"), n) || ipMatches(net.ParseIP("::ffff:10.0.0.1"), n) || ipMatches(net.ParseIP("::1"), n) {
		t.Error("IP range matching")
	}
	for _, bad := range [][4][]string{
		{{"*.example.com"}}, {{"exa mple.com"}}, {nil, {"127.0.0.1"}}, {nil, nil, {"@example.com"}}, {nil, nil, {"a@.example.com"}}, {nil, nil, nil, {"https://x"}},
	} {
		if _, err := ParseNameConstraints(bad[0], bad[1], bad[2], bad[3]); err == nil {
			t.Errorf("ParseNameConstraints accepted %q", bad)
		}
	}
}

// TestTTL: a lifetime as a duration, with its bounds: at least five
// minutes, and never past the issuer (refused when asked for, shortened
// when defaulted); NotBefore starts one minute back.
func TestTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	iss, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "short", TTL: time.Hour, KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if life := c.NotAfter.Sub(c.NotBefore); life != time.Hour+Backdate {
		t.Errorf("lifetime %v, want 1h plus the backdate", life)
	}
	if skew := time.Since(c.NotBefore); skew < Backdate-5*time.Second || skew > Backdate+5*time.Second {
		t.Errorf("NotBefore %v ago, want %v", skew, Backdate)
	}
	// Renewal keeps a short lifetime short.
	r, err := Renew(ctx, RenewOptions{Dir: d, CertFile: iss.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	if life := r.New.NotAfter.Sub(r.New.NotBefore); life != time.Hour+Backdate {
		t.Errorf("renewed lifetime %v, want the old one", life)
	}
	for _, tc := range []struct {
		o    IssueOptions
		want string
	}{
		{IssueOptions{TTL: 4 * time.Minute}, "too short: use at least 5m0s"},
		{IssueOptions{TTL: 826 * 24 * time.Hour}, "too long"},
		{IssueOptions{TTL: time.Hour, Days: 1}, "not both"},
	} {
		tc.o.Dir, tc.o.Profile, tc.o.Name, tc.o.KeyType = d, ProfileClient, "bad", ECDSAP256
		if _, err := Issue(ctx, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("TTL %v days %d: %v, want %q", tc.o.TTL, tc.o.Days, err, tc.want)
		}
	}
	// An intermediate with 100 days left.
	old := Dir(filepath.Join(t.TempDir(), "old"))
	past := time.Now().Add(-IntermediateValidity + 100*24*time.Hour)
	if _, err := Init(ctx, InitOptions{Dir: old, KeyType: ECDSAP256, Hosts: []string{"localhost"}, Now: past}); err != nil {
		t.Fatal(err)
	}
	inter := mustLoadCert(t, old.IntermediateCert())
	_, err = Issue(ctx, IssueOptions{Dir: old, Profile: ProfileClient, Name: "long", Days: 101, KeyType: ECDSAP256})
	if !errors.Is(err, ErrOutlivesIssuer) || !strings.Contains(err.Error(), stamp(inter.NotAfter)) {
		t.Errorf("a lifetime past the issuer: %v, want ErrOutlivesIssuer naming %s", err, stamp(inter.NotAfter))
	}
	def, err := Issue(ctx, IssueOptions{Dir: old, Profile: ProfileClient, Name: "default", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if !def.Cert.NotAfter.Equal(inter.NotAfter) {
		t.Errorf("the default lifetime ends %v, want it shortened to the issuer's %v", def.Cert.NotAfter, inter.NotAfter)
	}
}

func TestParseTTL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"5m": 5 * time.Minute, "24h": 24 * time.Hour, "90d": 90 * 24 * time.Hour, "1d12h": 36 * time.Hour, "1h30m": 90 * time.Minute,
	} {
		if got, err := ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "x", "-5m", "5", "1d-1h", "1.5d", "99999999d"} {
		if _, err := ParseTTL(bad); err == nil {
			t.Errorf("ParseTTL(%q) accepted", bad)
		}
	}
}

// TestNewCSR: a key (0600) and a CSR with the SANs asked for, which pki
// sign accepts; existing files are refused and nothing is written for bad
// input.
func TestNewCSR(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	o := CSROptions{Name: "web.example.com", Hosts: []string{"web.example.com", "10.0.0.7"}, URIs: []string{"spiffe://example.org/web"},
		KeyType: ECDSAP256, KeyFile: filepath.Join(dir, "web.key"), CSRFile: filepath.Join(dir, "web.csr")}
	r, err := NewCSR(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(o.KeyFile); fi.Mode().Perm() != KeyMode {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	csr := must(ParseCSR(mustRead(t, o.CSRFile)))
	if csr.CheckSignature() != nil || csr.Subject.CommonName != o.Name || len(csr.DNSNames) != 1 || len(csr.IPAddresses) != 1 || len(csr.URIs) != 1 || !bytes.Equal(r.CSR.Raw, csr.Raw) {
		t.Errorf("CSR %+v", csr)
	}
	if !KeyMatches(&x509.Certificate{PublicKey: csr.PublicKey}, must(LoadKey(o.KeyFile, nil))) {
		t.Error("the key does not match the CSR")
	}
	d := newPKI(t, false)
	iss, err := SignCSR(ctx, SignOptions{Dir: d, CSRFile: o.CSRFile, Profile: ProfileServer})
	if err != nil {
		t.Fatal(err)
	}
	if len(iss.Cert.URIs) != 1 || iss.Cert.VerifyHostname("10.0.0.7") != nil {
		t.Errorf("signed %v %v", iss.Cert.URIs, iss.Cert.IPAddresses)
	}
	if _, err := NewCSR(ctx, o); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("over existing files: %v", err)
	}
	empty := t.TempDir()
	for _, bad := range []CSROptions{
		{Name: "", KeyFile: "k", CSRFile: "c"},
		{Name: "x", Hosts: []string{"bad host"}},
		{Name: "x", Emails: []string{"not-an-address"}},
		{Name: "x", URIs: []string{"no-scheme"}},
		{Name: "x", KeyType: "dsa"},
	} {
		bad.KeyFile, bad.CSRFile = filepath.Join(empty, "k"), filepath.Join(empty, "c")
		if _, err := NewCSR(ctx, bad); err == nil {
			t.Errorf("NewCSR(%+v) accepted", bad)
		}
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("refused CSRs wrote %d files", len(entries))
	}
}

// releasePKI copies the PKI directory made by the release before the
// hierarchy (testdata/release-pki: a flat CA, the server and client,
// alice, and bob revoked) into a temporary directory, with the modes
// pki init gave it (git keeps none).
func releasePKI(t *testing.T) Dir {
	t.Helper()
	src := filepath.Join("testdata", "release-pki", "certs")
	d := Dir(filepath.Join(t.TempDir(), "certs"))
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(string(d), rel)
		if e.IsDir() {
			return os.MkdirAll(dst, DirMode)
		}
		mode := CertMode
		if strings.HasSuffix(p, ".key") {
			mode = KeyMode
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestReleasePKIKeepsWorking: a directory made by the release before the
// hierarchy (a flat CA) works unchanged with every command: its CRL is
// re-signed (its CRL has since expired) keeping bob's revocation, and
// certificates are issued, revoked and renewed by the flat CA; a root
// rotation turns it into a hierarchy whose old leaves keep verifying.
func TestReleasePKIKeepsWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := releasePKI(t)
	if d.Hierarchy() {
		t.Fatal("the release PKI reads as a hierarchy")
	}
	flat := mustLoadCert(t, d.CACert())
	bob := mustLoadCert(t, d.IssuedCert("bob"))
	ups, err := UpdateCRL(ctx, CRLOptions{Dir: d})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 || ups[0].CRL.Number.Int64() != 3 || signedEntry(ups[0].CRL, bob.SerialNumber) == nil {
		t.Fatalf("re-signed CRL: %+v", ups)
	}
	if inv := mustInventory(t, d); inv.CRLNumber != 3 || len(inv.CRLNumbers) != 0 {
		t.Errorf("inventory CRL number %d (%v), want 3 in the old field", inv.CRLNumber, inv.CRLNumbers)
	}
	l, err := List(ctx, d, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if l.Layout != "flat" || len(l.Certificates) != 5 || l.Certificates[0].Name != "ca" || l.Certificates[1].Depth != 1 || l.CRL.Warning != "" {
		t.Errorf("list of the release PKI: %+v", l)
	}
	for _, c := range l.Certificates {
		if want := map[string]string{"bob": "revoked"}[c.Name]; want != "" && c.Status != want {
			t.Errorf("%s: %s", c.Name, c.Status)
		}
	}
	carol, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "carol", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(must(LoadCerts(carol.CertFile))); n != 1 || carol.Cert.CheckSignatureFrom(flat) != nil {
		t.Errorf("carol: %d certificates in her file, want only the leaf, signed by the flat CA", n)
	}
	if _, err := Revoke(ctx, RevokeOptions{Dir: d, Target: d.IssuedCert("alice")}); err != nil {
		t.Fatal(err)
	}
	if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.ServerCert(), RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	rl := mustCRL(t, d)
	if len(rl.RevokedCertificateEntries) != 3 { // bob, alice, the old server
		t.Errorf("CRL lists %d, want 3", len(rl.RevokedCertificateEntries))
	}
	sf, _ := d.ServerFiles()
	if sf.Intermediates != "" {
		t.Errorf("server files of a flat PKI name intermediates %q", sf.Intermediates)
	}
	// Moving to a hierarchy: a new root beside the flat CA.
	r, err := Rotate(ctx, RotateOptions{Dir: d, Root: true})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Hierarchy() || !r.Replaced.Equal(flat) || !exists(d.RetiredKey(SerialHex(flat))) {
		t.Fatalf("after the root rotation: hierarchy %v", d.Hierarchy())
	}
	for _, f := range []string{d.ClientCert(), carol.CertFile} {
		if err := verifyLeaf(t, d, f); err != nil {
			t.Errorf("%s of the flat CA after the rotation: %v", f, err)
		}
	}
	// The flat CA keeps signing its leaves' CRL, with its retired key.
	rv, err := Revoke(ctx, RevokeOptions{Dir: d, Target: carol.CertFile})
	if err != nil || !rv.Issuer.Equal(flat) || len(rv.CRL.RevokedCertificateEntries) != 4 {
		t.Errorf("revoke carol after the rotation: %v %+v", err, rv)
	}
	ups, err = UpdateCRL(ctx, CRLOptions{Dir: d})
	if err != nil || len(ups) != 3 {
		t.Errorf("UpdateCRL after the rotation: %v, %d CRLs", err, len(ups))
	}
	if _, err := Retire(ctx, RetireOptions{Dir: d, Fingerprint: Fingerprint(flat.Raw)}); err != nil {
		t.Errorf("retire the flat CA: %v", err)
	}
}
