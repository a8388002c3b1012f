package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// is503 reports whether err is the server's "store unavailable" answer.
func is503(err error) bool {
	var se *client.StatusError
	return errors.As(err, &se) && se.Code == http.StatusServiceUnavailable && se.Message == "store unavailable"
}

// TestFaultBoltDiskFull runs a write load on the embedded store in a 1 MiB
// tmpfs until the disk is full: writes must fail with 503 "store
// unavailable", reads and /healthz keep working, writes work again once
// space is freed (no restart), and afterwards the file passes bbolt's
// consistency check and holds every acknowledged write.
func TestFaultBoltDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	relMount(t, "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", dir)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kvs.db")
	store, err := bolt.Open(t.Context(), path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d := testPKI(t, false)
	srv := startServer(t, d, store, nil)
	c := newTestClient(t, d, srv.addr, nil)

	load := newWriteLoad()
	stop, stopLoad := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		load.run(stop, 2, 100000, "fill/", func(ctx context.Context, _ int, key string, value []byte) error {
			_, err := c.Put(ctx, key, value, kvs.Cond{})
			if err != nil {
				time.Sleep(10 * time.Millisecond)
			}
			return err
		}, is503)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		load.mu.Lock()
		errs := load.errored
		load.mu.Unlock()
		if errs >= 20 {
			break
		}
		if time.Now().After(deadline) {
			stopLoad()
			<-done
			t.Fatalf("the disk did not fill within 60s (%d writes acknowledged)", load.acked)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Full: reads, lists and the health check still work.
	ctx := t.Context()
	load.mu.Lock()
	var someKey string
	var someValue []byte
	for k, h := range load.keys {
		if h.acked != nil {
			someKey, someValue = k, h.acked
			break
		}
	}
	load.mu.Unlock()
	if e, err := c.Get(ctx, someKey); err != nil || !bytes.Equal(e.Value, someValue) {
		t.Errorf("Get %s with the disk full: %d bytes, %v", someKey, len(e.Value), err)
	}
	if _, _, err := c.List(ctx, "fill/", "", 10); err != nil {
		t.Errorf("List with the disk full: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Errorf("/healthz with the disk full: %v", err)
	}
	if _, err := c.Put(ctx, "one/more", make([]byte, 64<<10), kvs.Cond{}); !is503(err) {
		t.Errorf("Put with the disk full: err = %v, want 503 store unavailable", err)
	}

	// Free space: writes must work again without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	var recovered time.Duration
	for {
		_, err := c.Put(ctx, "after/free", []byte("x"), kvs.Cond{})
		if err == nil {
			recovered = time.Since(freed)
			break
		}
		if time.Since(freed) > 10*time.Second {
			t.Errorf("writes still fail 10s after space was freed: %v", err)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopLoad()
	<-done
	srv.stop()
	if err := store.Close(); err != nil {
		t.Errorf("close: %v", err)
	}

	boltCheck(t, path)
	again, err := bolt.Open(ctx, path, bolt.Options{})
	if err != nil {
		t.Fatalf("reopen after the disk was full: %v", err)
	}
	defer again.Close()
	res, err := load.check(ctx, func(ctx context.Context, key string) ([]byte, error) {
		e, err := again.Get(ctx, key)
		return e.Value, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.problems {
		t.Error(p)
	}
	if load.unexpected > 0 {
		t.Errorf("%d writes failed with something other than 503 store unavailable: %v", load.unexpected, load.statuses)
	}
	t.Logf("disk full: %d writes acknowledged, %d errored %v, %d errored found applied; writes back %v after space was freed",
		load.acked, load.errored, load.statuses, res.erroredApplied, ms(recovered)+" ms")
	figure(t, "faults", "bolt disk full (1 MiB tmpfs), then space freed", "bolt", load.acked, load.statuses["503"], load.unexpected,
		res.erroredApplied, res.lost, res.halfApplied, "until space was freed", ms(recovered)+" ms")
}

// TestFaultBoltReadOnly starts the server on a store whose directory is
// read-only (a read-only bind mount, as root; chmod otherwise): writes and
// deletes must answer 503 "store unavailable", reads, lists and /healthz
// keep working, and the file is not changed by a byte.
//
// A directory cannot become read-only under a running server here: Linux
// refuses to remount a bind mount read-only (EBUSY) while a file on it is
// open for writing, which the bolt file is. A disk that the kernel remounts
// read-only after an error behaves like a full one (EROFS instead of
// ENOSPC), which TestFaultBoltDiskFull covers while serving.
func TestFaultBoltReadOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	path := filepath.Join(dir, "kvs.db")
	ctx := t.Context()
	s, err := bolt.Open(ctx, path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 50 {
		k := fmt.Sprintf("ro/%02d", i)
		want[k] = loadValue(0, i)
		if _, err := s.Put(ctx, k, want[k], kvs.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, path)

	if os.Geteuid() == 0 {
		relMount(t, "--bind", dir, dir)
		if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount read-only: %v: %s", err, out)
		}
	} else {
		if err := os.Chmod(path, 0o400); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(path, 0o600) })
	}
	store, err := bolt.Open(ctx, path, bolt.Options{})
	if err != nil {
		t.Fatalf("open a read-only store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	d := testPKI(t, false)
	srv := startServer(t, d, store, nil)
	c := newTestClient(t, d, srv.addr, nil)

	var refused, served atomic.Int64
	for i := range 20 {
		k := fmt.Sprintf("ro/%02d", i)
		if _, err := c.Put(ctx, k, []byte("new"), kvs.Cond{}); !is503(err) {
			t.Errorf("Put %s on a read-only store: err = %v, want 503 store unavailable", k, err)
		} else {
			refused.Add(1)
		}
		if err := c.Delete(ctx, k, kvs.Cond{}); !is503(err) {
			t.Errorf("Delete %s on a read-only store: err = %v, want 503 store unavailable", k, err)
		} else {
			refused.Add(1)
		}
		if e, err := c.Get(ctx, k); err != nil || !bytes.Equal(e.Value, want[k]) {
			t.Errorf("Get %s on a read-only store: %d bytes, %v", k, len(e.Value), err)
		} else {
			served.Add(1)
		}
	}
	if keys, _, err := c.List(ctx, "ro/", "", 1000); err != nil || len(keys) != len(want) {
		t.Errorf("List on a read-only store: %d keys, %v", len(keys), err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Errorf("/healthz on a read-only store: %v", err)
	}
	srv.stop()
	if err := store.Close(); err != nil {
		t.Error(err)
	}
	if after := fileSum(t, path); after != before {
		t.Error("the bolt file changed while read-only")
	}
	boltCheck(t, path)
	figure(t, "events", "bolt directory read-only (bind mount), server started on it",
		fmt.Sprintf("%d writes and deletes answered 503 \"store unavailable\"; %d reads, list and /healthz served", refused.Load(), served.Load()),
		"file unchanged (SHA-256), passes bbolt check")
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}
