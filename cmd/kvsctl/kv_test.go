package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/pki"
)

// TestKVCommands runs get, put, delete, list and health against a real
// 'kvsctl serve' in both PKI modes and checks their output and exit codes.
func TestKVCommands(t *testing.T) {
	for _, selfSigned := range []bool{false, true} {
		t.Run(map[bool]string{false: "ca", true: "self-signed"}[selfSigned], func(t *testing.T) {
			dir := kvPKI(t, selfSigned)
			srv := startServeCLI(t, dir)
			conn := []string{"--server", srv.server, "--dir", dir}
			kv := func(stdin []byte, cmd string, args ...string) (int, string, string) {
				t.Helper()
				return execKV(t, stdin, append(append([]string{cmd}, conn...), args...)...)
			}
			must := func(code int, stdout, stderr string) string {
				t.Helper()
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				return stdout
			}
			wantCode := func(what string, want int, code int, stdout, stderr string) {
				t.Helper()
				if code != want {
					t.Errorf("%s: exit %d, want %d (stdout %q, stderr %q)", what, code, want, stdout, stderr)
				}
				if code != 0 && (!strings.HasPrefix(stderr, "kvsctl: ") || stdout != "") {
					t.Errorf("%s: want only a 'kvsctl: ' message on stderr, got stdout %q stderr %q", what, stdout, stderr)
				}
			}

			if out := must(kv(nil, "health", "--wait", "5s")); out != "ok\n" {
				t.Errorf("health: %q", out)
			}
			v1, err := strconv.ParseInt(strings.TrimSpace(must(kv(nil, "put", "hello", "world"))), 10, 64)
			if err != nil {
				t.Fatalf("put does not print a version: %v", err)
			}
			if out := must(kv(nil, "get", "hello")); out != "world" {
				t.Errorf("get = %q, want the raw value", out)
			}
			var got struct {
				Key     string
				Version int64
				Value   string
			}
			if err := json.Unmarshal([]byte(must(kv(nil, "get", "--json", "hello"))), &got); err != nil {
				t.Fatal(err)
			}
			if got.Key != "hello" || got.Version != v1 || got.Value != base64.StdEncoding.EncodeToString([]byte("world")) {
				t.Errorf("get --json = %+v", got)
			}

			// Binary values, from a file and from stdin, come back byte for byte.
			bin := make([]byte, 0, 512)
			for i := range 512 {
				bin = append(bin, byte(i))
			}
			file := filepath.Join(t.TempDir(), "bin")
			if err := os.WriteFile(file, bin, 0o600); err != nil {
				t.Fatal(err)
			}
			must(kv(nil, "put", "--file", file, "bin/file"))
			must(kv(bin, "put", "bin/stdin", "-"))
			for _, k := range []string{"bin/file", "bin/stdin"} {
				if out := must(kv(nil, "get", k)); out != string(bin) {
					t.Errorf("get %s: %d bytes, not the %d written", k, len(out), len(bin))
				}
			}
			// Keys named like the help command are keys.
			must(kv(nil, "put", "help", "h"))
			if out := must(kv(nil, "get", "help")); out != "h" {
				t.Errorf("get help = %q", out)
			}

			// Compare-and-swap and create-only: exit 4, nothing written.
			code, out, errs := kv(nil, "put", "--if-version", strconv.FormatInt(v1+1000, 10), "hello", "stale")
			wantCode("put --if-version stale", exitPrecondition, code, out, errs)
			code, out, errs = kv(nil, "put", "--create", "hello", "again")
			wantCode("put --create on an existing key", exitPrecondition, code, out, errs)
			if out := must(kv(nil, "get", "hello")); out != "world" {
				t.Errorf("a failed condition wrote %q", out)
			}
			v2 := strings.TrimSpace(must(kv(nil, "put", "--if-version", strconv.FormatInt(v1, 10), "hello", "swapped")))
			must(kv(nil, "put", "--create", "fresh", "new"))
			code, out, errs = kv(nil, "delete", "--if-version", strconv.FormatInt(v1, 10), "hello")
			wantCode("delete --if-version stale", exitPrecondition, code, out, errs)
			must(kv(nil, "delete", "--if-version", v2, "hello"))

			// Not found: exit 3.
			code, out, errs = kv(nil, "get", "hello")
			wantCode("get a deleted key", exitNotFound, code, out, errs)
			code, out, errs = kv(nil, "delete", "hello")
			wantCode("delete a missing key", exitNotFound, code, out, errs)

			// list pages through every key with the cursor.
			for i := range 5 {
				must(kv(nil, "put", fmt.Sprintf("l/%d", i), "x"))
			}
			if out := must(kv(nil, "list", "--page-size", "2", "l/")); out != "l/0\nl/1\nl/2\nl/3\nl/4\n" {
				t.Errorf("list l/ = %q", out)
			}
			if out := must(kv(nil, "list", "--page-size", "2", "--limit", "3", "l/")); out != "l/0\nl/1\nl/2\n" {
				t.Errorf("list --limit 3 = %q", out)
			}
			var keys []struct {
				Key     string `json:"key"`
				Version int64  `json:"version"`
				Size    int    `json:"size"`
			}
			if err := json.Unmarshal([]byte(must(kv(nil, "list", "--json", "--page-size", "3", "l/"))), &keys); err != nil || len(keys) != 5 || keys[4].Key != "l/4" || keys[4].Size != 1 {
				t.Errorf("list --json = %+v, %v", keys, err)
			}
			if out := must(kv(nil, "list", "--json", "none/")); strings.TrimSpace(out) != "[]" {
				t.Errorf("empty list --json = %q", out)
			}
			if out := must(kv(nil, "list")); !strings.Contains(out, "bin/file\n") || !strings.Contains(out, "fresh\n") {
				t.Errorf("list = %q", out)
			}
			must(kv(nil, "put", "ctl/a\nb", "x"))
			if out := must(kv(nil, "list", "ctl/")); out != `"ctl/a\nb"`+"\n" {
				t.Errorf("a key with a newline lists as %q, want it quoted", out)
			}
			// Bidirectional overrides (U+202E) and escape sequences are
			// quoted too, so a key cannot rewrite the line it is listed on
			// (security finding 10); JSON keeps the exact key.
			must(kv(nil, "put", "bidi/\u202etxt.exe", "x"))
			must(kv(nil, "put", "bidi/\x1b[31mred", "x"))
			if out := must(kv(nil, "list", "bidi/")); out != `"bidi/\x1b[31mred"`+"\n"+`"bidi/\u202etxt.exe"`+"\n" {
				t.Errorf("keys with escapes list as %q, want them quoted", out)
			}
			if out := must(kv(nil, "list", "--json", "bidi/")); !strings.Contains(out, "\u202etxt.exe") {
				t.Errorf("list --json lost the exact key: %q", out)
			}

			// Usage errors: exit 2.
			for _, args := range [][]string{
				{"get"},
				{"get", "a", "b"},
				{"put", "k"},
				{"put", "--create", "--if-version", "3", "k", "v"},
				{"put", "--if-version", "0", "k", "v"},
				{"delete", "--create", "k"},
				{"list", "--page-size", "5000"},
				{"get", "--nope", "k"},
			} {
				code, out, errs := kv(nil, args[0], args[1:]...)
				wantCode(strings.Join(args, " "), exitUsage, code, out, errs)
			}

			// Refused: exit 5, whoever refuses whom.
			other := kvPKI(t, selfSigned)
			own := clientFilesOf(t, dir)
			foreign := clientFilesOf(t, other)
			code, out, errs = execKV(t, nil, "get", "--server", srv.server, "--cert", foreign.Cert, "--key", foreign.Key, "--ca", own.CA, "fresh")
			wantCode("a client of another PKI", exitRejected, code, out, errs)
			code, out, errs = execKV(t, nil, "get", "--server", srv.server, "--cert", own.Cert, "--key", own.Key, "--ca", foreign.CA, "fresh")
			wantCode("a server our CA does not vouch for", exitRejected, code, out, errs)
			if !strings.Contains(errs, "hint: the server's certificate does not chain") {
				t.Errorf("untrusted server: no hint: %s", errs)
			}

			// Nothing listening: exit 1 with a hint.
			code, out, errs = execKV(t, nil, "get", "--server", "127.0.0.1:1", "--dir", dir, "fresh")
			wantCode("no server", exitFailure, code, out, errs)
			if !strings.Contains(errs, "hint: is 'kvsctl serve' running") {
				t.Errorf("no server: no hint: %s", errs)
			}
		})
	}
}

// TestKVPolicyRefusal: a request the server's policy denies exits 5 and
// writes nothing; one it allows succeeds.
func TestKVPolicyRefusal(t *testing.T) {
	dir := kvPKI(t, false)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("identities:\n  client:\n    prefixes: [\"app/\"]\n    operations: [read, write, list]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServeCLI(t, dir, "--policy", policy)
	conn := []string{"--server", srv.server, "--dir", dir}
	if code, _, errs := execKV(t, nil, append(append([]string{"put"}, conn...), "app/k", "v")...); code != 0 {
		t.Fatalf("allowed put: exit %d: %s", code, errs)
	}
	for _, args := range [][]string{{"put", "other/k", "v"}, {"delete", "app/k"}, {"list"}} {
		code, _, errs := execKV(t, nil, append(append([]string{args[0]}, conn...), args[1:]...)...)
		if code != exitRejected || !strings.Contains(errs, "policy") {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitRejected, errs)
		}
	}
	if code, out, _ := execKV(t, nil, append(append([]string{"get"}, conn...), "app/k")...); code != 0 || out != "v" {
		t.Errorf("app/k after the denied delete: exit %d, %q", code, out)
	}
	if code, _, _ := execKV(t, nil, append(append([]string{"get"}, conn...), "other/k")...); code != exitRejected {
		t.Errorf("get other/k: exit %d, want %d", code, exitRejected)
	}
}

// clientFilesOf returns the default client's files of a PKI directory.
func clientFilesOf(t *testing.T, dir string) pki.Files {
	t.Helper()
	f, err := pki.Dir(dir).ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	return f
}
