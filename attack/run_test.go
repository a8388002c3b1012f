package attack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/kvs/server/servertest"
	"github.com/kvsctl/kvsctl/pki"
)

// remoteServer is a kvs server started the way kvsctl serve starts one
// (files from a PKI directory, the CRL watched for changes), for Run to
// attack from outside.
type remoteServer struct {
	addr  string
	dir   pki.Dir
	store kvs.Store
}

func startRemote(t *testing.T, withPolicy bool) *remoteServer {
	t.Helper()
	return startRemoteWith(t, withPolicy, nil)
}

func startRemoteMode(t *testing.T, withPolicy, selfSigned bool) *remoteServer {
	t.Helper()
	return startRemoteWith(t, withPolicy, func(o *pki.InitOptions) { o.SelfSigned = selfSigned })
}

// startRemoteConstrained starts a server of a PKI whose intermediate has
// the demo's name constraints.
func startRemoteConstrained(t *testing.T) *remoteServer {
	t.Helper()
	nc, err := demoConstraints()
	if err != nil {
		t.Fatal(err)
	}
	return startRemoteWith(t, true, func(o *pki.InitOptions) { o.Constraints = nc })
}

func startRemoteWith(t *testing.T, withPolicy bool, mutate func(*pki.InitOptions)) *remoteServer {
	t.Helper()
	d := servertest.PKIWith(t, mutate)
	cfg := server.Config{ReloadInterval: 50 * time.Millisecond}
	if withPolicy {
		pf := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(pf, []byte("identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.PolicyFile = pf
	}
	srv := servertest.Start(t, d, cfg)
	return &remoteServer{addr: srv.Addr, dir: d, store: srv.Store}
}

// clientOnlyDir copies what a client machine holds: the CA certificate and
// the client's files, no CA key.
func clientOnlyDir(t *testing.T, from pki.Dir) pki.Dir {
	t.Helper()
	to := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if err := os.MkdirAll(string(to), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{from.CACert(), to.CACert(), 0o644}, {from.ClientCert(), to.ClientCert(), 0o644}, {from.ClientKey(), to.ClientKey(), 0o600}} {
		data, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.to, data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestAttackRunRemote attacks a server of a PKI whose intermediate has
// name constraints, as the demo's has. The scenarios that change a PKI run
// only on the demo's second CA and are skipped.
func TestAttackRunRemote(t *testing.T) {
	rs := startRemoteConstrained(t)
	rep, err := Run(context.Background(), RunOptions{Server: rs.addr, Dir: rs.dir, RevocationWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		t.Logf("%-22s %-9s %s | server: %s | client: %s", r.Scenario, r.Outcome, r.Observed, r.ServerSaw, r.ClientSaw)
	}
	if !rep.OK || rep.Mode != "remote" {
		t.Errorf("report OK=%v mode %s, want OK remote; failures: %+v", rep.OK, rep.Mode, rep.Failures())
	}
	// Only the demo has a second CA and an online CA.
	secondOnly := []string{"second-ca-revoked", "revoked-intermediate", "retired-root"}
	onlineOnly := []string{"token-replay", "revoked-renewal"}
	demoOnly := len(secondOnly) + len(onlineOnly)
	if rep.Count(Refused) != len(Scenarios())-1-demoOnly || rep.Count(Passed) != 1 || rep.Count(Skipped) != demoOnly {
		t.Errorf("%d refused, %d passed, %d skipped; want %d, 1 and %d", rep.Count(Refused), rep.Count(Passed), rep.Count(Skipped), len(Scenarios())-1-demoOnly, demoOnly)
	}
	for _, name := range secondOnly {
		if r := result(t, rep, name); r.Outcome != Skipped || !strings.Contains(r.Observed, "needs a second CA") {
			t.Errorf("%s: %s (%s), want skipped for want of a second CA", name, r.Outcome, r.Observed)
		}
	}
	for _, name := range onlineOnly {
		if r := result(t, rep, name); r.Outcome != Skipped || !strings.Contains(r.Observed, "needs an online CA on a PKI of its own") {
			t.Errorf("%s: %s (%s), want skipped for want of an online CA", name, r.Outcome, r.Observed)
		}
	}
	for name, want := range map[string]string{
		"outside-constraints":    "expected because its DNS name kvsctl-attack-forged.invalid is outside the name constraints",
		"intermediate-as-client": "expected because the issuing intermediate CA",
	} {
		if r := result(t, rep, name); !strings.Contains(r.Observed, "refused at the handshake (tls: bad certificate); "+want) {
			t.Errorf("%s observed %q, want the alert and %q", name, r.Observed, want)
		}
	}
	for _, name := range []string{"self-signed-client", "revoked-client", "tls10", "plaintext-http"} {
		if r := result(t, rep, name); r.ServerSaw != remoteSaw {
			t.Errorf("%s: server saw %q, want %q", name, r.ServerSaw, remoteSaw)
		}
	}
	if r := result(t, rep, "revoked-resumed"); !strings.Contains(r.Observed, "TLS 1.3 resumption refused, TLS 1.2 resumption refused") {
		t.Errorf("revoked-resumed observed %q", r.Observed)
	}
	if r := result(t, rep, "rogue-server"); !strings.Contains(r.ServerSaw, "impostor received 0 requests") {
		t.Errorf("rogue-server: server saw %q", r.ServerSaw)
	}
	if r := result(t, rep, "hostname-mismatch"); !strings.Contains(r.ClientSaw, "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs") {
		t.Errorf("hostname-mismatch: client saw %q", r.ClientSaw)
	}
	if !rep.StoreCheck.Done || len(rep.StoreCheck.Found) != 0 {
		t.Errorf("store check %+v", rep.StoreCheck)
	}
	// Nothing left under the prefix (the control deleted its key), no
	// issued files left, the two revocations recorded.
	if keys, _, err := rs.store.List(context.Background(), Prefix, "", 0); err != nil || len(keys) != 0 {
		t.Errorf("store holds %v (%v) under %s", keys, err, Prefix)
	}
	if left, _ := filepath.Glob(filepath.Join(string(rs.dir), "issued", "*")); len(left) != 0 {
		t.Errorf("issued files left behind: %v", left)
	}
	inv, err := rs.dir.LoadInventory()
	if err != nil {
		t.Fatal(err)
	}
	revoked := 0
	for _, r := range inv.Certificates {
		if r.RevokedAt != nil && strings.HasPrefix(r.Name, "kvsctl-attack-") {
			revoked++
		}
	}
	if revoked != 3 {
		t.Errorf("%d attack certificates revoked in the inventory, want 3", revoked)
	}
}

// TestAttackRunRemoteFlat attacks a server of a flat PKI (one CA that
// signs the leaves itself, as before the hierarchy): every scenario that
// does not need the demo's second CA runs and is refused, the CA's own
// certificate included.
func TestAttackRunRemoteFlat(t *testing.T) {
	rs := startRemoteWith(t, true, func(o *pki.InitOptions) { o.Flat = true })
	if rs.dir.Hierarchy() {
		t.Fatal("the PKI is a hierarchy")
	}
	rep, err := Run(context.Background(), RunOptions{Server: rs.addr, Dir: rs.dir, RevocationWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		t.Logf("%-24s %-9s %s | client: %s", r.Scenario, r.Outcome, r.Observed, r.ClientSaw)
	}
	// Skipped: the three that need a second CA, the two that need an
	// online CA, and outside-constraints (the flat CA has no name
	// constraints).
	if !rep.OK || rep.Count(Skipped) != 6 || rep.Count(Refused) != len(Scenarios())-7 {
		t.Errorf("OK=%v, %d skipped, %d refused; want OK, 6 and %d", rep.OK, rep.Count(Skipped), rep.Count(Refused), len(Scenarios())-7)
	}
	if r := result(t, rep, "intermediate-as-client"); r.Outcome != Refused || !strings.Contains(r.Observed, "expected because the CA kvsctl CA is a CA certificate") {
		t.Errorf("intermediate-as-client on a flat PKI: %s (%s)", r.Outcome, r.Observed)
	}
}

func TestAttackRunRemoteWithoutCAKey(t *testing.T) {
	rs := startRemote(t, true)
	dir := clientOnlyDir(t, rs.dir)
	rep, err := Run(context.Background(), RunOptions{Server: rs.addr, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var skipped []string
	for _, r := range rep.Results {
		s, _ := Lookup(r.Scenario)
		if r.Outcome == Skipped {
			skipped = append(skipped, r.Scenario)
			if !strings.Contains(r.Observed, "needs the CA key") {
				t.Errorf("%s skipped with %q", r.Scenario, r.Observed)
			}
		}
		if s.NeedsCAKey != (r.Outcome == Skipped) {
			t.Errorf("%s: needs CA key %v, outcome %s", r.Scenario, s.NeedsCAKey, r.Outcome)
		}
	}
	if len(skipped) != 16 || !rep.OK {
		t.Errorf("skipped %v, OK %v; want 16 skipped and OK", skipped, rep.OK)
	}
}

// TestAttackRunRemoteSelfSigned attacks a server of a self-signed PKI (the
// original project's set-up): there is no CA, so its scenarios are skipped,
// and the look-alike copies the certificate the server pins.
func TestAttackRunRemoteSelfSigned(t *testing.T) {
	rs := startRemoteMode(t, true, true)
	rep, err := Run(context.Background(), RunOptions{Server: "localhost:" + strings.Split(rs.addr, ":")[1], Dir: rs.dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		t.Logf("%-22s %-9s %s | client: %s", r.Scenario, r.Outcome, r.Observed, r.ClientSaw)
	}
	if !rep.OK || rep.Count(Skipped) != 16 || rep.Count(Refused) != 8 {
		t.Errorf("OK=%v, %d skipped, %d refused; want OK, 16 and 8", rep.OK, rep.Count(Skipped), rep.Count(Refused))
	}
	if r := result(t, rep, "expired-client"); !strings.Contains(r.Observed, "self-signed PKI without a CA") {
		t.Errorf("expired-client skipped with %q", r.Observed)
	}
	if r := result(t, rep, "rogue-server"); !strings.Contains(r.ClientSaw, "x509: certificate signed by unknown authority") {
		t.Errorf("rogue-server: client saw %q", r.ClientSaw)
	}
}

// TestAttackRunRemoteNoPolicy is the remote negative control: a server
// without a policy lets the outsider write, the run says so, and the store
// check finds and removes the key.
func TestAttackRunRemoteNoPolicy(t *testing.T) {
	rs := startRemote(t, false)
	rep, err := Run(context.Background(), RunOptions{Server: rs.addr, Dir: rs.dir, Scenarios: []string{"control", "outside-policy", "no-client-cert", "outside-constraints"}})
	if err != nil {
		t.Fatal(err)
	}
	// This PKI has no name constraints: nothing is outside them.
	if r := result(t, rep, "outside-constraints"); r.Outcome != Skipped || !strings.Contains(r.Observed, "no DNS or IP name constraints") {
		t.Errorf("outside-constraints on an unconstrained PKI: %s (%s), want skipped", r.Outcome, r.Observed)
	}
	r := result(t, rep, "outside-policy")
	if r.Outcome != Succeeded || !r.Wrote || rep.OK {
		t.Errorf("outside-policy %s wrote=%v, report OK=%v; want SUCCEEDED, written, not OK", r.Outcome, r.Wrote, rep.OK)
	}
	if len(rep.StoreCheck.Found) != 1 || rep.StoreCheck.Found[0] != r.Key || !strings.Contains(rep.StoreCheck.Note, "deleted") {
		t.Errorf("store check %+v, want it to find and delete %s", rep.StoreCheck, r.Key)
	}
	if _, err := rs.store.Get(context.Background(), r.Key); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("the outsider's key is still there: %v", err)
	}
}

func TestAttackRunErrors(t *testing.T) {
	if _, err := Run(context.Background(), RunOptions{Dir: pki.Dir(t.TempDir())}); err == nil {
		t.Error("no server: no error")
	}
	if _, err := Run(context.Background(), RunOptions{Server: "127.0.0.1:1", Dir: pki.Dir(t.TempDir())}); !errors.Is(err, pki.ErrNoPKI) {
		t.Errorf("empty directory: err = %v, want ErrNoPKI", err)
	}
	if _, err := Run(context.Background(), RunOptions{Server: "127.0.0.1:1", Scenarios: []string{"x"}}); !errors.Is(err, ErrUnknownScenario) {
		t.Errorf("unknown scenario: err = %v", err)
	}
}
