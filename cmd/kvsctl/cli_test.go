package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFlagsAnywhere: flags may come before or after the arguments, for
// every command alike, and '--' ends them.
func TestFlagsAnywhere(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	must := func(want string, args ...string) {
		t.Helper()
		code, out, errs := execKV(t, nil, args...)
		if code != 0 || out != want {
			t.Errorf("kvsctl %s: exit %d, stdout %q, want %q (stderr %q)", strings.Join(args, " "), code, out, want, errs)
		}
	}
	conn := []string{"--server", srv.server, "--dir", dir}
	must("1\n", append(append([]string{"put", "k", "v"}, conn...), "--create", "--json=false")...)
	must("v", append([]string{"get", "k"}, conn...)...)
	must("v", append(append([]string{"get", "--server", srv.server}, "k"), "--dir", dir)...)
	must("2\n", append(append([]string{"put", "dash"}, conn...), "--", "-v")...)
	must("-v", append(append([]string{"get"}, conn...), "dash")...)
	must("dash\nk\n", append([]string{"list"}, conn...)...)
	must("k\n", append([]string{"list", "k"}, conn...)...)

	// --create after the arguments is a condition, not a value.
	code, _, _ := execKV(t, nil, append([]string{"put", "k", "again"}, append(conn, "--create")...)...)
	if code != exitPrecondition {
		t.Errorf("put k again --create on an existing key: exit %d, want %d", code, exitPrecondition)
	}
	// An unknown flag after the arguments is still a usage error.
	code, _, errs := execKV(t, nil, append([]string{"get", "k", "--bogus"}, conn...)...)
	if code != exitUsage || !strings.Contains(errs, "flag provided but not defined: -bogus") {
		t.Errorf("unknown flag: exit %d, %q", code, errs)
	}
	// --help after the arguments shows the command's help.
	code, out, _ := execKV(t, nil, "get", "k", "--help")
	if code != 0 || !strings.Contains(out, "kvsctl get [--json]") {
		t.Errorf("get k --help: exit %d, %q", code, out)
	}
}

// TestInterleave pins the rewriting of command lines.
func TestInterleave(t *testing.T) {
	app := newApp(nil, nil, nil)
	for _, tc := range []struct{ in, want string }{
		{"kvsctl get k --dir x", "kvsctl get --dir x -- k"},
		{"kvsctl get --dir x k", "kvsctl get --dir x -- k"},
		{"kvsctl put k --create v", "kvsctl put --create -- k v"},
		{"kvsctl put k -- --create", "kvsctl put -- k --create"},
		{"kvsctl put k - --file=f", "kvsctl put --file=f -- k -"},
		{"kvsctl pki issue client bob --days 3", "kvsctl pki issue --days 3 -- client bob"},
		{"kvsctl pki trust install --nss", "kvsctl pki trust install --nss"},
		{"kvsctl bench --op put --clients 2", "kvsctl bench --op put --clients 2"},
		{"kvsctl bench hold --conns 3", "kvsctl bench hold --conns 3"},
		{"kvsctl get k --help", "kvsctl get --help"},
		{"kvsctl pki", "kvsctl pki"},
		{"kvsctl help pki", "kvsctl help pki"},
		{"kvsctl get --generate-bash-completion", "kvsctl get --generate-bash-completion"},
	} {
		got := strings.Join(interleave(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// TestDeploymentFlagsHaveEnv: every flag of serve and of the client
// commands can be set from the environment, as KVS_ and its name.
func TestDeploymentFlagsHaveEnv(t *testing.T) {
	perCall := []string{"json", "if-version", "create", "file", "limit", "page-size", "wait", "help", "prefix", "fail-on-compare", "batch", "ttl", "lease"}
	app := newApp(nil, nil, nil)
	for _, name := range []string{"serve", "get", "put", "delete", "list", "health", "txn", "export", "import"} {
		cmd := findCommand(app.Commands, name)
		for _, f := range cmd.Flags {
			fname := f.Names()[0]
			if slices.Contains(perCall, fname) {
				continue
			}
			ev, ok := f.(interface{ GetEnvVars() []string })
			want := "KVS_" + strings.ToUpper(strings.ReplaceAll(fname, "-", "_"))
			if !ok || !slices.Contains(ev.GetEnvVars(), want) {
				t.Errorf("%s --%s: no environment variable %s", name, fname, want)
			}
		}
	}
	// The documented older name still works.
	if f := dirFlag(); !slices.Contains(f.EnvVars, "KVS_CERTS") {
		t.Errorf("--dir lost KVS_CERTS: %v", f.EnvVars)
	}
}

// TestConfigFile: --config FILE sets flags of the client commands and
// serve; a flag wins over the environment, which wins over the file, which
// wins over the default; an unknown key or a missing file is refused.
func TestConfigFile(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", fmt.Sprintf("server: %s\ndir: %s\n", srv.server, dir))
	bad := write("bad.yaml", "server: 127.0.0.1:1\ndir: "+dir+"\n")

	// From the file alone.
	if code, out, errs := execKV(t, nil, "health", "--config", good); code != 0 || out != "ok\n" {
		t.Fatalf("health with the file: exit %d %q %q", code, out, errs)
	}
	// The environment beats the file.
	t.Setenv("KVS_SERVER", "127.0.0.1:1")
	if code, _, errs := execKV(t, nil, "health", "--config", good); code == 0 || !strings.Contains(errs, "127.0.0.1:1") {
		t.Errorf("KVS_SERVER did not beat the file: exit %d %q", code, errs)
	}
	// A flag beats the environment and the file.
	if code, out, errs := execKV(t, nil, "health", "--config", bad, "--server", srv.server); code != 0 || out != "ok\n" {
		t.Errorf("--server did not beat KVS_SERVER and the file: exit %d %q %q", code, out, errs)
	}
	t.Setenv("KVS_SERVER", "")
	os.Unsetenv("KVS_SERVER")
	// The config file's path can come from the environment too.
	t.Setenv("KVS_CONFIG", good)
	if code, out, errs := execKV(t, nil, "put", "from-env-config", "x"); code != 0 || strings.TrimSpace(out) == "" {
		t.Errorf("put with KVS_CONFIG: exit %d %q %q", code, out, errs)
	}
	os.Unsetenv("KVS_CONFIG")

	typo := write("typo.yaml", "sever: "+srv.server+"\n")
	if code, _, errs := execKV(t, nil, "health", "--config", typo); code != exitUsage || !strings.Contains(errs, `"sever" is not a flag of this command`) {
		t.Errorf("a typo in the file: exit %d %q", code, errs)
	}
	notMap := write("list.yaml", "- a\n- b\n")
	if code, _, errs := execKV(t, nil, "health", "--config", notMap); code != exitFailure || !strings.Contains(errs, "not a YAML map") {
		t.Errorf("a YAML list: exit %d %q", code, errs)
	}
	if code, _, errs := execKV(t, nil, "health", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != exitUsage || !strings.Contains(errs, "no such file") {
		t.Errorf("a missing file: exit %d %q", code, errs)
	}
	// serve reads it too: a bad listen address from the file is refused
	// the same way as on the command line.
	serveCfg := write("serve.yaml", "tls-min: \"1.1\"\n")
	if code, _, errs := execKV(t, nil, "serve", "--dir", dir, "--config", serveCfg); code != exitUsage || !strings.Contains(errs, "use 1.2 or 1.3") {
		t.Errorf("serve with tls-min 1.1 from the file: exit %d %q", code, errs)
	}
}

// TestCompletionBash sources 'kvsctl completion bash' in bash and
// completes a subcommand through the real binary.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	code, script, errs := execKV(t, nil, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: exit %d %s", code, errs)
	}
	// A kvsctl on PATH: this test binary running main().
	bin := t.TempDir()
	wrapper := fmt.Sprintf("#!/bin/sh\nKVS_CRASH_HELPER=1 exec %q -test.run='^TestCrashHelperProcess$' -- \"$@\"\n", os.Args[0])
	if err := os.WriteFile(filepath.Join(bin, "kvsctl"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	scriptFile := filepath.Join(t.TempDir(), "kvsctl.bash")
	if err := os.WriteFile(scriptFile, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"kvsctl", "pk"}, []string{"pki"}},
		{[]string{"kvsctl", "pki", "re"}, []string{"renew", "revoke"}},
		{[]string{"kvsctl", "get", "--se"}, []string{"--server"}},
	} {
		prog := fmt.Sprintf(`source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _kvsctl_complete; printf '%%s\n' "${COMPREPLY[@]}"`,
			scriptFile, strings.Join(tc.words, " "), len(tc.words)-1)
		cmd := exec.Command(bash, "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v: %s", err, out)
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("complete %q: %q, want %q", tc.words, got, tc.want)
		}
	}
	for _, sh := range []string{"zsh", "fish"} {
		if code, out, errs := execKV(t, nil, "completion", sh); code != 0 || !strings.Contains(out, "kvsctl") {
			t.Errorf("completion %s: exit %d %q %q", sh, code, out, errs)
		}
	}
	if code, _, _ := execKV(t, nil, "completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh: exit %d, want %d", code, exitUsage)
	}
}

// TestManPage renders 'kvsctl man' with man -l.
func TestManPage(t *testing.T) {
	code, page, errs := execKV(t, nil, "man")
	if code != 0 || !strings.Contains(page, ".TH") {
		t.Fatalf("man: exit %d %s", code, errs)
	}
	man, err := exec.LookPath("man")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("man not found: CI needs man-db")
		}
		t.Skip("!!! man not found: the man page is NOT rendered !!!")
	}
	f := filepath.Join(t.TempDir(), "kvsctl.1")
	if err := os.WriteFile(f, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "-l", f)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=100")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("man -l: %v: %s", err, out)
	}
	for _, want := range []string{"kvsctl", "serve", "pki", "--server"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
}
