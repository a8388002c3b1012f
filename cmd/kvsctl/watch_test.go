package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kvsProc is a kvsctl child process (the test binary as kvsctl, see
// TestCrashHelperProcess): run() cannot run twice at once in one process.
type kvsProc struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	errb   *lockedBuffer
	exited chan struct{}
}

// startProc starts kvsctl with args; it is killed when the test ends.
func startProc(t *testing.T, env []string, args ...string) *kvsProc {
	t.Helper()
	return newProc(t, env, nil, args...)
}

func newProc(t *testing.T, env []string, attr *syscall.SysProcAttr, args ...string) *kvsProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCrashHelperProcess$", "--"}, args...)...)
	cmd.SysProcAttr = attr
	cmd.Env = append(append(os.Environ(), "KVS_CRASH_HELPER=1"), env...)
	p := &kvsProc{cmd: cmd, out: &lockedBuffer{}, errb: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *kvsProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%v did not exit within %s: %s", p.cmd.Args, timeout, p.errb.String())
	}
	return -1
}

// interrupt is Ctrl-C: SIGINT, then the exit code.
func (p *kvsProc) interrupt(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	return p.wait(t, 15*time.Second)
}

func waitOutput(t *testing.T, b *lockedBuffer, lines int) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(b.String(), "\n") < lines {
		if time.Now().After(deadline) {
			t.Fatalf("want %d lines, got %q", lines, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b.String()
}

// TestWatchCommand: kvsctl watch prints each change under the prefix (text,
// --json, --exec), resumes with --rev, stops with exit 0 on Ctrl-C, and
// refuses bad flags with exit 2.
func TestWatchCommand(t *testing.T) {
	dir := kvPKI(t, false)
	srv := startServeCLI(t, dir)
	conn := []string{"--server", srv.server, "--dir", dir}

	// --rev 0: from the first change, however late the processes connect.
	plain := startProc(t, nil, append([]string{"watch", "--rev", "0", "app/"}, conn...)...)
	js := startProc(t, nil, append([]string{"watch", "--json", "app/", "--rev", "0"}, conn...)...)
	ex := startProc(t, nil, append([]string{"watch", "app/", "--rev=0", "--exec", `printf '%s %s %s %s\n' "$KVS_EVENT_TYPE" "$KVS_EVENT_KEY" "$KVS_EVENT_VERSION" "$KVS_EVENT_VALUE"`}, conn...)...)
	out, jout, xout := plain.out, js.out, ex.out
	var versions []string
	for _, a := range [][]string{{"put", "app/a", "one"}, {"put", "other/x", "no"}, {"put", "app/b", "two words"}, {"delete", "app/a"}} {
		code, stdout, stderr := execKV(t, nil, append(a, conn...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", a, code, stderr)
		}
		versions = append(versions, strings.TrimSpace(stdout))
	}
	text := waitOutput(t, out, 3)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 3 || lines[0] != "put\t"+versions[0]+"\tapp/a\tone" || lines[1] != "put\t"+versions[2]+"\tapp/b\ttwo words" ||
		!strings.HasPrefix(lines[2], "delete\t") || !strings.HasSuffix(lines[2], "\tapp/a") {
		t.Fatalf("watch output:\n%s", text)
	}
	var ev struct {
		Type    string
		Key     string
		Version int64
		Value   *string
	}
	jl := strings.Split(strings.TrimSpace(waitOutput(t, jout, 3)), "\n")
	if err := json.Unmarshal([]byte(jl[0]), &ev); err != nil || ev.Type != "put" || ev.Key != "app/a" || ev.Value == nil || *ev.Value != "b25l" {
		t.Fatalf("watch --json first line %q: %+v %v", jl[0], ev, err)
	}
	xl := strings.Split(strings.TrimSpace(waitOutput(t, xout, 3)), "\n")
	if xl[0] != "put app/a "+versions[0]+" one" || xl[1] != "put app/b "+versions[2]+" two words" {
		t.Fatalf("watch --exec output:\n%s", strings.Join(xl, "\n"))
	}
	for name, p := range map[string]*kvsProc{"text": plain, "json": js, "exec": ex} {
		if code := p.interrupt(t); code != 0 {
			t.Errorf("watch (%s) after Ctrl-C: exit %d, want 0: %s", name, code, p.errb.String())
		}
	}

	// --rev resumes strictly after the revision: the last two changes.
	rp := startProc(t, nil, append([]string{"watch", "--rev", versions[0], "app/"}, conn...)...)
	if got := strings.Split(strings.TrimSpace(waitOutput(t, rp.out, 2)), "\n"); !strings.HasPrefix(got[0], "put\t"+versions[2]) {
		t.Fatalf("watch --rev %s: %q", versions[0], got)
	}
	rp.interrupt(t)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"watch", "--rev", "-5", "app/"}, 2, "--rev must be a revision"},
		{[]string{"watch"}, 2, ""},
		{[]string{"watch", "--rev", "99999999", "app/"}, 1, "revision in the future"},
	} {
		code, stdout, stderr := execKV(t, nil, append(tc.args, conn...)...)
		if code != tc.code || stdout != "" || !strings.HasPrefix(stderr, "kvsctl: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d saying %q", tc.args, code, stdout, stderr, tc.code, tc.want)
		}
	}
}
