package kvstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// watchTimeout bounds the wait for an event that must arrive.
const watchTimeout = 20 * time.Second

// RunWatch checks the kvs.Watcher of the stores open returns (each new and
// empty, as for Run): every change under the prefix is delivered once, in
// revision order, with its type, key, version and value; a watch resumes
// strictly after its revision; a revision in the future and a bad prefix
// are refused.
func RunWatch(t *testing.T, open func(t *testing.T) kvs.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s kvs.Store, w kvs.Watcher)
	}{
		{"Order", testWatchOrder},
		{"Resume", testWatchResume},
		{"FutureRevision", testWatchFuture},
		{"InvalidPrefix", testWatchInvalidPrefix},
		{"Concurrent", testWatchConcurrent},
		{"Canceled", testWatchCanceled},
		{"Txn", testWatchTxn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			w, ok := s.(kvs.Watcher)
			if !ok {
				t.Fatalf("%T does not implement kvs.Watcher", s)
			}
			tc.fn(t, s, w)
		})
	}
}

// RunChangeLog checks Prune and the answers of a compacted log, for stores
// that implement kvs.ChangeLog.
func RunChangeLog(t *testing.T, open func(t *testing.T) kvs.Store) {
	t.Helper()
	t.Run("Prune", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		log, ok := s.(kvs.ChangeLog)
		if !ok {
			t.Fatalf("%T does not implement kvs.ChangeLog", s)
		}
		ctx := t.Context()
		var vs []int64
		for i := range 5 {
			vs = append(vs, mustPut(t, s, fmt.Sprintf("p/%d", i), []byte("v"), kvs.Cond{}))
		}
		if evs, _, err := log.Changes(ctx, "p/", 0, 0); err != nil || len(evs) != 5 {
			t.Fatalf("Changes before Prune: %d events, %v; want 5", len(evs), err)
		}
		compacted, err := log.Prune(ctx, kvs.Retention{Revisions: 2})
		if err != nil {
			t.Fatalf("Prune: %v", err)
		}
		if compacted != vs[2] {
			t.Fatalf("Prune keeping 2 changes compacted up to %d, want %d (versions %v)", compacted, vs[2], vs)
		}
		_, _, err = log.Changes(ctx, "p/", vs[1], 0)
		var ce *kvs.CompactedError
		if !errors.As(err, &ce) || !errors.Is(err, kvs.ErrCompacted) || ce.Oldest != compacted {
			t.Fatalf("Changes after a pruned revision: %v, want a CompactedError with Oldest %d", err, compacted)
		}
		evs, _, err := log.Changes(ctx, "p/", compacted, 0)
		if err != nil || len(evs) != 2 || evs[0].Version != vs[3] || evs[1].Version != vs[4] {
			t.Fatalf("Changes after the oldest revision: %v, %v; want versions %v", evs, err, vs[3:])
		}
		if _, err := s.(kvs.Watcher).Watch(ctx, "p/", 0); !errors.Is(err, kvs.ErrCompacted) {
			t.Fatalf("Watch after a pruned revision: %v, want ErrCompacted", err)
		}
		again, err := log.Prune(ctx, kvs.Retention{Revisions: 100})
		if err != nil || again != compacted {
			t.Fatalf("Prune keeping more than there is: %d, %v; want %d (never backwards)", again, err, compacted)
		}
	})
}

// next reads one event or fails the test.
func next(t *testing.T, st kvs.EventStream) kvs.Event {
	t.Helper()
	type res struct {
		e   kvs.Event
		err error
	}
	ch := make(chan res, 1)
	go func() {
		e, err := st.Next()
		ch <- res{e, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Next: %v", r.err)
		}
		return r.e
	case <-time.After(watchTimeout):
		t.Fatalf("no event within %s", watchTimeout)
	}
	return kvs.Event{}
}

func watch(t *testing.T, w kvs.Watcher, prefix string, after int64) kvs.EventStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*watchTimeout)
	st, err := w.Watch(ctx, prefix, after)
	if err != nil {
		cancel()
		t.Fatalf("Watch(%q, %d): %v", prefix, after, err)
	}
	t.Cleanup(func() {
		_ = st.Close()
		cancel()
	})
	return st
}

func checkEvent(t *testing.T, got kvs.Event, typ kvs.EventType, key string, version int64, value []byte) {
	t.Helper()
	if got.Type != typ || got.Key != key || (version > 0 && got.Version != version) ||
		(typ == kvs.EventPut && !bytes.Equal(got.Value, value)) || (typ != kvs.EventPut && got.Value != nil) {
		t.Fatalf("event %+v, want %s %q version %d value %q", got, typ, key, version, value)
	}
}

func testWatchOrder(t *testing.T, s kvs.Store, w kvs.Watcher) {
	ctx := t.Context()
	st := watch(t, w, "w/", kvs.WatchFromNow)
	va := mustPut(t, s, "w/a", []byte("1"), kvs.Cond{})
	mustPut(t, s, "x/outside", []byte("no"), kvs.Cond{})
	vb := mustPut(t, s, "w/b", []byte{}, kvs.Cond{CreateOnly: true})
	if err := s.Delete(ctx, "w/a", kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	vb2 := mustPut(t, s, "w/b", []byte("\x00\xff"), kvs.Cond{IfVersion: vb})
	if _, err := s.Put(ctx, "w/b", []byte("no"), kvs.Cond{IfVersion: vb}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Fatalf("stale Put: %v", err)
	}
	mustPut(t, s, "w/end", []byte("e"), kvs.Cond{})

	checkEvent(t, next(t, st), kvs.EventPut, "w/a", va, []byte("1"))
	checkEvent(t, next(t, st), kvs.EventPut, "w/b", vb, []byte{})
	del := next(t, st)
	checkEvent(t, del, kvs.EventDelete, "w/a", 0, nil)
	if del.Version <= vb || del.Version >= vb2 {
		t.Fatalf("delete has revision %d, want between %d and %d", del.Version, vb, vb2)
	}
	checkEvent(t, next(t, st), kvs.EventPut, "w/b", vb2, []byte("\x00\xff"))
	checkEvent(t, next(t, st), kvs.EventPut, "w/end", 0, []byte("e"))
}

func testWatchResume(t *testing.T, s kvs.Store, w kvs.Watcher) {
	var vs []int64
	for i := range 4 {
		vs = append(vs, mustPut(t, s, fmt.Sprintf("r/%d", i), []byte{byte(i)}, kvs.Cond{}))
	}
	st := watch(t, w, "r/", vs[1])
	checkEvent(t, next(t, st), kvs.EventPut, "r/2", vs[2], []byte{2})
	checkEvent(t, next(t, st), kvs.EventPut, "r/3", vs[3], []byte{3})
	v4 := mustPut(t, s, "r/4", []byte{4}, kvs.Cond{})
	checkEvent(t, next(t, st), kvs.EventPut, "r/4", v4, []byte{4})

	st0 := watch(t, w, "r/", 0)
	checkEvent(t, next(t, st0), kvs.EventPut, "r/0", vs[0], []byte{0})
}

func testWatchFuture(t *testing.T, s kvs.Store, w kvs.Watcher) {
	v := mustPut(t, s, "f", []byte("x"), kvs.Cond{})
	st, err := w.Watch(t.Context(), "", v+1_000_000)
	if !errors.Is(err, kvs.ErrFutureRevision) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("Watch after revision %d with the store at %d: %v, want ErrFutureRevision", v+1_000_000, v, err)
	}
}

func testWatchInvalidPrefix(t *testing.T, _ kvs.Store, w kvs.Watcher) {
	st, err := w.Watch(t.Context(), "bad\x00", kvs.WatchFromNow)
	if !errors.Is(err, kvs.ErrInvalidKey) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("Watch with a NUL in the prefix: %v, want ErrInvalidKey", err)
	}
}

// testWatchConcurrent has writers race; the watcher must see each of their
// writes once, in increasing revision order.
func testWatchConcurrent(t *testing.T, s kvs.Store, w kvs.Watcher) {
	const writers, each = 4, 25
	st := watch(t, w, "c/", kvs.WatchFromNow)
	var mu sync.Mutex
	want := map[int64]string{}
	parallel(t, writers, writers*each, func(i int) error {
		key := fmt.Sprintf("c/%d", i%7)
		v, err := s.Put(t.Context(), key, []byte(key), kvs.Cond{})
		if err != nil {
			return err
		}
		mu.Lock()
		want[v] = key
		mu.Unlock()
		return nil
	})
	var last int64
	for range writers * each {
		e := next(t, st)
		if e.Version <= last {
			t.Fatalf("event %d after %d: out of order or repeated", e.Version, last)
		}
		last = e.Version
		if key, ok := want[e.Version]; !ok || key != e.Key || e.Type != kvs.EventPut {
			t.Fatalf("event %+v was not one of the Puts", e)
		}
		delete(want, e.Version)
	}
	if len(want) != 0 {
		t.Fatalf("%d Puts never delivered: %v", len(want), want)
	}
}

func testWatchCanceled(t *testing.T, s kvs.Store, w kvs.Watcher) {
	ctx, cancel := context.WithCancel(t.Context())
	st, err := w.Watch(ctx, "z/", kvs.WatchFromNow)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	if e, err := st.Next(); err == nil {
		t.Fatalf("Next after cancel: %+v, want an error", e)
	}
	_ = s
}

// testWatchTxn: the writes of a transaction (stores that have them) reach
// watchers like any other: its puts share the branch's revision, and
// nothing is lost or repeated.
func testWatchTxn(t *testing.T, s kvs.Store, w kvs.Watcher) {
	tx, ok := s.(kvs.Txner)
	if !ok {
		t.Skipf("%T has no transactions", s)
	}
	for _, k := range []string{"x/c", "x/d/1", "x/d/2"} {
		mustPut(t, s, k, []byte(k), kvs.Cond{})
	}
	st := watch(t, w, "x/", kvs.WatchFromNow)
	res, err := tx.Txn(t.Context(), kvs.Txn{Success: []kvs.Op{
		{Kind: kvs.OpPut, Key: "x/a", Value: []byte("A")},
		{Kind: kvs.OpPut, Key: "x/b", Value: []byte("B")},
		{Kind: kvs.OpDelete, Key: "x/c"},
		{Kind: kvs.OpDeletePrefix, Key: "x/d/"},
	}})
	if err != nil || !res.Succeeded {
		t.Fatalf("Txn: %+v, %v", res, err)
	}
	end := mustPut(t, s, "x/end", []byte("e"), kvs.Cond{})
	checkEvent(t, next(t, st), kvs.EventPut, "x/a", res.Revision, []byte("A"))
	checkEvent(t, next(t, st), kvs.EventPut, "x/b", res.Revision, []byte("B"))
	got := map[string]bool{}
	var last int64
	for range 3 {
		e := next(t, st)
		if e.Type != kvs.EventDelete || e.Version < last || e.Version < res.Revision {
			t.Fatalf("event %+v after revision %d: want the transaction's deletes in order", e, last)
		}
		last = e.Version
		got[e.Key] = true
	}
	if !got["x/c"] || !got["x/d/1"] || !got["x/d/2"] {
		t.Fatalf("deletes seen: %v", got)
	}
	checkEvent(t, next(t, st), kvs.EventPut, "x/end", end, []byte("e"))
}
