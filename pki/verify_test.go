package pki

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/truststore"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	now := time.Now()
	issue := func(name string, p Profile, nb, na time.Time) string {
		t.Helper()
		iss, err := Issue(ctx, IssueOptions{Dir: d, Profile: p, Name: name, KeyType: ECDSAP256, notBefore: nb, notAfter: na})
		if err != nil {
			t.Fatal(err)
		}
		return iss.CertFile
	}
	expired := issue("expired", ProfileClient, now.Add(-48*time.Hour), now.Add(-time.Hour))
	future := issue("future", ProfileClient, now.Add(time.Hour), now.Add(48*time.Hour))
	revoked := issue("revoked", ProfileClient, time.Time{}, time.Time{})
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: revoked, Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	other := otherCA(t)
	alien, _ := leafFrom(t, other, ProfileClient, "alien")
	alienFile := filepath.Join(t.TempDir(), "alien.crt")
	os.WriteFile(alienFile, PEMCert(alien.Raw), 0o644)
	// A CRL signed by another CA, and an expired one of our own.
	otherCRL, _ := other.SignCRL(1, nil, now, 1)
	otherCRLFile := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(otherCRLFile, otherCRL, 0o644)
	ca, _ := LoadCA(d, nil, now)
	oldCRL, _ := ca.SignCRL(99, nil, now.Add(-10*24*time.Hour), 1)
	oldCRLFile := filepath.Join(t.TempDir(), "old.pem")
	os.WriteFile(oldCRLFile, oldCRL, 0o644)

	for _, tc := range []struct {
		name   string
		o      VerifyFileOptions
		failed string // the failing checks, comma-separated; "" means all pass
		detail string
	}{
		{"server ok", VerifyFileOptions{CertFile: d.ServerCert(), Host: "localhost", Usage: ProfileServer}, "", ""},
		{"client ok", VerifyFileOptions{CertFile: d.ClientCert(), Usage: ProfileClient}, "", ""},
		{"wrong host", VerifyFileOptions{CertFile: d.ServerCert(), Host: "evil.example"}, "hostname", "not valid for evil.example"},
		{"wrong usage", VerifyFileOptions{CertFile: d.ServerCert(), Usage: ProfileClient}, "usage", "clientAuth required"},
		{"expired", VerifyFileOptions{CertFile: expired}, "validity", "expired on"},
		{"not yet valid", VerifyFileOptions{CertFile: future}, "validity", "not valid until"},
		{"revoked", VerifyFileOptions{CertFile: revoked}, "revocation", "revoked by CN=kvsctl intermediate CA"},
		{"other CA", VerifyFileOptions{CertFile: alienFile}, "chain,revocation", "unknown authority"},
		{"CRL of another CA", VerifyFileOptions{CertFile: d.ClientCert(), CAFile: d.CACert(), CRLFile: otherCRLFile}, "revocation", "no CRL of CN=kvsctl intermediate CA"},
		{"expired CRL", VerifyFileOptions{CertFile: d.ClientCert(), CAFile: d.CACert(), CRLFile: oldCRLFile}, "revocation", "CRL expired"},
		{"explicit CA skips default CRL", VerifyFileOptions{CertFile: revoked, CAFile: d.CACert()}, "", ""},
	} {
		tc.o.Dir = d
		rep, err := VerifyFiles(ctx, tc.o)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var names, details []string
		for _, c := range rep.Failed() {
			names = append(names, c.Name)
			details = append(details, c.Detail)
		}
		if got := strings.Join(names, ","); got != tc.failed || rep.OK != (tc.failed == "") {
			t.Errorf("%s: failed %q (ok %v), want %q: %v", tc.name, got, rep.OK, tc.failed, details)
		}
		if tc.detail != "" && !strings.Contains(strings.Join(details, ";"), tc.detail) {
			t.Errorf("%s: details %q, want %q", tc.name, details, tc.detail)
		}
	}

	// Self-signed mode: the peer's certificate is the CA.
	ss := newPKI(t, true)
	rep, err := VerifyFiles(ctx, VerifyFileOptions{Dir: ss, CertFile: ss.ServerCert(), CAFile: ss.ServerCert(), Host: "127.0.0.1", Usage: ProfileServer})
	if err != nil || !rep.OK {
		t.Errorf("self-signed pinned: %v %+v", err, rep)
	}
	if _, err := VerifyFiles(ctx, VerifyFileOptions{Dir: ss, CertFile: ss.ServerCert()}); !errors.Is(err, ErrNoRoots) {
		t.Errorf("no CA: %v", err)
	}
	if _, err := VerifyFiles(ctx, VerifyFileOptions{Dir: d, CertFile: d.CRL()}); err == nil {
		t.Error("verify of a CRL file succeeded")
	}
}

func TestInspect(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	now := time.Now()
	ca := mustLoadCert(t, d.CACert())
	pemCA := mustRead(t, d.CACert())

	ins, err := Inspect(pemCA, now)
	if err != nil || len(ins.Certificates) != 1 {
		t.Fatalf("inspect CA: %v", err)
	}
	c := ins.Certificates[0]
	if !c.IsCA || c.MaxPathLen == nil || *c.MaxPathLen != 1 || !c.SelfSigned || c.KeyAlgorithm != "ECDSA" || c.KeySize != 256 ||
		c.Serial != SerialHex(ca) || c.Status != "valid" || !strings.Contains(strings.Join(c.KeyUsage, ","), "keyCertSign") {
		t.Errorf("CA info %+v", c)
	}
	if len(c.SHA256) != 95 || c.SHA256 != Fingerprint(ca.Raw) {
		t.Errorf("fingerprint %q", c.SHA256)
	}
	// DER works too, and a bundle yields every certificate.
	der, _ := pem.Decode(pemCA)
	if ins, err := Inspect(der.Bytes, now); err != nil || len(ins.Certificates) != 1 {
		t.Errorf("DER: %v", err)
	}
	bundle := append(mustRead(t, d.ServerCert()), pemCA...)
	if ins, err := Inspect(bundle, now); err != nil || len(ins.Certificates) != 3 || ins.Certificates[0].ExtKeyUsage[0] != "serverAuth" || !ins.Certificates[1].IsCA {
		t.Errorf("bundle: %v", err)
	}
	// CRL with a revoked entry.
	if _, err := Revoke(context.Background(), RevokeOptions{Dir: d, Target: d.ClientCert(), Reason: "superseded"}); err != nil {
		t.Fatal(err)
	}
	ins, err = Inspect(mustRead(t, d.CRL()), now)
	if err != nil || len(ins.CRLs) != 2 || !strings.Contains(ins.CRLs[1].Issuer, "root CA") {
		t.Fatalf("CRL: %v (want the intermediate's CRL, then the root's)", err)
	}
	if r := ins.CRLs[0]; r.Number != "2" || len(r.Revoked) != 1 || r.Revoked[0].Reason != "superseded" || r.Status != "current" {
		t.Errorf("CRL info %+v", r)
	}
	// A CSR asking for CA:TRUE says so.
	ins, err = Inspect(greedyCSR(t, pkix.Name{CommonName: "x"}, nil), now)
	if err != nil || len(ins.CSRs) != 1 {
		t.Fatalf("CSR: %v", err)
	}
	if r := ins.CSRs[0]; !r.SignatureValid || !strings.Contains(strings.Join(r.RequestedExtensions, ","), "basicConstraints (CA:TRUE) critical") {
		t.Errorf("CSR info %+v", r)
	}
	// Keys are never described, garbage is an error.
	if _, err := Inspect(mustRead(t, d.ServerKey()), now); !errors.Is(err, ErrNothingToInspect) || !strings.Contains(err.Error(), "never shown") {
		t.Errorf("key file: %v", err)
	}
	mixed := append(mustRead(t, d.ServerKey()), mustRead(t, d.ServerCert())...)
	if ins, err := Inspect(mixed, now); err != nil || len(ins.Skipped) != 1 || ins.Skipped[0] != "PRIVATE KEY" {
		t.Errorf("key + cert: %v %+v", err, ins)
	}
	for name, data := range map[string][]byte{
		"empty":   {},
		"garbage": []byte("hello world"),
		"bad PEM": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := Inspect(data, now); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Expired certificates say how long ago.
	info := DescribeCert(ca, ca.NotAfter.Add(49*time.Hour))
	if info.Status != "expired" || !strings.HasPrefix(info.TimeLeft, "expired 2d") {
		t.Errorf("expired: %q %q", info.Status, info.TimeLeft)
	}
}

func TestCheckTrustable(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	ca := mustLoadCert(t, d.CACert())
	if err := CheckTrustable(ca); err != nil {
		t.Errorf("root CA refused: %v", err)
	}
	if err := CheckTrustable(mustLoadCert(t, d.ServerCert())); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf: %v", err)
	}
	ss := newPKI(t, true)
	if err := CheckTrustable(mustLoadCert(t, ss.ServerCert())); err == nil {
		t.Error("self-signed leaf accepted as a root")
	}
	// A CA signed by another CA (an intermediate) is not a root.
	root := otherCA(t)
	k := mustKey(t)
	skid, _ := subjectKeyID(k.Public())
	serial, _ := NewSerial()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "intermediate"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: skid}
	inter, err := create(tmpl, root.Cert, k.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTrustable(inter); err == nil || !strings.Contains(err.Error(), "not self-signed") {
		t.Errorf("intermediate: %v", err)
	}
}

func TestTrustErrorShowsCommandOutput(t *testing.T) {
	t.Parallel()
	ce := truststore.NewCmdError(errors.New("exit status 1"), exec.Command("update-ca-certificates"),
		[]byte("W: /usr/local/share/ca-certificates/x.crt is not a certificate\nE: giving up\n"))
	err := trustError("install", ce)
	for _, want := range []string{"install CA: failed to execute update-ca-certificates: exit status 1", "its output:", "is not a certificate", "E: giving up"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if !errors.As(err, new(*truststore.CmdError)) {
		t.Error("CmdError not wrapped")
	}
}
