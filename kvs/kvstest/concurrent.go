package kvstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
)

// testConcurrentCAS runs read-modify-write increments from 16 goroutines;
// every increment that succeeded must be in the final count.
func testConcurrentCAS(t *testing.T, s kvs.Store) {
	const workers, tries = 16, 25
	mustPut(t, s, "counter", []byte("0"), kvs.Cond{})
	var (
		mu        sync.Mutex
		successes int
	)
	parallel(t, workers, workers, func(int) error {
		for range tries {
			e, err := s.Get(t.Context(), "counter")
			if err != nil {
				return err
			}
			var n int
			if _, err := fmt.Sscan(string(e.Value), &n); err != nil {
				return fmt.Errorf("counter %q: %v", e.Value, err)
			}
			_, err = s.Put(t.Context(), "counter", fmt.Append(nil, n+1), kvs.Cond{IfVersion: e.Version})
			switch {
			case errors.Is(err, kvs.ErrPrecondition):
			case err != nil:
				return err
			default:
				mu.Lock()
				successes++
				mu.Unlock()
			}
		}
		return nil
	})
	e := mustGet(t, s, "counter")
	if string(e.Value) != fmt.Sprint(successes) {
		t.Errorf("counter = %s after %d successful increments: lost updates", e.Value, successes)
	}
	if successes == 0 {
		t.Error("no increment succeeded")
	}
}

func testConcurrentCreateOnly(t *testing.T, s kvs.Store) {
	const workers = 16
	var (
		mu      sync.Mutex
		winners []int
	)
	parallel(t, workers, workers, func(i int) error {
		_, err := s.Put(t.Context(), "once", fmt.Append(nil, i), kvs.Cond{CreateOnly: true})
		if errors.Is(err, kvs.ErrPrecondition) {
			return nil
		}
		if err == nil {
			mu.Lock()
			winners = append(winners, i)
			mu.Unlock()
		}
		return err
	})
	if len(winners) != 1 {
		t.Fatalf("%d CreateOnly Puts succeeded, want 1", len(winners))
	}
	if e := mustGet(t, s, "once"); string(e.Value) != fmt.Sprint(winners[0]) {
		t.Errorf("value %q, want the winner's %d", e.Value, winners[0])
	}
}

func testCanceledContext(t *testing.T, s kvs.Store) {
	v := mustPut(t, s, "kept", []byte("x"), kvs.Cond{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: err = %v, want context.Canceled", op, err)
		}
	}
	_, err := s.Put(ctx, "new", []byte("x"), kvs.Cond{})
	check("Put", err)
	_, err = s.Put(ctx, "kept", []byte("y"), kvs.Cond{IfVersion: v})
	check("Put IfVersion", err)
	check("Delete", s.Delete(ctx, "kept", kvs.Cond{}))
	_, err = s.Get(ctx, "kept")
	check("Get", err)
	_, _, err = s.List(ctx, "", "", 10)
	check("List", err)
	check("Ping", s.Ping(ctx))

	if _, err := s.Get(t.Context(), "new"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("a canceled Put wrote: Get err = %v", err)
	}
	if e := mustGet(t, s, "kept"); string(e.Value) != "x" || e.Version != v {
		t.Errorf("a canceled write changed the key: %q version %d", e.Value, e.Version)
	}
}

func testClosed(t *testing.T, s kvs.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	mustPut(t, s, "k", []byte("x"), kvs.Cond{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	_, err := s.Get(ctx, "k")
	checkUnavailable(t, "Get", err)
	_, err = s.Put(ctx, "k", []byte("y"), kvs.Cond{})
	checkUnavailable(t, "Put", err)
	checkUnavailable(t, "Delete", s.Delete(ctx, "k", kvs.Cond{}))
	_, _, err = s.List(ctx, "", "", 1)
	checkUnavailable(t, "List", err)
	checkUnavailable(t, "Ping", s.Ping(ctx))
	// Run closes s again in its cleanup: a second Close must return nil.
}

func checkUnavailable(t *testing.T, op string, err error) {
	t.Helper()
	if !errors.Is(err, kvs.ErrUnavailable) {
		t.Errorf("%s after Close: err = %v, want ErrUnavailable", op, err)
	}
}
