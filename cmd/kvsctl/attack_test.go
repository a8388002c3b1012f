package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/attack"
	"github.com/kvsctl/kvsctl/pki"
)

func TestAttackList(t *testing.T) {
	code, out, errOut := execKV(t, nil, "attack", "list")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(attack.Scenarios()) {
		t.Errorf("%d lines for %d scenarios:\n%s", len(lines), len(attack.Scenarios()), out)
	}
	if !strings.HasPrefix(lines[0], "control ") || !strings.Contains(out, "expired-client") || !strings.Contains(out, "(needs the CA key)") {
		t.Errorf("list:\n%s", out)
	}
	code, out, _ = execKV(t, nil, "attack", "list", "--json")
	var items []struct {
		Name       string `json:"name"`
		NeedsCAKey bool   `json:"needs_ca_key"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &items) != nil || len(items) != len(attack.Scenarios()) {
		t.Errorf("list --json: exit %d, %d items:\n%s", code, len(items), out)
	}
}

func TestAttackUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"attack", "demo", "--scenario", "nope"}, `kvsctl: attack: unknown scenario "nope": use one of control, `},
		{[]string{"attack", "run", "--scenario", "nope"}, `unknown scenario "nope"`},
		{[]string{"attack", "demo", "extra"}, `attack demo takes no arguments, got "extra"`},
		{[]string{"attack", "list", "extra"}, `attack list takes no arguments`},
		{[]string{"attack", "run", "--revocation-wait", "0s"}, `--revocation-wait must be positive`},
		{[]string{"attack", "demo", "--bogus"}, `flag provided but not defined: -bogus`},
	} {
		code, _, errOut := execKV(t, nil, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, exitUsage, tc.want)
		}
	}
}

// rowRE matches a row of the table: scenario and verdict.
var rowRE = regexp.MustCompile(`(?m)^\| ([a-z0-9-]+) +\| (ok|refused|SUCCEEDED|FAILED|skipped|ERROR) +\|`)

func TestAttackDemoCLI(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	code, out, errOut := execKV(t, nil, "attack", "demo")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	rows := rowRE.FindAllStringSubmatch(out, -1)
	if len(rows) != len(attack.Scenarios()) {
		t.Errorf("%d rows, want %d:\n%s", len(rows), len(attack.Scenarios()), out)
	}
	for _, r := range rows {
		if want := map[bool]string{true: "ok", false: "refused"}[r[1] == "control"]; r[2] != want {
			t.Errorf("%s: %s, want %s", r[1], r[2], want)
		}
	}
	for _, want := range []string{
		"| scenario ", "| server saw ", "| client saw ",
		"x509: certificate signed by unknown authority",
		"remote error: tls: unknown certificate authority",
		"24 of 24 attacks refused, control ok", "PASS",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	progress := regexp.MustCompile(`(?m)^attack: \[ ?\d+/\d+\] `).FindAllString(errOut, -1)
	if len(progress) != len(attack.Scenarios()) || !strings.Contains(errOut, "attack: kvs server listening on 127.0.0.1:") {
		t.Errorf("progress on stderr:\n%s", errOut)
	}
	if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
		t.Errorf("demo left %v behind", left)
	}
}

func TestAttackDemoJSONSubset(t *testing.T) {
	code, out, errOut := execKV(t, nil, "attack", "demo", "--json", "--scenario", "tls10", "--scenario", "control")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Mode    string `json:"mode"`
		OK      bool   `json:"ok"`
		Results []struct {
			Scenario  string `json:"scenario"`
			Outcome   string `json:"outcome"`
			ServerSaw string `json:"server_saw"`
			ClientSaw string `json:"client_saw"`
		} `json:"results"`
		StoreCheck struct {
			Done bool `json:"done"`
		} `json:"store_check"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !rep.OK || rep.Mode != "demo" || len(rep.Results) != 2 || rep.Results[0].Scenario != "control" || rep.Results[1].Scenario != "tls10" || !rep.StoreCheck.Done {
		t.Errorf("report: %+v", rep)
	}
	if r := rep.Results[1]; r.Outcome != "refused" || !strings.Contains(r.ServerSaw, "unsupported versions: [301]") || !strings.Contains(r.ClientSaw, "protocol version not supported") {
		t.Errorf("tls10: %+v", r)
	}
}

// TestAttackVerdictWeakened is the command's side of the negative controls:
// 'kvsctl attack run' against a real 'kvsctl serve' deliberately started
// without its CRL (--no-crl) reports the revocation attacks as SUCCEEDED, prints them
// in the table, and exits 1.
func TestAttackVerdictWeakened(t *testing.T) {
	dir := kvPKI(t, false)
	d := pki.Dir(dir)
	srv := startServeCLI(t, dir, "--cert", d.ServerCert(), "--key", d.ServerKey(), "--ca", d.CACert(), "--no-crl")
	code, out, errs := execKV(t, nil, "attack", "run", "--server", srv.server, "--dir", dir, "--revocation-wait", "1s",
		"--scenario", "control", "--scenario", "revoked-client", "--scenario", "revoked-resumed", "--scenario", "tls10")
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitFailure, out, errs)
	}
	for _, want := range []string{"| revoked-client ", "| SUCCEEDED ", "1 of 3 attacks refused", "FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if want := "2 attack(s) SUCCEEDED: revoked-client, revoked-resumed"; !strings.Contains(errs, want) {
		t.Errorf("stderr %q, want %q", errs, want)
	}
}

func TestAttackRunCLI(t *testing.T) {
	dir := kvPKI(t, false)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServeCLI(t, dir, "--policy", policy, "--reload-interval", "100ms")
	code, out, errOut := execKV(t, nil, "attack", "run", "--server", s.server, "--dir", dir, "--revocation-wait", "10s")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "n/a (remote)") || !strings.Contains(out, "18 of 18 attacks refused, control ok, 6 skipped") {
		t.Errorf("stdout:\n%s", out)
	}

	// A client machine: CA certificate and client files, no CA key.
	client := filepath.Join(t.TempDir(), "certs")
	if err := os.MkdirAll(client, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"ca.crt": 0o644, "client.crt": 0o644, "client.key": 0o600} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(client, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut = execKV(t, nil, "attack", "run", "--server", s.server, "--dir", client)
	if code != exitOK {
		t.Fatalf("without the CA key: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "8 of 8 attacks refused, control ok, 16 skipped") || !strings.Contains(out, "needs the CA key") {
		t.Errorf("without the CA key:\n%s", out)
	}

	// Nothing listening: the control cannot connect, the run fails.
	code, _, errOut = execKV(t, nil, "attack", "run", "--server", "127.0.0.1:1", "--dir", dir, "--scenario", "control")
	if code != exitFailure || !strings.Contains(errOut, "kvsctl: control FAILED") {
		t.Errorf("no server: exit %d, stderr %q", code, errOut)
	}
}
