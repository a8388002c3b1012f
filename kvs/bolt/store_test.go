package bolt_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/kvstest"
)

func openBolt(t testing.TB, path string, opts bolt.Options) kvs.Store {
	t.Helper()
	s, err := bolt.Open(t.Context(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestBoltStore(t *testing.T) {
	kvstest.Run(t, func(t *testing.T) kvs.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{})
	})
}

func TestBoltStorePersistence(t *testing.T) {
	kvstest.RunPersistence(t, func(t *testing.T) func() (kvs.Store, error) {
		path := filepath.Join(t.TempDir(), "sub", "dir", "kvs.db")
		return func() (kvs.Store, error) { return bolt.Open(t.Context(), path, bolt.Options{}) }
	})
}

func TestBoltStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "kvs.db")
	s := openBolt(t, path, bolt.Options{})
	defer s.Close()
	start := time.Now()
	_, err := bolt.Open(t.Context(), path, bolt.Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, kvs.ErrUnavailable) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second Open err = %v, want ErrUnavailable saying the file is locked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v with a 100ms lock timeout", d) // a hang check, not a benchmark
	}
}

func TestBoltStoreNotABoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvs.db")
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte("not bolt"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bolt.Open(t.Context(), path, bolt.Options{})
	if err == nil || !strings.Contains(err.Error(), "not a bolt database") {
		t.Fatalf("Open on garbage err = %v", err)
	}
}

// TestBoltStoreReadOnly checks that a store file that cannot be written
// still serves reads, and that writes fail with ErrUnavailable.
//
// The tests usually run as root, for whom chmod does not stop a write, so
// as root the directory is made read-only by a read-only bind mount onto
// itself (EROFS, as on a read-only disk); the test skips when mounting is
// not permitted. As any other user it uses chmod 0400 (EACCES).
func TestBoltStoreReadOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	path := filepath.Join(dir, "kvs.db")
	s := openBolt(t, path, bolt.Options{})
	v, err := s.Put(t.Context(), "k", []byte("v"), kvs.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if os.Geteuid() == 0 {
		mountOrSkip(t, "--bind", dir, dir)
		if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot remount read-only: %v: %s", err, out)
		}
	} else {
		if err := os.Chmod(path, 0o400); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(path, 0o600) })
	}
	if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
		f.Close()
		t.Fatal("the file is still writable: the test cannot simulate a read-only store here")
	}

	var logs bytes.Buffer
	s, err = bolt.Open(t.Context(), path, bolt.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open on a read-only file: %v", err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "serving reads only") {
		t.Errorf("no warning logged; log: %q", logs.String())
	}
	if e, err := s.Get(t.Context(), "k"); err != nil || string(e.Value) != "v" || e.Version != v {
		t.Errorf("Get = %+v, %v; want v version %d", e, err, v)
	}
	if keys, _, err := s.List(t.Context(), "", "", 10); err != nil || len(keys) != 1 {
		t.Errorf("List = %v, %v", keys, err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if _, err := s.Put(t.Context(), "k", []byte("w"), kvs.Cond{}); !errors.Is(err, kvs.ErrUnavailable) {
		t.Errorf("Put err = %v, want ErrUnavailable", err)
	}
	if err := s.Delete(t.Context(), "k", kvs.Cond{}); !errors.Is(err, kvs.ErrUnavailable) {
		t.Errorf("Delete err = %v, want ErrUnavailable", err)
	}
}

// TestBoltStoreDiskFull fills a small tmpfs: the failing write must be
// ErrUnavailable carrying ENOSPC, and the store must still serve reads.
// Mounting needs root (CAP_SYS_ADMIN); the test skips without it.
func TestBoltStoreDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	mountOrSkip(t, "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", dir)
	s := openBolt(t, filepath.Join(dir, "kvs.db"), bolt.Options{})
	defer s.Close()
	if _, err := s.Put(t.Context(), "first", []byte("kept"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("x"), 64<<10)
	var err error
	for i := 0; i < 64 && err == nil; i++ {
		_, err = s.Put(t.Context(), fmt.Sprintf("fill/%02d", i), value, kvs.Cond{})
	}
	if !errors.Is(err, kvs.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling a 1 MiB disk: err = %v, want ErrUnavailable wrapping ENOSPC", err)
	}
	if e, err := s.Get(t.Context(), "first"); err != nil || string(e.Value) != "kept" {
		t.Errorf("Get after disk full = %q, %v", e.Value, err)
	}
}

// mountOrSkip runs mount with args and unmounts dir (the last argument)
// when the test ends, before t.TempDir's removal.
func mountOrSkip(t *testing.T, args ...string) {
	t.Helper()
	dir := args[len(args)-1]
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Skipf("cannot mount (needs CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

func BenchmarkBoltGet(b *testing.B) {
	s := openBolt(b, filepath.Join(b.TempDir(), "data", "kvs.db"), bolt.Options{})
	defer s.Close()
	value := bytes.Repeat([]byte("v"), 256)
	if _, err := s.Put(b.Context(), "bench/key", value, kvs.Cond{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(b.Context(), "bench/key"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBoltPutParallel measures fsynced writes from concurrent
// clients, which share commits through bolt's Batch.
func BenchmarkBoltPutParallel(b *testing.B) {
	s := openBolt(b, filepath.Join(b.TempDir(), "data", "kvs.db"), bolt.Options{})
	defer s.Close()
	value := bytes.Repeat([]byte("v"), 256)
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := s.Put(b.Context(), fmt.Sprintf("bench/%d", i%1000), value, kvs.Cond{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestBoltRefusesSymlinksAndLooseDirectories: the store's directory and
// file are ours; a symbolic link would make writes land elsewhere, and a
// directory that group or others can read exposes the data (security
// finding 12). Nothing is created in either case.
func TestBoltRefusesSymlinksAndLooseDirectories(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if s, err := bolt.Open(t.Context(), filepath.Join(link, "kvs.db"), bolt.Options{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		if s != nil {
			s.Close()
		}
		t.Errorf("a symlinked directory: %v, want it refused", err)
	}
	if _, err := os.Stat(filepath.Join(real, "kvs.db")); err == nil {
		t.Error("the store was created through the link")
	}
	target := filepath.Join(root, "target.db")
	if err := os.Symlink(target, filepath.Join(real, "file.db")); err != nil {
		t.Fatal(err)
	}
	if s, err := bolt.Open(t.Context(), filepath.Join(real, "file.db"), bolt.Options{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		if s != nil {
			s.Close()
		}
		t.Errorf("a symlinked file: %v, want it refused", err)
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("the link's target was created")
	}
	loose := filepath.Join(root, "loose")
	if err := os.Mkdir(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	if s, err := bolt.Open(t.Context(), filepath.Join(loose, "kvs.db"), bolt.Options{}); err == nil || !strings.Contains(err.Error(), "chmod 700 "+loose) {
		if s != nil {
			s.Close()
		}
		t.Errorf("a directory group and others can read: %v, want it refused with the chmod", err)
	}
}

func TestBoltWatch(t *testing.T) {
	open := func(t *testing.T) kvs.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{})
	}
	kvstest.RunWatch(t, open)
	kvstest.RunChangeLog(t, open)
}

// fakeClock is a clock that tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) pass(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestBoltLease runs the lease suite on the store's injectable clock: no
// test waits for a TTL.
func TestBoltLease(t *testing.T) {
	kvstest.RunLease(t, func(t *testing.T) (kvs.Store, func(time.Duration)) {
		clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		s := openBolt(t, filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{Clock: clock.Now})
		return s, clock.pass
	})
}
