package kvstest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// RunLease checks the kvs.Leaser of the stores open returns, with pass
// moving the store's clock forward by d (a fake clock's, or by sleeping):
// a key with a lease disappears for Get, List and conditions at its
// deadline without any sweep, and the sweep then logs its expiry;
// keep-alive extends the lease; revoke deletes exactly its keys; a Put
// without a lease detaches a key; bad TTLs and unknown leases are refused.
func RunLease(t *testing.T, open func(t *testing.T) (s kvs.Store, pass func(d time.Duration))) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s kvs.Store, l kvs.Leaser, pass func(time.Duration))
	}{
		{"Expiry", testLeaseExpiry},
		{"KeepAlive", testLeaseKeepAlive},
		{"Revoke", testLeaseRevoke},
		{"Detach", testLeaseDetach},
		{"BadInput", testLeaseBadInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, pass := open(t)
			t.Cleanup(func() { _ = s.Close() })
			l, ok := s.(kvs.Leaser)
			if !ok {
				t.Fatalf("%T does not implement kvs.Leaser", s)
			}
			tc.fn(t, s, l, pass)
		})
	}
}

func grant(t *testing.T, l kvs.Leaser, ttl time.Duration) kvs.Lease {
	t.Helper()
	ls, err := l.Grant(t.Context(), ttl, "owner")
	if err != nil || ls.ID <= 0 || ls.TTL != ttl {
		t.Fatalf("Grant(%s): %+v, %v", ttl, ls, err)
	}
	return ls
}

func putLease(t *testing.T, l kvs.Leaser, key string, c kvs.Cond, id int64) int64 {
	t.Helper()
	v, err := l.PutLease(t.Context(), key, []byte(key), c, id)
	if err != nil {
		t.Fatalf("PutLease(%q, lease %d): %v", key, id, err)
	}
	return v
}

func testLeaseExpiry(t *testing.T, s kvs.Store, l kvs.Leaser, pass func(time.Duration)) {
	ctx := t.Context()
	ls := grant(t, l, 2*time.Second)
	v := putLease(t, l, "t/a", kvs.Cond{}, ls.ID)
	mustPut(t, s, "t/b", []byte("stays"), kvs.Cond{})
	if e := mustGet(t, s, "t/a"); e.Version != v {
		t.Fatalf("Get before the deadline: %+v", e)
	}
	w, watches := s.(kvs.Watcher)
	var st kvs.EventStream
	if watches {
		st = watch(t, w, "t/", v)
	}
	pass(2*time.Second + 200*time.Millisecond)
	if _, err := s.Get(ctx, "t/a"); !errors.Is(err, kvs.ErrNotFound) {
		t.Fatalf("Get after the deadline, before any sweep: %v, want ErrNotFound", err)
	}
	if got := keyNames(listAll(t, s, "t/", 0)); !slices.Equal(got, []string{"t/b"}) {
		t.Fatalf("List after the deadline: %v, want only t/b", got)
	}
	if _, err := s.Put(ctx, "t/a", []byte("x"), kvs.Cond{IfVersion: v}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Fatalf("IfVersion on the expired key: %v, want ErrPrecondition", err)
	}
	if _, err := l.KeepAlive(ctx, ls.ID); !errors.Is(err, kvs.ErrLeaseNotFound) || !errors.Is(err, kvs.ErrNotFound) {
		t.Fatalf("KeepAlive after the deadline: %v, want ErrLeaseNotFound", err)
	}
	// The sweep deletes it as an expiry (the client's server sweeps on
	// its own: then Sweep may find nothing left).
	if _, err := l.Sweep(ctx); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if watches {
		checkEvent(t, next(t, st), kvs.EventPut, "t/b", 0, []byte("stays"))
		e := next(t, st)
		checkEvent(t, e, kvs.EventExpire, "t/a", 0, nil)
	}
	// A create-only Put takes the key again.
	mustPut(t, s, "t/a", []byte("new"), kvs.Cond{CreateOnly: true})
}

func testLeaseKeepAlive(t *testing.T, s kvs.Store, l kvs.Leaser, pass func(time.Duration)) {
	ls := grant(t, l, 2*time.Second)
	putLease(t, l, "k/a", kvs.Cond{}, ls.ID)
	for range 3 {
		pass(1200 * time.Millisecond)
		got, err := l.KeepAlive(t.Context(), ls.ID)
		if err != nil || got.TTL != 2*time.Second {
			t.Fatalf("KeepAlive: %+v, %v", got, err)
		}
	}
	mustGet(t, s, "k/a") // 3.6s after the grant of a 2s lease
	info, err := l.LeaseInfo(t.Context(), ls.ID)
	if err != nil || info.Remaining <= 0 || info.Remaining > 2*time.Second || !slices.Equal(info.Keys, []string{"k/a"}) || info.Owner == "" {
		t.Fatalf("LeaseInfo: %+v, %v", info, err)
	}
}

func testLeaseRevoke(t *testing.T, s kvs.Store, l kvs.Leaser, _ func(time.Duration)) {
	ctx := t.Context()
	ls := grant(t, l, time.Minute)
	other := grant(t, l, time.Minute)
	putLease(t, l, "r/a", kvs.Cond{}, ls.ID)
	putLease(t, l, "r/b", kvs.Cond{CreateOnly: true}, ls.ID)
	putLease(t, l, "r/c", kvs.Cond{}, other.ID)
	mustPut(t, s, "r/d", []byte("d"), kvs.Cond{})
	if err := l.Revoke(ctx, ls.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got := keyNames(listAll(t, s, "r/", 0)); !slices.Equal(got, []string{"r/c", "r/d"}) {
		t.Fatalf("after Revoke: %v, want r/c and r/d", got)
	}
	for name, err := range map[string]error{
		"Revoke again": l.Revoke(ctx, ls.ID),
		"KeepAlive":    func() error { _, err := l.KeepAlive(ctx, ls.ID); return err }(),
		"LeaseInfo":    func() error { _, err := l.LeaseInfo(ctx, ls.ID); return err }(),
		"PutLease":     func() error { _, err := l.PutLease(ctx, "r/e", nil, kvs.Cond{}, ls.ID); return err }(),
	} {
		if !errors.Is(err, kvs.ErrLeaseNotFound) {
			t.Errorf("%s on a revoked lease: %v, want ErrLeaseNotFound", name, err)
		}
	}
	if _, err := s.Get(ctx, "r/e"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("PutLease with a revoked lease wrote the key: %v", err)
	}
}

func testLeaseDetach(t *testing.T, s kvs.Store, l kvs.Leaser, pass func(time.Duration)) {
	ls := grant(t, l, time.Second)
	putLease(t, l, "d/a", kvs.Cond{}, ls.ID)
	mustPut(t, s, "d/a", []byte("plain"), kvs.Cond{})
	pass(1200 * time.Millisecond)
	if e := mustGet(t, s, "d/a"); string(e.Value) != "plain" {
		t.Fatalf("d/a: %q", e.Value)
	}
}

func testLeaseBadInput(t *testing.T, _ kvs.Store, l kvs.Leaser, _ func(time.Duration)) {
	for _, ttl := range []time.Duration{0, -time.Second, time.Millisecond, kvs.MaxTTL + time.Second, 1 << 62} {
		if ls, err := l.Grant(t.Context(), ttl, "owner"); !errors.Is(err, kvs.ErrInvalidTTL) {
			t.Errorf("Grant(%s): %+v, %v; want ErrInvalidTTL", ttl, ls, err)
		}
	}
	for _, id := range []int64{987654321, -1} {
		if _, err := l.PutLease(t.Context(), "b/a", []byte("x"), kvs.Cond{}, id); !errors.Is(err, kvs.ErrLeaseNotFound) {
			t.Errorf("PutLease with lease %d: %v, want ErrLeaseNotFound", id, err)
		}
		if _, err := l.KeepAlive(t.Context(), id); !errors.Is(err, kvs.ErrLeaseNotFound) {
			t.Errorf("KeepAlive(%d): %v, want ErrLeaseNotFound", id, err)
		}
	}
}
