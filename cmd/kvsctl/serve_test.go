package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs/stores"
	"github.com/kvsctl/kvsctl/pki"
)

// lockedBuffer collects a command's output while it runs in a goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// kvPKI creates a PKI with fast ECDSA keys and returns its directory.
func kvPKI(t *testing.T, selfSigned bool) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "certs")
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: pki.Dir(d), SelfSigned: selfSigned, KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	return d
}

// execKV runs one kvsctl command line through run, as the binary would.
func execKV(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"kvsctl"}, args...), bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// servedCLI is a 'kvsctl serve' running in-process.
type servedCLI struct {
	addr   string // 127.0.0.1:port
	server string // localhost:port, for --server
	store  string
	stderr *lockedBuffer
	stop   func() int
}

// listening finds the address in the start message, text or JSON.
var listening = regexp.MustCompile(`(?:listening on https://|"addr":")(127\.0\.0\.1:\d+)`)

// startServeCLI runs 'kvsctl serve --dir dir' on 127.0.0.1:0 with a bolt
// store in a temp dir, plus extra flags, until the test ends; stop ends it
// early and returns its exit code.
func startServeCLI(t *testing.T, dir string, extra ...string) *servedCLI {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &servedCLI{store: "bolt:" + filepath.Join(t.TempDir(), "data", "kvs.db"), stderr: &lockedBuffer{}}
	args := append([]string{"kvsctl", "serve", "--listen", "127.0.0.1:0", "--dir", dir, "--store", s.store}, extra...)
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), &lockedBuffer{}, s.stderr) }()
	var once sync.Once
	code := -1
	s.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(15 * time.Second):
				t.Error("serve did not stop within 15s")
			}
		})
		return code
	}
	t.Cleanup(func() {
		if c := s.stop(); c != 0 {
			t.Errorf("serve exited %d: %s", c, s.stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listening.FindStringSubmatch(s.stderr.String()); m != nil {
			s.addr = m[1]
			_, port, _ := net.SplitHostPort(s.addr)
			s.server = "localhost:" + port
			return s
		}
		select {
		case c := <-done:
			done <- c
			t.Fatalf("serve exited %d before listening: %s", c, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", s.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeStartupErrors(t *testing.T) {
	const pw = "s3cr3t-Pw"
	dir := kvPKI(t, false)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	empty := t.TempDir()
	store := "bolt:" + filepath.Join(t.TempDir(), "data", "kvs.db")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no certificates", []string{"--dir", empty}, exitFailure, "no certificates in " + empty + "\nhint: run 'kvsctl pki init'"},
		{"port in use", []string{"--listen", busy.Addr().String()}, exitFailure, "already in use"},
		{"unknown store scheme", []string{"--store", "mysql://kvs:" + pw + "@db.example/kvs"}, exitFailure, `unsupported store URL scheme "mysql"`},
		{"unparsable store URL", []string{"--store", "postgres://kvs:" + pw + "@[::1/kvs"}, exitFailure, "URL not shown"},
		{"database unreachable", []string{"--store", "postgres://kvs:" + pw + "@127.0.0.1:1/kvs", "--statement-timeout", "2s"}, exitFailure, "connection refused"},
		{"bad TLS version", []string{"--tls-min", "1.1"}, exitUsage, "use 1.2 or 1.3"},
		{"partial TLS files", []string{"--cert", filepath.Join(dir, "server.crt")}, exitUsage, "--cert, --key and --ca go together"},
		{"bad policy", []string{"--policy", filepath.Join(empty, "missing.yaml")}, exitFailure, "missing.yaml"},
		{"bad max value", []string{"--max-value", "lots"}, exitUsage, "invalid size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--listen", "127.0.0.1:0", "--dir", dir, "--store", store}, tc.args...)
			code, stdout, stderr := execKV(t, nil, args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			if n := strings.Count(stderr, "\n"); n < 1 || n > 2 || !strings.HasPrefix(stderr, "kvsctl: ") || n == 2 && !strings.Contains(stderr, "\nhint: ") {
				t.Errorf("want one 'kvsctl: ' line and an optional 'hint: ' line on stderr, got:\n%s", stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not say %q", stderr, tc.want)
			}
			if strings.Contains(stderr, pw) {
				t.Errorf("stderr shows the database password: %s", stderr)
			}
		})
	}
}

// TestServeReloadOnSIGHUPAndStop revokes a client with 'kvsctl pki revoke'
// under 'kvsctl serve' with
// file polling off: the client is let in until SIGHUP, refused (exit 5)
// after it. Then the server stops on its context (SIGINT in main) with exit
// 0 and releases the store.
func TestServeReloadOnSIGHUPAndStop(t *testing.T) {
	// The test process must survive the SIGHUP even if the server's handler
	// were missing, so it listens too.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir, "--reload-interval", "0")
	if !strings.Contains(srv.stderr.String(), "curl --cert "+filepath.Join(dir, "client.crt")) {
		t.Errorf("the start message does not show the curl command:\n%s", srv.stderr.String())
	}
	alice, err := pki.Issue(context.Background(), pki.IssueOptions{Dir: pki.Dir(dir), Profile: pki.ProfileClient, Name: "alice", KeyType: pki.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	asAlice := []string{"--server", srv.server, "--cert", alice.CertFile, "--key", alice.KeyFile, "--ca", filepath.Join(dir, "ca.crt")}
	if code, _, stderr := execKV(t, nil, append(append([]string{"put"}, asAlice...), "k", "v")...); code != 0 {
		t.Fatalf("alice put: exit %d: %s", code, stderr)
	}
	if code, _, stderr := execKV(t, nil, "pki", "revoke", "--dir", dir, "--reason", "keyCompromise", alice.CertFile); code != 0 {
		t.Fatalf("pki revoke: exit %d: %s", code, stderr)
	}
	// Polling is off: the old CRL is still in force.
	if code, _, stderr := execKV(t, nil, append(append([]string{"get"}, asAlice...), "k")...); code != 0 {
		t.Fatalf("alice before SIGHUP: exit %d: %s", code, stderr)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, stderr := execKV(t, nil, append(append([]string{"get"}, asAlice...), "k")...)
		if code == exitRejected {
			if !strings.Contains(stderr, "hint: ") {
				t.Errorf("no hint for a refused client: %s", stderr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still gets exit %d after SIGHUP: %s", code, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(srv.stderr.String(), "SIGHUP: reloading") {
		t.Errorf("no log line for the SIGHUP reload")
	}

	if code := srv.stop(); code != 0 {
		t.Fatalf("serve exited %d: %s", code, srv.stderr.String())
	}
	// The store was closed: the bolt file opens again at once, with the
	// acknowledged write in it.
	st, err := stores.Open(context.Background(), srv.store, stores.Options{StatementTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("store still held after serve stopped: %v", err)
	}
	defer st.Close()
	if e, err := st.Get(context.Background(), "k"); err != nil || string(e.Value) != "v" {
		t.Errorf("after stop: %q, %v", e.Value, err)
	}
}

// TestServeJSONLogs checks that with --log-format json every line on
// stderr is a JSON record: the start message, the audit line of a request
// (identity, serial, operation, key, status; never the value) and the stop.
func TestServeJSONLogs(t *testing.T) {
	dir := kvPKI(t, true)
	srv := startServeCLI(t, dir, "--log-format", "json")
	const secret = "value-that-must-not-be-logged"
	if code, _, stderr := execKV(t, nil, "put", "--server", srv.server, "--dir", dir, "audit/key", secret); code != 0 {
		t.Fatalf("put: exit %d: %s", code, stderr)
	}
	if code := srv.stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	client, err := pki.LoadCert(filepath.Join(dir, "client.crt"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(srv.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("stderr line is not JSON: %q", line)
		}
		msgs[rec["msg"].(string)] = rec
	}
	if r := msgs["ready"]; r == nil || !strings.Contains(r["curl"].(string), "--cacert "+filepath.Join(dir, "server.crt")) {
		t.Errorf("ready record: %v", r)
	}
	a := msgs["request"]
	for k, want := range map[string]any{"identity": "client", "serial": pki.SerialHex(client), "op": "put", "key": "audit/key", "status": 200.0} {
		if a[k] != want {
			t.Errorf("audit record %s = %v, want %v (%v)", k, a[k], want, a)
		}
	}
	if msgs["stopped"] == nil {
		t.Error("no stop record")
	}
	if strings.Contains(srv.stderr.String(), secret) {
		t.Error("the log shows a value")
	}
}
