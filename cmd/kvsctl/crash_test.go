package main

// Reliability tests of the kvsctl process itself: 'kvsctl serve' killed with
// SIGKILL under a write load and restarted, on each store; and the secrets
// scan of what the CLI prints. The serve process is this test binary
// re-executed to run main() (TestCrashHelperProcess), so no separate build
// is needed and it is exactly the binary's code path.

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/pki"
)

// TestCrashHelperProcess is not a test: with KVS_CRASH_HELPER=1 it runs
// main() with the arguments after "--", as the kvsctl binary would.
func TestCrashHelperProcess(t *testing.T) {
	if os.Getenv("KVS_CRASH_HELPER") != "1" {
		t.Skip("the child process of TestCrashServeSIGKILL")
	}
	i := slices.Index(os.Args, "--")
	if i < 0 {
		fmt.Fprintln(os.Stderr, "crash helper: no -- in the arguments")
		os.Exit(2)
	}
	os.Args = append([]string{"kvsctl"}, os.Args[i+1:]...)
	main()
}

// serveProc is a 'kvsctl serve' child process.
type serveProc struct {
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:port
	stderr *lockedBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited is closed
}

var crashListening = regexp.MustCompile(`(?:listening on https://|"addr":")(127\.0\.0\.1:\d+)`)

func startServeProc(t *testing.T, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCrashHelperProcess$", "--", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "KVS_CRASH_HELPER=1")
	p := &serveProc{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := crashListening.FindStringSubmatch(p.stderr.String()); m != nil {
			p.addr = m[1]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("serve exited before listening (%v): %s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start within 30s: %s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *serveProc) client(t *testing.T, dir string) *client.Client {
	t.Helper()
	files, err := pki.Dir(dir).ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(p.addr)
	c, err := client.New(client.Config{Server: "localhost:" + port, Files: files, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// crashHistory remembers, per key, the last acknowledged value and the
// values of later writes that got an error (which may or may not have been
// applied).
type crashHistory struct {
	mu                 sync.Mutex
	acked              map[string][]byte
	pending            map[string][][]byte
	nAcked, nErr, nOdd int
	next               []int // next write number of each writer, across restarts
}

func crashValue(w, n int) []byte {
	unit := fmt.Sprintf("w%d-n%d|", w, n)
	size := 200 + (n*131)%1500
	return bytes.Repeat([]byte(unit), size/len(unit)+1)[:size]
}

// load writes from 4 writers through c until stop ends; errors count as
// odd (a failure) unless killed is set.
func (h *crashHistory) load(stop context.Context, c *client.Client, killed *atomic.Bool) {
	var wg sync.WaitGroup
	for w := range len(h.next) {
		wg.Go(func() {
			for stop.Err() == nil {
				h.mu.Lock()
				n := h.next[w]
				h.next[w]++
				h.mu.Unlock()
				key := fmt.Sprintf("crash/w%d/k%02d", w, n%30)
				val := crashValue(w, n)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Put(ctx, key, val, kvs.Cond{})
				cancel()
				h.mu.Lock()
				if err == nil {
					h.nAcked++
					h.acked[key], h.pending[key] = val, nil
				} else {
					h.nErr++
					h.pending[key] = append(h.pending[key], val)
					if !killed.Load() {
						h.nOdd++
					}
				}
				h.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

// verify reads every key back and returns (lost, half-applied, errored
// writes found applied, problems).
func (h *crashHistory) verify(t *testing.T, c *client.Client) (lost, torn, applied int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.pending))
	for k := range h.pending {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e, err := c.Get(t.Context(), k)
		acked := h.acked[k]
		switch {
		case errors.Is(err, kvs.ErrNotFound):
			if acked != nil {
				lost++
				t.Errorf("%s: acknowledged write lost: key missing", k)
			}
		case err != nil:
			t.Fatalf("read back %s: %v", k, err)
		case acked != nil && bytes.Equal(e.Value, acked):
		case slices.ContainsFunc(h.pending[k], func(p []byte) bool { return bytes.Equal(e.Value, p) }):
			applied++
		default:
			var w, n int
			if _, err := fmt.Sscanf(string(e.Value), "w%d-n%d|", &w, &n); err == nil && bytes.Equal(e.Value, crashValue(w, n)) {
				lost++
				t.Errorf("%s: holds an older value than its last acknowledged write", k)
			} else {
				torn++
				t.Errorf("%s: value is no write's whole value (%d bytes)", k, len(e.Value))
			}
		}
	}
	return lost, torn, applied
}

// crashDatabase is a database of its own for a serve that uses the public
// schema, dropped at the end.
func crashDatabase(t *testing.T) string {
	t.Helper()
	return pgtest.NewDatabase(t)
}

func crashPKI(t *testing.T, pass []byte) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "certs")
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: pki.Dir(d), KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	return d
}

// boltOpensCleanly opens a bolt file the way a restarted server would, and
// runs bbolt's consistency check on it.
func boltOpensCleanly(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("bbolt open %s after SIGKILL: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Errorf("bbolt check %s after SIGKILL: %v", path, err)
	}
}

// TestCrashServeSIGKILL kills 'kvsctl serve' with SIGKILL three times during
// a write load, on each store, restarting it each time: every acknowledged
// write must be there with its value, an errored write must hold its old or
// its new value, and the bolt file must open and pass bbolt's check after
// every kill.
func TestCrashServeSIGKILL(t *testing.T) {
	dir := crashPKI(t, nil)
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) string
	}{
		{"bolt", func(t *testing.T) string { return "bolt:" + filepath.Join(t.TempDir(), "data", "kvs.db") }},
		{"postgres", crashDatabase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store(t)
			h := &crashHistory{acked: map[string][]byte{}, pending: map[string][][]byte{}, next: make([]int, 4)}
			const kills = 3
			var restart time.Duration
			for range kills {
				start := time.Now()
				p := startServeProc(t, "--dir", dir, "--store", store)
				restart = max(restart, time.Since(start))
				c := p.client(t, dir)
				var killed atomic.Bool
				stop, stopLoad := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); h.load(stop, c, &killed) }()
				time.Sleep(700 * time.Millisecond)
				killed.Store(true)
				if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				<-p.exited
				time.Sleep(100 * time.Millisecond) // writes against the dead server fail
				stopLoad()
				<-done
				if path, ok := strings.CutPrefix(store, "bolt:"); ok {
					boltOpensCleanly(t, path)
				}
			}
			p := startServeProc(t, "--dir", dir, "--store", store)
			lost, torn, applied := h.verify(t, p.client(t, dir))
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			<-p.exited
			if p.err != nil {
				t.Errorf("serve after SIGTERM: %v\n%s", p.err, p.stderr.String())
			}
			if h.nOdd > 0 {
				t.Errorf("%d writes failed before any kill", h.nOdd)
			}
			if h.nAcked == 0 {
				t.Error("no write was acknowledged")
			}
			t.Logf("%s: %d kills, %d writes acknowledged, %d errored (%d of them applied), %d lost, %d torn; slowest start %v",
				tc.name, kills, h.nAcked, h.nErr, applied, lost, torn, restart.Round(time.Millisecond))
			t.Logf("FIGURE faults | kvsctl serve SIGKILLed %d times under write load | %s | %d | %d | %d | %d | %d | %d | - | serving %v after restart |",
				kills, tc.name, h.nAcked, h.nErr, h.nOdd, applied, lost, torn, restart.Round(10*time.Millisecond))
		})
	}
}

// TestSecretsNotInCLIOutput runs a representative CLI session (a PKI with
// an encrypted CA key, issue, revoke with a wrong and the right passphrase,
// CRL, inspect and list, serve on PostgreSQL through a URL with a password
// at debug level, put/get/list/delete, a revoked client, failing starts)
// and scans everything printed, stdout and stderr, for private keys, the
// passphrase and the database password.
func TestSecretsNotInCLIOutput(t *testing.T) {
	const passphrase = "tr0ub4dor-and-3-cli-passphrase"
	const dbPassword = "s3cr3t-pw-cli-5521"
	store := crashDatabase(t)
	u, err := url.Parse(store)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), dbPassword)
	storeWithPassword := u.String()

	var all lockedBuffer
	cli := func(args ...string) int {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"kvsctl"}, args...), strings.NewReader("value from stdin"), &out, &errb)
		// The command line is the test's, not the CLI's output: it is
		// echoed with the password masked, and the output as printed.
		line := strings.ReplaceAll(strings.Join(args, " "), dbPassword, "***")
		fmt.Fprintf(&all, "$ kvsctl %s (exit %d)\n%s%s", line, code, out.String(), errb.String())
		return code
	}
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "certs")
	passFile, wrongFile := filepath.Join(tmp, "pass"), filepath.Join(tmp, "wrong")
	os.WriteFile(passFile, []byte(passphrase+"\n"), 0o600)
	os.WriteFile(wrongFile, []byte("not-"+passphrase), 0o600)

	if code := cli("pki", "init", "--dir", dir, "--key-type", "ecdsa-p256", "--hosts", "localhost,127.0.0.1", "--passphrase-file", passFile); code != 0 {
		t.Fatalf("pki init failed: %s", all.String())
	}
	cli("pki", "issue", "--dir", dir, "--key-type", "ecdsa-p256", "--passphrase-file", wrongFile, "client", "mallory")
	cli("pki", "issue", "--dir", dir, "--key-type", "ecdsa-p256", "client", "mallory")
	cli("pki", "issue", "--dir", dir, "--key-type", "ecdsa-p256", "--passphrase-file", passFile, "client", "alice")
	cli("pki", "issue", "--dir", dir, "--key-type", "ecdsa-p256", "--passphrase-file", passFile, "--json", "client", "bob")
	cli("pki", "list", "--dir", dir)
	cli("pki", "list", "--dir", dir, "--json")
	for _, f := range []string{"ca.crt", "ca.key", "server.key", "client.key", "issued/alice.key", "crl.pem"} {
		cli("pki", "inspect", filepath.Join(dir, f))
		cli("pki", "inspect", "--json", filepath.Join(dir, f))
	}
	cli("pki", "verify", "--dir", dir, filepath.Join(dir, "issued", "alice.crt"))

	cli("serve", "--dir", dir, "--listen", "127.0.0.1:0", "--store", strings.Replace(storeWithPassword, u.Host, "127.0.0.1:1", 1), "--statement-timeout", "1s")
	cli("serve", "--dir", dir, "--listen", "127.0.0.1:0", "--store", strings.Replace(storeWithPassword, "postgres://", "mysql://", 1))
	cli("serve", "--dir", dir, "--listen", "127.0.0.1:0", "--store", strings.Replace(storeWithPassword, "@", "@[", 1))

	serveErr := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan int, 1)
	go func() {
		served <- run(ctx, []string{"kvsctl", "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--store", storeWithPassword,
			"--log-level", "debug", "--log-format", "json", "--reload-interval", "100ms"}, strings.NewReader(""), io.Discard, serveErr)
	}()
	defer func() {
		cancel()
		<-served
	}()
	var server string
	for deadline := time.Now().Add(30 * time.Second); server == ""; time.Sleep(20 * time.Millisecond) {
		if m := crashListening.FindStringSubmatch(serveErr.String()); m != nil {
			_, port, _ := net.SplitHostPort(m[1])
			server = "localhost:" + port
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", serveErr.String())
		}
	}
	kv := func(args ...string) int {
		return cli(append([]string{args[0], "--dir", dir, "--server", server}, args[1:]...)...)
	}
	alice := []string{"--cert", filepath.Join(dir, "issued", "alice.crt"), "--key", filepath.Join(dir, "issued", "alice.key"), "--ca", filepath.Join(dir, "ca.crt")}
	kv("put", "greeting", "hello")
	kv("put", "stdin", "-")
	kv("get", "greeting")
	kv("get", "--json", "greeting")
	stale := kv("put", "--if-version", "999999", "greeting", "stale")
	kv("get", "missing")
	kv("list")
	kv("list", "--json")
	kv("health")
	cli(append(append([]string{"get", "--server", server}, alice...), "greeting")...)
	wrongRevoke := cli("pki", "revoke", "--dir", dir, "--passphrase-file", wrongFile, filepath.Join(dir, "issued", "alice.crt"))
	cli("pki", "revoke", "--dir", dir, "--passphrase-file", passFile, filepath.Join(dir, "issued", "alice.crt"))
	cli("pki", "crl", "--dir", dir, "--passphrase-file", passFile)
	time.Sleep(500 * time.Millisecond) // the watcher reloads the CRL
	revoked := cli(append(append([]string{"get", "--server", server}, alice...), "greeting")...)
	kv("delete", "greeting")
	cancel()
	<-served
	served <- 0
	fmt.Fprintf(&all, "$ kvsctl serve (its stderr)\n%s", serveErr.String())

	// The scanner: PEM markers and body lines of every key, the secrets.
	needles := map[string]string{"PRIVATE KEY-----": "a private key PEM marker", passphrase: "the CA passphrase", dbPassword: "the database password"}
	filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".key") {
			data, _ := os.ReadFile(path)
			if b, _ := pem.Decode(data); b != nil {
				lines := strings.Split(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: b.Bytes}))), "\n")
				for _, l := range lines[1 : len(lines)-1] {
					needles[l] = "a line of " + filepath.Base(path)
				}
			}
		}
		return nil
	})
	scan := func(text string) []string {
		var found []string
		for n, what := range needles {
			if strings.Contains(text, n) {
				found = append(found, what)
			}
		}
		return found
	}
	// Negative control: the scanner sees a leak.
	leak, _ := os.ReadFile(filepath.Join(dir, "client.key"))
	if got := scan(string(leak) + passphrase + storeWithPassword); len(got) < 3 {
		t.Errorf("the scanner missed secrets in a leak: found only %v", got)
	}
	out := all.String()
	for _, f := range scan(out) {
		t.Errorf("the CLI printed %s", f)
	}
	// The steps that should fail did, so their messages were scanned.
	if wrongRevoke == exitOK || stale != exitPrecondition || revoked != exitRejected {
		t.Errorf("exit codes: revoke with a wrong passphrase %d, stale put %d (want %d), revoked client %d (want %d)",
			wrongRevoke, stale, exitPrecondition, revoked, exitRejected)
	}
	if testing.Verbose() {
		t.Logf("CLI session:\n%s", out)
	}
	t.Logf("FIGURE secrets | kvsctl CLI: stdout and stderr of %d commands, serve's debug log | %d | %d | %d |",
		strings.Count(out, "$ kvsctl"), len(out), len(needles), len(scan(out)))
}
