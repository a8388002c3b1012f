package server

// Helpers of the reliability tests (fault_*, hostile_*, lostupdate): a
// private PostgreSQL cluster that a test may restart, a write load whose
// every acknowledged write is checked afterwards, and the figure lines that
// scripts/reliability.sh collects into docs/reliability.md.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"

	"github.com/jackc/pgx/v5"
	bbolt "go.etcd.io/bbolt"
)

// relWindow is how long load and attack windows last: 2s by default (CI),
// longer when scripts/reliability.sh sets KVS_RELIABILITY_DURATION.
func relWindow(t testing.TB) time.Duration {
	t.Helper()
	if s := os.Getenv("KVS_RELIABILITY_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 5*time.Minute {
			t.Fatalf("KVS_RELIABILITY_DURATION=%q: want a duration up to 5m", s)
		}
		return d
	}
	return 2 * time.Second
}

// figure logs one row of a docs/reliability.md table. The script greps
// "FIGURE <section> | ... |" out of go test -v output.
func figure(t testing.TB, section string, cols ...any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("FIGURE " + section + " |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %v |", c)
	}
	t.Log(b.String())
}

// privatePG is a PostgreSQL cluster of the test's own, in a temporary
// directory on a port of its own, so that restarting it disturbs no other
// test. As root the cluster runs as the postgres user (initdb refuses root).
type privatePG struct {
	t     testing.TB
	bin   string // directory of initdb, pg_ctl
	dir   string // owned by the cluster's user: data/, log, sockets
	port  int
	runAs string // "" or "postgres"
	URL   string // superuser URL of the postgres database
}

// startPrivatePG creates and starts a cluster, stopped and removed when the
// test ends. Without PostgreSQL binaries it skips, or fails under CI=true.
func startPrivatePG(t testing.TB) *privatePG {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			bins = []string{p}
		}
	}
	if len(bins) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no initdb found: the PostgreSQL fault tests need the server binaries")
		}
		t.Skip("!!! no initdb found: PostgreSQL fault tests NOT RUN !!!")
	}
	sort.Strings(bins)
	p := &privatePG{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "kvs-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user for initdb: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.runAs = "postgres"
	}
	p.port = freePort(t)
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	if out, err := p.cmd("initdb", "-D", p.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.start()
	t.Cleanup(func() { p.cmd("pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop").Run() })
	return p
}

func (p *privatePG) data() string { return filepath.Join(p.dir, "data") }

func (p *privatePG) cmd(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bin, tool)
	if p.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", p.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

// start starts the cluster and waits until it accepts connections.
func (p *privatePG) start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c max_connections=40", p.port, p.dir)
	if out, err := p.cmd("pg_ctl", "-D", p.data(), "-l", filepath.Join(p.dir, "log"), "-w", "-t", "60", "-o", opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		p.t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// stop stops the cluster; mode is fast (clean) or immediate (like a crash:
// recovery from the WAL on the next start).
func (p *privatePG) stop(mode string) {
	p.t.Helper()
	if out, err := p.cmd("pg_ctl", "-D", p.data(), "-m", mode, "-w", "-t", "60", "stop").CombinedOutput(); err != nil {
		p.t.Fatalf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
}

// terminate ends every kvsctl connection with pg_terminate_backend and
// returns how many it ended.
func (p *privatePG) terminate(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = 'kvsctl' AND pid <> pg_backend_pid()`).Scan(&n)
	return n, err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeLoad drives unconditional Puts from several writers, each owning its
// keys, and remembers for every key its last acknowledged value and the
// values of the writes after it that got an error (which may or may not have
// been applied). check then proves that no acknowledged write was lost and
// that no errored write was half-applied.
type writeLoad struct {
	mu   sync.Mutex
	keys map[string]*keyHistory

	acked, errored, unexpected int
	statuses                   map[string]int // error kinds seen, for the log
	firstErr, lastErr          time.Time
	firstOKAfterErr            time.Time
}

type keyHistory struct {
	acked   []byte   // last acknowledged value; nil when none
	pending [][]byte // values written after it that got an error
}

func newWriteLoad() *writeLoad {
	return &writeLoad{keys: map[string]*keyHistory{}, statuses: map[string]int{}}
}

// loadValue is the value of writer w's n-th write: its name repeated to a
// length that varies, so a truncated or mixed value is recognisable.
func loadValue(w, n int) []byte {
	unit := fmt.Sprintf("w%d-n%d|", w, n)
	size := 256 + (n*97)%1800
	return bytes.Repeat([]byte(unit), size/len(unit)+1)[:size]
}

// wholeValue reports whether v is exactly some loadValue.
func wholeValue(v []byte) bool {
	i := bytes.IndexByte(v, '|')
	if i < 0 {
		return false
	}
	var w, n int
	if _, err := fmt.Sscanf(string(v[:i+1]), "w%d-n%d|", &w, &n); err != nil {
		return false
	}
	return bytes.Equal(v, loadValue(w, n))
}

// run starts writers goroutines writing through put until stop ends, each
// on keysPer keys of its own under prefix; it returns when they have
// stopped. A write in flight when stop ends is finished, not canceled, so
// that every outcome is known. expected reports whether an error is an
// allowed answer during the fault (it is still counted as errored; anything
// else is unexpected).
func (l *writeLoad) run(stop context.Context, writers, keysPer int, prefix string,
	put func(ctx context.Context, w int, key string, value []byte) error, expected func(error) bool) {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := 0; stop.Err() == nil; n++ {
				key := fmt.Sprintf("%sw%02d/k%03d", prefix, w, n%keysPer)
				val := loadValue(w, n)
				ctx, cancel := context.WithTimeout(context.WithoutCancel(stop), 15*time.Second)
				err := put(ctx, w, key, val)
				cancel()
				l.record(key, val, err, expected)
			}
		})
	}
	wg.Wait()
}

func (l *writeLoad) record(key string, val []byte, err error, expected func(error) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.keys[key]
	if h == nil {
		h = &keyHistory{}
		l.keys[key] = h
	}
	now := time.Now()
	if err == nil {
		l.acked++
		h.acked, h.pending = val, nil
		if !l.lastErr.IsZero() && l.firstOKAfterErr.IsZero() {
			l.firstOKAfterErr = now
		}
		return
	}
	h.pending = append(h.pending, val)
	l.errored++
	if l.firstErr.IsZero() {
		l.firstErr = now
	}
	l.lastErr, l.firstOKAfterErr = now, time.Time{}
	kind := errKind(err)
	l.statuses[kind]++
	if !expected(err) {
		l.unexpected++
	}
}

// errKind names an error for the log: its HTTP status or a short text.
func errKind(err error) string {
	var se *client.StatusError
	if errors.As(err, &se) {
		return strconv.Itoa(se.Code)
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// loadResult is what check found.
type loadResult struct {
	keys, lost, halfApplied, erroredApplied int
	problems                                []string
}

// check reads every key through get (kvs.ErrNotFound for a missing key) and
// compares it with the history.
func (l *writeLoad) check(ctx context.Context, get func(ctx context.Context, key string) ([]byte, error)) (loadResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r loadResult
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h := l.keys[k]
		r.keys++
		v, err := get(ctx, k)
		switch {
		case errors.Is(err, kvs.ErrNotFound):
			if h.acked != nil {
				r.lost++
				r.problems = append(r.problems, fmt.Sprintf("%s: acknowledged write lost: key missing", k))
			}
		case err != nil:
			return r, fmt.Errorf("read back %s: %w", k, err)
		case h.acked != nil && bytes.Equal(v, h.acked):
		case slices.ContainsFunc(h.pending, func(p []byte) bool { return bytes.Equal(v, p) }):
			r.erroredApplied++
		case !wholeValue(v):
			r.halfApplied++
			r.problems = append(r.problems, fmt.Sprintf("%s: value is no write's whole value (%d bytes, starts %q)", k, len(v), v[:min(len(v), 24)]))
		default:
			r.lost++
			r.problems = append(r.problems, fmt.Sprintf("%s: holds an older value %q than its last acknowledged write", k, v[:min(len(v), 16)]))
		}
	}
	return r, nil
}

// gap is the time from the first error to the first success after the last
// error (zero when there was no error or no recovery).
func (l *writeLoad) gap() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.firstErr.IsZero() || l.firstOKAfterErr.IsZero() {
		return 0
	}
	return l.firstOKAfterErr.Sub(l.firstErr)
}

// TestWriteLoadCheck is the negative control of the fault tests: the check
// must catch a lost write, an older value and a truncated one.
func TestWriteLoadCheck(t *testing.T) {
	l := newWriteLoad()
	ok := func(error) bool { return true }
	l.record("kept", loadValue(0, 1), nil, ok)
	l.record("lost", loadValue(0, 2), nil, ok)
	l.record("older", loadValue(0, 3), nil, ok)
	l.record("older", loadValue(0, 4), nil, ok)
	l.record("torn", loadValue(0, 5), errors.New("503"), ok)
	l.record("maybe", loadValue(0, 6), nil, ok)
	l.record("maybe", loadValue(0, 7), errors.New("503"), ok)
	stored := map[string][]byte{
		"kept":  loadValue(0, 1),
		"older": loadValue(0, 3),
		"torn":  loadValue(0, 5)[:100],
		"maybe": loadValue(0, 7),
	}
	res, err := l.check(t.Context(), func(_ context.Context, key string) ([]byte, error) {
		if v, ok := stored[key]; ok {
			return v, nil
		}
		return nil, kvs.ErrNotFound
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.lost != 2 || res.halfApplied != 1 || res.erroredApplied != 1 {
		t.Errorf("check found lost=%d half=%d erroredApplied=%d, want 2, 1, 1: %v", res.lost, res.halfApplied, res.erroredApplied, res.problems)
	}
}

// relMount runs mount with args and unmounts the mount point (the last
// argument) when the test ends; it skips when mounting is not permitted.
func relMount(t testing.TB, args ...string) {
	t.Helper()
	dir := args[len(args)-1]
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Skipf("!!! cannot mount (needs CAP_SYS_ADMIN), test NOT RUN: %v: %s !!!", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// boltCheck opens a bolt file read-only with bbolt itself and runs its
// consistency check (page references, freelist, B+tree order).
func boltCheck(t testing.TB, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("bbolt open %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		n := 0
		for err := range tx.Check() {
			t.Errorf("bbolt check %s: %v", path, err)
			n++
		}
		if n > 0 {
			return fmt.Errorf("%d consistency errors", n)
		}
		return nil
	})
	if err != nil {
		t.Errorf("bbolt check %s: %v", path, err)
	}
}
