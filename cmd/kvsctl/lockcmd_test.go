//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// increment is a critical section without compare-and-swap: read the
// counter file, wait, write it plus one. Two at once lose an increment.
const increment = `n=$(cat "$COUNTER"); sleep 0.05; echo $((n+1)) > "$COUNTER"`

func lockClient(t *testing.T, dir, server string) *client.Client {
	t.Helper()
	files, err := pki.Dir(dir).ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Server: server, Files: files, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLockCommand: two workers each run 'kvsctl lock' around the
// increment, round after round, as separate processes: no increment is
// lost. The negative control runs the same increments without the lock
// and loses some. KVS_LOCK_REVISION grows with each holder.
func TestLockCommand(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	conn := []string{"--server", srv.server, "--dir", dir}
	const workers, rounds = 2, 6

	run := func(locked bool) (int, []int64) {
		t.Helper()
		counter := filepath.Join(t.TempDir(), "counter")
		if err := os.WriteFile(counter, []byte("0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"COUNTER=" + counter}
		var mu sync.Mutex
		var revs []int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range rounds {
					if !locked {
						sh := exec.Command("sh", "-c", increment)
						sh.Env = append(os.Environ(), env...)
						if out, err := sh.CombinedOutput(); err != nil {
							t.Errorf("increment: %v: %s", err, out)
						}
						continue
					}
					p := startProc(t, env, append(append([]string{"lock", "locks/counter", "--ttl", "5s"}, conn...),
						"--", "sh", "-c", increment+`; echo "rev=$KVS_LOCK_REVISION"`)...)
					if code := p.wait(t, 60*time.Second); code != 0 {
						t.Errorf("kvsctl lock: exit %d: %s", code, p.errb.String())
						return
					}
					out := strings.TrimSpace(p.out.String())
					r, err := strconv.ParseInt(strings.TrimPrefix(out, "rev="), 10, 64)
					if err != nil {
						t.Errorf("lock output %q", out)
						return
					}
					mu.Lock()
					revs = append(revs, r)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		b, err := os.ReadFile(counter)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("counter %q", b)
		}
		return n, revs
	}

	got, revs := run(true)
	if got != workers*rounds {
		t.Fatalf("with the lock: counter %d after %d increments: some were lost", got, workers*rounds)
	}
	seen := map[int64]bool{}
	for _, r := range revs {
		if seen[r] || r <= 0 {
			t.Fatalf("lock revisions %v: want distinct positive revisions", revs)
		}
		seen[r] = true
	}
	if got, _ := run(false); got >= workers*rounds {
		t.Fatalf("negative control without the lock: counter %d, want lost increments (< %d)", got, workers*rounds)
	}

	// Bad input: no command, a bad TTL.
	for _, a := range [][]string{{"lock", "locks/x"}, {"lock", "--ttl", "10ms", "locks/x", "--", "true"}, {"lock", "--ttl", "-1s", "locks/x", "--", "true"}} {
		if code, stdout, stderr := execKV(t, nil, append(a, conn...)...); code != 2 || stdout != "" || !strings.HasPrefix(stderr, "kvsctl: ") {
			t.Errorf("%v: exit %d, %q %q; want 2", a, code, stdout, stderr)
		}
	}
	// The command's exit code is kvsctl's.
	if code, _, stderr := execKV(t, nil, append([]string{"lock", "locks/x"}, append(conn, "--", "sh", "-c", "exit 7")...)...); code != 7 {
		t.Errorf("lock -- exit 7: exit %d: %s", code, stderr)
	}
}

// TestLockSIGKILL: the holder is killed with SIGKILL while it runs its
// command; a waiter gets the lock after the TTL, with a higher revision.
func TestLockSIGKILL(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	conn := []string{"--server", srv.server, "--dir", dir}
	cl := lockClient(t, dir, srv.server)

	holder := startProcGroup(t, append(append([]string{"lock", "--ttl", "2s", "locks/k"}, conn...), "--", "sleep", "60")...)
	var held kvs.Entry
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, err := cl.Get(t.Context(), "locks/k")
		if err == nil {
			held = e
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder never took the lock: %v: %s", err, holder.errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waiter := startProc(t, nil, append(append([]string{"lock", "--ttl", "2s", "locks/k"}, conn...), "--", "sh", "-c", `echo "rev=$KVS_LOCK_REVISION"`)...)
	time.Sleep(1500 * time.Millisecond)
	if waiter.out.String() != "" {
		t.Fatalf("the waiter ran while the holder held the lock: %q", waiter.out.String())
	}
	killed := time.Now()
	if err := syscall.Kill(-holder.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waiter.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("waiter: exit %d: %s", code, waiter.errb.String())
	}
	took := time.Since(killed)
	rev, err := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(waiter.out.String()), "rev="), 10, 64)
	if err != nil || rev <= held.Version {
		t.Fatalf("waiter's revision %q, want above the killed holder's %d", waiter.out.String(), held.Version)
	}
	t.Logf("the waiter got the lock %v after the holder's SIGKILL (TTL 2s)", took.Round(10*time.Millisecond))
}

// startProcGroup is startProc in a process group of its own, so that a
// signal to the group reaches the command kvsctl runs too.
func startProcGroup(t *testing.T, args ...string) *kvsProc {
	t.Helper()
	p := newProc(t, nil, &syscall.SysProcAttr{Setpgid: true}, args...)
	t.Cleanup(func() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) })
	return p
}
