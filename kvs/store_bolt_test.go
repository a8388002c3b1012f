package kvs_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/kvstest"
)

func openBolt(t testing.TB, path string, opts kvs.StoreOptions) kvs.Store {
	t.Helper()
	s, err := kvs.OpenStore(t.Context(), "bolt:"+path, opts)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return s
}

func TestBoltStore(t *testing.T) {
	kvstest.Run(t, func(t *testing.T) kvs.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "kvs.db"), kvs.StoreOptions{})
	})
}

func TestBoltStorePersistence(t *testing.T) {
	kvstest.RunPersistence(t, func(t *testing.T) func() (kvs.Store, error) {
		url := "bolt:" + filepath.Join(t.TempDir(), "sub", "dir", "kvs.db")
		return func() (kvs.Store, error) { return kvs.OpenStore(t.Context(), url, kvs.StoreOptions{}) }
	})
}

// TestBoltStoreDefaultURL checks that an empty URL means bolt:data/kvs.db
// and that the directory is created private.
func TestBoltStoreDefaultURL(t *testing.T) {
	t.Chdir(t.TempDir())
	s, err := kvs.OpenStore(t.Context(), "", kvs.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat("data")
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data/ mode %v, want 0700", perm)
	}
	fi, err = os.Stat(filepath.Join("data", "kvs.db"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("data/kvs.db mode %v, want 0600", perm)
	}
}

func TestOpenStoreBadURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"bolt:", "want bolt:PATH"},
		{"bolt://data/kvs.db", "want bolt:PATH"},
		{"mysql://root:hunter2@db/kvs", `unsupported store URL scheme "mysql"`},
		{"data/kvs.db", `scheme "(none)"`},
		{"user:hunter2@host/db", `scheme "user"`},
	} {
		_, err := kvs.OpenStore(t.Context(), tc.url, kvs.StoreOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenStore(%q) err = %v, want it to contain %q", tc.url, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("OpenStore(%q) err = %v: shows the password", tc.url, err)
		}
		if !strings.Contains(err.Error(), "postgres://") && !strings.HasPrefix(tc.url, "bolt:") {
			t.Errorf("OpenStore(%q) err = %v: does not list the accepted forms", tc.url, err)
		}
	}
}

// TestBoltStoreLocked checks that a second opener gets a clear error
// rather than waiting forever.
func TestBoltStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvs.db")
	s := openBolt(t, path, kvs.StoreOptions{})
	defer s.Close()
	start := time.Now()
	_, err := kvs.OpenStore(t.Context(), "bolt:"+path, kvs.StoreOptions{StatementTimeout: 100 * time.Millisecond})
	if !errors.Is(err, kvs.ErrUnavailable) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second OpenStore err = %v, want ErrUnavailable saying the file is locked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second OpenStore took %v with a 100ms lock timeout", d) // a hang check, not a benchmark
	}
}

func TestBoltStoreNotABoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvs.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not bolt"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := kvs.OpenStore(t.Context(), "bolt:"+path, kvs.StoreOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a bolt database") {
		t.Fatalf("OpenStore on garbage err = %v", err)
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
	s := openBolt(t, path, kvs.StoreOptions{})
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
	s, err = kvs.OpenStore(t.Context(), "bolt:"+path, kvs.StoreOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("OpenStore on a read-only file: %v", err)
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
	mountOrSkip(t, "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir)
	s := openBolt(t, filepath.Join(dir, "kvs.db"), kvs.StoreOptions{})
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
	s := openBolt(b, filepath.Join(b.TempDir(), "kvs.db"), kvs.StoreOptions{})
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
	s := openBolt(b, filepath.Join(b.TempDir(), "kvs.db"), kvs.StoreOptions{})
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
