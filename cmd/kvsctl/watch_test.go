package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// runBackground runs kvsctl with args until stop is called, and returns
// its stdout and stderr buffers and stop (which returns the exit code).
func runBackground(t *testing.T, args ...string) (*lockedBuffer, *lockedBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errb := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"kvsctl"}, args...), strings.NewReader(""), out, errb) }()
	stop := func() int {
		cancel()
		select {
		case c := <-done:
			done <- c
			return c
		case <-time.After(15 * time.Second):
			t.Fatal("the command did not stop within 15s of Ctrl-C")
		}
		return -1
	}
	t.Cleanup(func() { stop() })
	return out, errb, stop
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

	out, _, stop := runBackground(t, append([]string{"watch", "app/"}, conn...)...)
	jout, _, jstop := runBackground(t, append([]string{"watch", "--json", "app/"}, conn...)...)
	xout, _, xstop := runBackground(t, append([]string{"watch", "app/", "--exec", `printf '%s %s %s %s\n' "$KVS_EVENT_TYPE" "$KVS_EVENT_KEY" "$KVS_EVENT_VERSION" "$KVS_EVENT_VALUE"`}, conn...)...)
	time.Sleep(300 * time.Millisecond) // the watches connect
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
	for name, s := range map[string]func() int{"text": stop, "json": jstop, "exec": xstop} {
		if code := s(); code != 0 {
			t.Errorf("watch (%s) after Ctrl-C: exit %d, want 0", name, code)
		}
	}

	// --rev resumes strictly after the revision: the last two changes.
	rout, _, rstop := runBackground(t, append([]string{"watch", "--rev", versions[0], "app/"}, conn...)...)
	if got := strings.Split(strings.TrimSpace(waitOutput(t, rout, 2)), "\n"); !strings.HasPrefix(got[0], "put\t"+versions[2]) {
		t.Fatalf("watch --rev %s: %q", versions[0], got)
	}
	rstop()

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
