package attack

import (
	"context"
	"os"
	"strings"
	"testing"
)

// demo runs the demo with the given scenarios and hooks, in a TMPDIR of the
// test's own, and checks that it leaves nothing behind there.
func runDemo(t *testing.T, weak weakening, names ...string) *Report {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rep, err := demo(context.Background(), DemoOptions{Scenarios: names}, weak)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("the demo left %d entries in its temporary directory, first %s", len(left), left[0].Name())
	}
	return rep
}

// result returns the result of scenario name.
func result(t *testing.T, rep *Report, name string) Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Scenario == name {
			return r
		}
	}
	t.Fatalf("no result for %s", name)
	return Result{}
}

// TestAttackScenarios runs each scenario on its own against the demo server
// and checks the verdict and the reason on both sides.
func TestAttackScenarios(t *testing.T) {
	cases := []struct {
		name     string
		outcome  Outcome
		observed string
		server   []string // substrings of ServerSaw
		client   []string // substrings of ClientSaw
	}{
		{"control", Passed, "put, get and delete worked",
			[]string{"PUT kvsctl-attack/", "/control by client -> 200", "GET ", "DELETE ", "-> 204"},
			[]string{"put version", "got the same", "deleted"}},
		{"self-signed-client", Refused, "refused at the handshake",
			[]string{"refused: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
			[]string{"remote error: tls: unknown certificate authority"}},
		{"rogue-ca", Refused, "refused at the handshake",
			[]string{"x509: certificate signed by unknown authority", `while trying to verify candidate authority certificate "kvsctl root CA `},
			[]string{"remote error: tls: unknown certificate authority"}},
		{"no-client-cert", Refused, "refused at the handshake",
			[]string{"refused: tls: client didn't provide a certificate"},
			[]string{"remote error: tls: certificate required"}},
		{"expired-client", Refused, "refused at the handshake",
			[]string{"x509: certificate has expired or is not yet valid", " is after "},
			[]string{"remote error: tls: expired certificate"}},
		{"not-yet-valid-client", Refused, "refused at the handshake",
			[]string{"x509: certificate has expired or is not yet valid", " is before "},
			[]string{"remote error: tls: expired certificate"}},
		{"revoked-client", Refused, "refused at the handshake",
			[]string{"refused: kvs: certificate revoked: serial ", "-revoked)"},
			[]string{"remote error: tls: bad certificate"}},
		{"revoked-resumed", Refused, "sessions resumed before revocation (TLS 1.3, TLS 1.2); after it: TLS 1.3 resumption refused, TLS 1.2 resumption refused",
			[]string{"handshake TLS 1.3, resumed session; refused: kvs: certificate revoked", "resumed session; refused: kvs: certificate revoked", "handshake TLS 1.2 "},
			[]string{"TLS 1.3: remote error: tls: bad certificate", "TLS 1.2: remote error: tls: bad certificate"}},
		{"server-cert-as-client", Refused, "refused at the handshake",
			[]string{"x509: certificate specifies an incompatible key usage"},
			[]string{"remote error: tls: bad certificate"}},
		{"tls10", Refused, "refused at the handshake",
			[]string{"refused: tls: client offered only unsupported versions: [301]"},
			[]string{"remote error: tls: protocol version not supported"}},
		{"tls11", Refused, "refused at the handshake",
			[]string{"refused: tls: client offered only unsupported versions: [302]"},
			[]string{"remote error: tls: protocol version not supported"}},
		{"tls12-cbc", Refused, "refused at the handshake",
			[]string{"refused: tls: no cipher suite supported by both client and server"},
			[]string{"remote error: tls: handshake failure"}},
		{"plaintext-http", Refused, "answered 400 Bad Request without TLS, nothing stored",
			[]string{"refused: client sent an HTTP request to an HTTPS server"},
			[]string{"HTTP 400: Client sent an HTTP request to an HTTPS server."}},
		{"rogue-server", Refused, "refused the server's certificate; no request sent",
			[]string{"impostor received 0 requests", "remote error: tls: bad certificate"},
			[]string{"kvs: server certificate not trusted", "x509: certificate signed by unknown authority"}},
		{"hostname-mismatch", Refused, "refused the server's certificate; no request sent",
			[]string{"impostor received 0 requests", "remote error: tls: bad certificate"},
			[]string{"kvs: server certificate not trusted", "x509: certificate is valid for kvsctl-attack-other.localhost, not localhost"}},
		{"san-impersonation", Refused, "write refused with 403: the SANs are not the identity client (without email:client: not valid under the CA's name constraints)",
			[]string{"PUT kvsctl-attack/", "-san -> 403"},
			[]string{`-san" is not in the policy (HTTP 403)`}},
		{"second-ca-revoked", Refused, "refused at the handshake",
			[]string{"refused: kvs: certificate revoked: serial ", "-ca2)"},
			[]string{"remote error: tls: bad certificate"}},
		{"rolled-back-crl", Refused, "the older CRL was refused, the revocation held",
			[]string{"refused: kvs: certificate revoked: serial ", "-rollback)"},
			[]string{"remote error: tls: bad certificate"}},
		{"outside-policy", Refused, "write refused with 403 by the policy",
			[]string{"PUT kvsctl-attack/", "by kvsctl-attack-outsider -> 403"},
			[]string{`identity "kvsctl-attack-outsider" is not in the policy (HTTP 403)`}},
		{"outside-constraints", Refused, "refused at the handshake: its DNS name kvsctl-attack-forged.invalid is outside the name constraints of kvsctl intermediate CA ",
			[]string{"x509: a root or intermediate certificate is not authorized to sign for this name", `DNS name "kvsctl-attack-forged.invalid" is not permitted`},
			[]string{"remote error: tls: bad certificate"}},
		{"intermediate-as-client", Refused, "refused at the handshake: the issuing intermediate CA kvsctl intermediate CA ",
			[]string{"kvs: a CA certificate (basic constraints CA:TRUE) is not a client certificate (kvsctl intermediate CA "},
			[]string{"remote error: tls: bad certificate"}},
		{"revoked-intermediate", Refused, "refused at the handshake: its intermediate CA kvsctl intermediate CA ",
			[]string{"refused: kvs: certificate revoked: the CA CN=kvsctl intermediate CA ", "of the chain, serial ", "revoked by CN=kvsctl root CA "},
			[]string{"remote error: tls: bad certificate"}},
		{"retired-root", Refused, "refused at the handshake: its root kvsctl root CA ",
			[]string{"refused: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
			[]string{"remote error: tls: unknown certificate authority"}},
		{"token-replay", Refused, "refused with 403: the token was spent by the first enrollment (serial ",
			[]string{"first: enroll ok for kvsctl-attack-", "-replay, serial ", "; replay: enroll refused: the token for ", " was used at "},
			[]string{"HTTP 403: the token for ", "-replay\" was used at ", "a token is good for one certificate"}},
		{"revoked-renewal", Refused, "refused with 403: serial ",
			[]string{"enroll ok for kvsctl-attack-", "-renew, serial ", "revoked on its directory (CRL number ", "; renew refused for kvsctl-attack-", "(keyCompromise): it cannot renew itself"},
			[]string{"HTTP 403: serial ", "-renew) was revoked on ", "it cannot renew itself"}},
	}
	if len(cases) != len(Scenarios()) {
		t.Errorf("%d cases for %d scenarios", len(cases), len(Scenarios()))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := runDemo(t, weakening{}, tc.name)
			if len(rep.Results) != 1 {
				t.Fatalf("%d results, want 1", len(rep.Results))
			}
			r := rep.Results[0]
			t.Logf("observed: %s\nserver saw: %s\nclient saw: %s", r.Observed, r.ServerSaw, r.ClientSaw)
			if r.Outcome != tc.outcome {
				t.Errorf("outcome %s, want %s", r.Outcome, tc.outcome)
			}
			if !strings.Contains(r.Observed, tc.observed) {
				t.Errorf("observed %q, want it to contain %q", r.Observed, tc.observed)
			}
			for _, s := range tc.server {
				if !strings.Contains(r.ServerSaw, s) {
					t.Errorf("server saw %q, want it to contain %q", r.ServerSaw, s)
				}
			}
			for _, s := range tc.client {
				if !strings.Contains(r.ClientSaw, s) {
					t.Errorf("client saw %q, want it to contain %q", r.ClientSaw, s)
				}
			}
			if r.Wrote {
				t.Error("the scenario wrote to the store")
			}
			if !rep.StoreCheck.Done || len(rep.StoreCheck.Found) != 0 {
				t.Errorf("store check %+v, want done and clean", rep.StoreCheck)
			}
			if !rep.OK {
				t.Error("report not OK")
			}
		})
	}
}

// TestAttackDemoAll runs the whole catalogue once, in order, as kvsctl
// attack demo does.
func TestAttackDemoAll(t *testing.T) {
	var steps, started, ended int
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rep, err := Demo(context.Background(), DemoOptions{Progress: func(p Progress) {
		switch {
		case p.Step != "":
			steps++
		case p.Result == nil:
			started++
		default:
			ended++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		for _, r := range rep.Failures() {
			t.Errorf("%s: %s: %s (server: %s; client: %s)", r.Scenario, r.Outcome, r.Observed, r.ServerSaw, r.ClientSaw)
		}
	}
	n := len(Scenarios())
	if len(rep.Results) != n || started != n || ended != n || steps < 3 {
		t.Errorf("%d results, %d started, %d ended, %d steps; want %d scenarios and set-up steps", len(rep.Results), started, ended, steps, n)
	}
	if rep.Count(Refused) != n-1 || rep.Count(Passed) != 1 {
		t.Errorf("%d refused and %d passed, want %d and 1", rep.Count(Refused), rep.Count(Passed), n-1)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the demo left %v behind", left)
	}
}

func TestAttackSelect(t *testing.T) {
	got, err := Select([]string{"tls11", "control", "tls11"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "control" || got[1].Name != "tls11" {
		t.Errorf("Select = %v, want control then tls11", got)
	}
	if _, err := Select([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "use one of control, self-signed-client") {
		t.Errorf("unknown scenario: err = %v", err)
	}
	seen := map[string]bool{}
	for _, s := range Scenarios() {
		if seen[s.Name] || s.Description == "" || s.Attacker == "" || s.Expected == "" || s.run == nil {
			t.Errorf("scenario %q is duplicated or incomplete", s.Name)
		}
		seen[s.Name] = true
	}
}
