package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/pki"
)

// TestPkiCRLKeepsRevocationAfterInventoryEdit: inventory.json is not
// signed; clearing a revocation in it and re-signing the CRL with
// 'pki crl' must not take the serial off the CRL.
func TestPkiCRLKeepsRevocationAfterInventoryEdit(t *testing.T) {
	f := newFixture(t)
	dir := string(f.dir)
	serial := pki.SerialHex(certOf(t, f.dir.ClientCert()))
	mustRun(t, "pki", "revoke", f.dir.ClientCert(), "--reason", "keyCompromise", "--dir", dir)

	// The edit anyone who can write inventory.json can make.
	var inv map[string]any
	if err := json.Unmarshal(mustRead(t, f.dir.Inventory()), &inv); err != nil {
		t.Fatal(err)
	}
	edited := false
	for _, c := range inv["certificates"].([]any) {
		if r := c.(map[string]any); r["serial"] == serial {
			delete(r, "revoked_at")
			delete(r, "reason")
			edited = true
		}
	}
	data, _ := json.MarshalIndent(inv, "", "  ")
	if !edited {
		t.Fatalf("serial %s not in inventory.json", serial)
	}
	f.write(t, "certs/inventory.json", data, 0o644)

	out := mustRun(t, "pki", "crl", "--dir", dir)
	if !strings.Contains(out, "1 revoked") {
		t.Errorf("pki crl: %s", out)
	}
	var ins pki.Inspection
	if err := json.Unmarshal([]byte(mustRun(t, "pki", "inspect", "--json", f.dir.CRL())), &ins); err != nil {
		t.Fatal(err)
	}
	// The intermediate's CRL, then the root's (which lists nothing).
	if len(ins.CRLs) != 2 || len(ins.CRLs[1].Revoked) != 0 || len(ins.CRLs[0].Revoked) != 1 || ins.CRLs[0].Revoked[0].Serial != serial || ins.CRLs[0].Revoked[0].Reason != "keyCompromise" {
		t.Fatalf("the new CRL lost the revocation of %s: %+v", serial, ins.CRLs)
	}
	if code, _, errs := runPKI(t, "pki", "verify", f.dir.ClientCert(), "--dir", dir); code != 1 || !strings.Contains(errs, "revocation: certificate serial "+serial+" revoked") {
		t.Errorf("verify after the edit and 'pki crl': exit %d, %s", code, errs)
	}
	if out := mustRun(t, "pki", "list", "--dir", dir); !strings.Contains(out, "revoked (keyCompromise)") {
		t.Errorf("pki list does not show the revocation again:\n%s", out)
	}
}
