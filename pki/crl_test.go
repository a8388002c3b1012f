package pki

import (
	"context"
	"errors"
	"maps"
	"math/big"
	"strings"
	"testing"
	"time"
)

// editInventory changes inventory.json the way anyone who can write the
// file can, without the CA key.
func editInventory(t *testing.T, d Dir, edit func(*Inventory)) {
	t.Helper()
	inv, err := d.LoadInventory()
	if err != nil {
		t.Fatal(err)
	}
	edit(inv)
	data, err := inv.encode()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, d.Inventory(), data, CertMode)
}

// TestCRLKeepsSignedRevocations: inventory.json is not signed, so editing
// it must not undo a revocation. Every re-signing of the CRL (UpdateCRL,
// Revoke, Renew with RevokeOld) carries forward each entry of the current,
// verified crl.pem with its own time and reason, and the CRL number never
// goes down; a renewal of a certificate the CRL lists is refused.
func TestCRLKeepsSignedRevocations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	edits := []struct {
		name string
		edit func(inv *Inventory, serial string)
	}{
		{"revoked_at cleared", func(inv *Inventory, serial string) {
			r := inv.Find(serial)
			r.RevokedAt, r.Reason = nil, ""
		}},
		{"record deleted", func(inv *Inventory, serial string) {
			inv.Certificates = slicesDeleteSerial(inv.Certificates, serial)
		}},
		{"crl_number lowered too", func(inv *Inventory, serial string) {
			r := inv.Find(serial)
			r.RevokedAt, r.Reason = nil, ""
			inv.CRLNumber, inv.CRLNumbers = 0, nil
		}},
	}
	ops := []struct {
		name string
		op   func(d Dir) error
	}{
		{"UpdateCRL", func(d Dir) error { _, err := UpdateCRL(ctx, CRLOptions{Dir: d}); return err }},
		{"Revoke another", func(d Dir) error {
			_, err := Revoke(ctx, RevokeOptions{Dir: d, Target: d.IssuedCert("b")})
			return err
		}},
		{"Renew --revoke-old another", func(d Dir) error {
			_, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.IssuedCert("b"), RevokeOld: true})
			return err
		}},
	}
	for _, e := range edits {
		for _, o := range ops {
			t.Run(e.name+"/"+o.name, func(t *testing.T) {
				t.Parallel()
				d := newPKI(t, false)
				for _, n := range []string{"a", "b"} {
					if _, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: n, KeyType: ECDSAP256}); err != nil {
						t.Fatal(err)
					}
				}
				revokedAt := time.Now().Add(-30 * time.Second).UTC().Truncate(time.Second) // not now: the signed time must win
				rv, err := Revoke(ctx, RevokeOptions{Dir: d, Target: d.IssuedCert("a"), Reason: "keyCompromise", Now: revokedAt})
				if err != nil {
					t.Fatal(err)
				}
				before := mustCRL(t, d).Number
				editInventory(t, d, func(inv *Inventory) { e.edit(inv, rv.Record.Serial) })

				if err := o.op(d); err != nil {
					t.Fatal(err)
				}
				rl := mustCRL(t, d)
				if rl.Number.Cmp(before) <= 0 {
					t.Errorf("CRL number %v, not above %v", rl.Number, before)
				}
				serial, _ := new(big.Int).SetString(rv.Record.Serial, 16)
				found := false
				for _, en := range rl.RevokedCertificateEntries {
					if en.SerialNumber.Cmp(serial) == 0 {
						found = true
						if !en.RevocationTime.Equal(revokedAt) || en.ReasonCode != 1 {
							t.Errorf("entry revoked at %v, reason %d; want the signed %v, keyCompromise (1)", en.RevocationTime, en.ReasonCode, revokedAt)
						}
					}
				}
				if !found {
					t.Fatalf("serial %s (revoked, then un-revoked by editing inventory.json) is not in the new CRL", rv.Record.Serial)
				}
				if r := mustInventory(t, d).Find(rv.Record.Serial); r != nil && (r.RevokedAt == nil || !r.RevokedAt.Equal(revokedAt) || r.Reason != "keyCompromise") {
					t.Errorf("inventory record not restored from the CRL: %+v", r)
				}
				if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.IssuedCert("a")}); err == nil || !strings.Contains(err.Error(), "was revoked") {
					t.Errorf("renewing the revoked certificate: %v, want a refusal", err)
				}
			})
		}
	}
}

// TestCRLThatDoesNotVerify: a crl.pem that does not parse or is not signed
// by the CA is an error for every re-signing, never silently replaced by a
// CRL rebuilt from the inventory; nothing is written.
func TestCRLThatDoesNotVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		crl  func(t *testing.T) []byte
		want string
	}{
		{"signed by another CA", func(t *testing.T) []byte {
			data, err := otherCA(t).SignCRL(7, nil, time.Now(), 7)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}, "was not signed by any CA of"},
		{"corrupt", func(*testing.T) []byte { return []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n") }, "parse CRL"},
	} {
		for _, op := range []struct {
			name string
			op   func(d Dir) error
		}{
			{"UpdateCRL", func(d Dir) error { _, err := UpdateCRL(ctx, CRLOptions{Dir: d}); return err }},
			{"Revoke", func(d Dir) error { _, err := Revoke(ctx, RevokeOptions{Dir: d, Target: d.ClientCert()}); return err }},
			{"Renew --revoke-old", func(d Dir) error {
				_, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.ClientCert(), RevokeOld: true})
				return err
			}},
		} {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				t.Parallel()
				d := newPKI(t, false)
				writeFile(t, d.CRL(), tc.crl(t), CertMode)
				before := dirFiles(t, d)
				err := op.op(d)
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), d.CRL()) {
					t.Fatalf("error %v, want one that names %s and says %q", err, d.CRL(), tc.want)
				}
				if errors.Is(err, ErrCRLNotSigned) {
					t.Errorf("error %v claims the inventory was updated", err)
				}
				if after := dirFiles(t, d); !maps.Equal(before, after) {
					t.Error("a refused re-signing changed the directory")
				}
			})
		}
	}
}

func mustInventory(t *testing.T, d Dir) *Inventory {
	t.Helper()
	inv, err := d.LoadInventory()
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func slicesDeleteSerial(rs []Record, serial string) []Record {
	var out []Record
	for _, r := range rs {
		if r.Serial != serial {
			out = append(out, r)
		}
	}
	return out
}
