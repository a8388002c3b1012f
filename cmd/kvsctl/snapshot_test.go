package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// TestSnapshotRestoreExport: a snapshot saved from a running server and
// restored into a fresh bolt file and a fresh PostgreSQL database serves
// byte for byte the same export as the source (versions kept); a CAS with
// a version from before the move still works. A truncated, bit-flipped or
// wrong-version snapshot is refused by inspect and restore, and the
// restored stores are left as they were; a non-empty store is refused
// without --force.
func TestSnapshotRestoreExport(t *testing.T) {
	dir := kvPKI(t, false)
	tmp := t.TempDir()
	src := startServeCLI(t, dir)
	kv := func(srv *servedCLI, stdin string, args ...string) (int, string, string) {
		t.Helper()
		if srv != nil {
			args = append(args, "--server", srv.server, "--dir", dir)
		}
		return execKV(t, []byte(stdin), args...)
	}
	must := func(code int, stdout, stderr string) string {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		return stdout
	}
	must(kv(src, "", "put", "plain", "value"))
	must(kv(src, "", "put", "config/é", "ünïcode"))
	lines := `{"key": "bin/1", "value": "AAEC/w=="}
{"key": "bin/2", "value": ""}
{"key": "tab\tkey", "value": "dA=="}
`
	if out := must(kv(src, lines, "import", "-")); out != "3\n" {
		t.Errorf("import printed %q, want 3", out)
	}
	var casVersion struct{ Version int64 }
	if err := json.Unmarshal([]byte(must(kv(src, "", "get", "--json", "plain"))), &casVersion); err != nil {
		t.Fatal(err)
	}
	want := must(kv(src, "", "export"))
	if strings.Count(want, "\n") != 5 {
		t.Fatalf("export of the source:\n%s", want)
	}

	snap := filepath.Join(tmp, "s.snap")
	_, out, stderr := kv(src, "", "snapshot", "save", snap)
	if !strings.Contains(out, "5 keys") || !strings.Contains(stderr, "snapshot: 5 keys") {
		t.Errorf("snapshot save: stdout %q stderr %q", out, stderr)
	}
	if fi, err := os.Stat(snap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file: %v, %v; want mode 0600", fi, err)
	}
	if code, _, stderr := kv(src, "", "snapshot", "save", snap); code != exitFailure || !strings.Contains(stderr, "--force") {
		t.Errorf("save over an existing file: exit %d, %q", code, stderr)
	}
	var info snapshotInfo
	if err := json.Unmarshal([]byte(must(kv(nil, "", "snapshot", "inspect", "--json", snap))), &info); err != nil {
		t.Fatal(err)
	}
	if info.Keys != 5 || info.Checksum != "ok" || info.Store != "bolt" || info.Revision < casVersion.Version || len(info.SHA256) != 64 {
		t.Errorf("inspect = %+v", info)
	}

	boltURL := "bolt:" + filepath.Join(tmp, "restored", "kvs.db")
	pgURL := pgtest.NewDatabase(t)
	for _, url := range []string{boltURL, pgURL} {
		if out := must(kv(nil, "", "snapshot", "restore", snap, "--store", url)); !strings.Contains(out, "restored 5 keys") {
			t.Errorf("restore into %s: %q", url, out)
		}
		if code, _, stderr := kv(nil, "", "snapshot", "restore", snap, "--store", url); code != exitFailure || !strings.Contains(stderr, "not empty") {
			t.Errorf("second restore into %s without --force: exit %d, %q", url, code, stderr)
		}
	}
	exportOf := func(url string, cas bool) string {
		t.Helper()
		srv := startServeCLI(t, dir, "--store", url)
		defer srv.stop()
		got := must(kv(srv, "", "export"))
		if cas {
			// The version from the source still holds: CAS succeeds once,
			// and the new version is above the snapshot's revision.
			out := must(kv(srv, "", "put", "plain", "moved", "--if-version", jsonInt(casVersion.Version)))
			if v := parseInt(t, out); v <= info.Revision {
				t.Errorf("%s: put after restore got version %d, not above the revision %d", url, v, info.Revision)
			}
			must(kv(srv, "", "put", "plain", "value", "--if-version", strings.TrimSpace(out)))
		}
		return got
	}
	for _, url := range []string{boltURL, pgURL} {
		if got := exportOf(url, false); got != want {
			t.Errorf("export after restore into %s differs:\n%s\nwant:\n%s", url, got, want)
		}
	}
	exportOf(boltURL, true)
	exportOf(pgURL, true)
	after := map[string]string{boltURL: exportOf(boltURL, false), pgURL: exportOf(pgURL, false)}

	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x10
	version := append([]byte(nil), data...)
	version[9] = 2
	for _, bad := range []struct {
		name, want string
		data       []byte
	}{
		{"truncated", "truncated", data[:len(data)*2/3]},
		{"bit-flipped", "corrupt", flipped},
		{"wrong-version", "version 2", version},
	} {
		path := filepath.Join(tmp, bad.name+".snap")
		if err := os.WriteFile(path, bad.data, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := kv(nil, "", "snapshot", "inspect", path)
		if code != exitFailure || !strings.Contains(stderr, bad.want) {
			t.Errorf("inspect %s: exit %d, stdout %q, stderr %q", bad.name, code, out, stderr)
		}
		if bad.name != "wrong-version" && !strings.Contains(out, "checksum:  corrupt") {
			t.Errorf("inspect %s: %q", bad.name, out)
		}
		for _, url := range []string{boltURL, pgURL} {
			code, _, stderr := kv(nil, "", "snapshot", "restore", path, "--store", url, "--force")
			if code != exitFailure || !strings.Contains(stderr, bad.want) {
				t.Errorf("restore %s into %s: exit %d, %q", bad.name, url, code, stderr)
			}
		}
	}
	for _, url := range []string{boltURL, pgURL} {
		if got := exportOf(url, false); got != after[url] {
			t.Errorf("%s changed by refused restores:\n%s\nwant:\n%s", url, got, after[url])
		}
	}
	// --force replaces the keys.
	must(kv(nil, "", "snapshot", "restore", snap, "--store", boltURL, "--force"))
	if got := exportOf(boltURL, false); got != want {
		t.Errorf("after restore --force:\n%s\nwant:\n%s", got, want)
	}
}

// TestTxnCommand runs kvsctl txn from a file and stdin, --fail-on-compare,
// --json, delete --prefix and import's refusal of a malformed line.
func TestTxnCommand(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	kv := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return execKV(t, []byte(stdin), append(args, "--server", srv.server, "--dir", dir)...)
	}
	file := filepath.Join(t.TempDir(), "txn.json")
	if err := os.WriteFile(file, []byte(`{"compare": [{"key": "a", "exists": false}],
 "success": [{"op": "put", "key": "a", "value": "aGVsbG8="}, {"op": "put", "key": "tmp/1", "value": ""}, {"op": "get", "key": "a"}],
 "failure": [{"op": "get", "key": "a"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := kv("", "txn", "--file", file)
	if code != 0 || !strings.HasPrefix(out, "success (revision ") || !strings.Contains(out, `get a: version `) || !strings.Contains(out, `"hello"`) {
		t.Errorf("txn: exit %d, %q, %q", code, out, stderr)
	}
	code, out, _ = kv("", "txn", "--file", file)
	if code != 0 || !strings.HasPrefix(out, "failure") {
		t.Errorf("txn whose compare fails: exit %d, %q; want 0 and the failure branch", code, out)
	}
	body, _ := os.ReadFile(file)
	code, out, stderr = kv(string(body), "txn", "--file", "-", "--fail-on-compare", "--json")
	var res struct{ Branch string }
	if code != exitPrecondition || json.Unmarshal([]byte(out), &res) != nil || res.Branch != "failure" || !strings.Contains(stderr, "compare failed") {
		t.Errorf("txn --fail-on-compare: exit %d, %q, %q", code, out, stderr)
	}
	if code, _, stderr := kv(`{"success": [{"op": "increment", "key": "a"}]}`, "txn", "-f", "-"); code != exitFailure || !strings.Contains(stderr, "unknown operation") {
		t.Errorf("txn with an unknown op: exit %d, %q", code, stderr)
	}
	if code, _, _ := kv("", "txn"); code != exitUsage {
		t.Errorf("txn without --file: exit %d, want 2", code)
	}
	if code, out, stderr := kv("", "delete", "--prefix", "tmp/"); code != 0 || out != "1\n" {
		t.Errorf("delete --prefix: exit %d, %q, %q", code, out, stderr)
	}
	if code, _, _ := kv("", "delete", "--prefix", "tmp/", "a"); code != exitUsage {
		t.Errorf("delete --prefix with a key: exit %d, want 2", code)
	}
	code, _, stderr = kv("{\"key\": \"i1\", \"value\": \"MQ==\"}\n{\"key\": \"i2\", \"value\": \"not base64!\"}\n", "import", "-")
	if code != exitFailure || !strings.Contains(stderr, "line 2") {
		t.Errorf("import of a malformed line: exit %d, %q", code, stderr)
	}
	if code, _, _ := kv("", "get", "i1"); code != exitNotFound {
		t.Errorf("import wrote a line of the batch it refused: get i1 exit %d", code)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func parseInt(t *testing.T, s string) int64 {
	t.Helper()
	var v int64
	if err := json.Unmarshal([]byte(strings.TrimSpace(s)), &v); err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return v
}
