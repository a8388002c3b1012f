// Package kvstest is a conformance suite for implementations of kvs.Store,
// in the manner of testing/fstest: a backend's tests call Run with a
// function that opens an empty store, and RunPersistence with one that
// reopens the same storage.
package kvstest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// Run checks that the stores returned by open behave as the kvs.Store
// documentation says. Each subtest calls open once and expects a new,
// empty store; subtests run in parallel, so open must be safe to call
// concurrently. Run closes every store it gets (and checks that Close
// succeeds); open should register the cleanup of the underlying storage
// with t.Cleanup, which then runs after Close.
func Run(t *testing.T, open func(t *testing.T) kvs.Store) {
	t.Helper()
	for _, tc := range append([]struct {
		name string
		fn   func(t *testing.T, s kvs.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"VersionsIncrease", testVersionsIncrease},
		{"IfVersion", testIfVersion},
		{"CreateOnly", testCreateOnly},
		{"ImpossibleCond", testImpossibleCond},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"OddKeys", testOddKeys},
		{"BinaryValues", testBinaryValues},
		{"List", testList},
		{"ListPatternChars", testListPatternChars},
		{"ListUnicodePrefix", testListUnicodePrefix},
		{"ListPaging", testListPaging},
		{"ConcurrentCAS", testConcurrentCAS},
		{"ConcurrentCreateOnly", testConcurrentCreateOnly},
		{"CanceledContext", testCanceledContext},
		{"Closed", testClosed},
	}, txnTests...) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// RunPersistence checks that data and the revision counter survive Close.
// newStorage is called once and returns a function that opens the same
// storage (initially empty) each time it is called; RunPersistence closes
// each store it opens.
func RunPersistence(t *testing.T, newStorage func(t *testing.T) (open func() (kvs.Store, error))) {
	t.Helper()
	open := newStorage(t)
	ctx := t.Context()

	s, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	va := mustPut(t, s, "a", []byte("alpha"), kvs.Cond{})
	mustPut(t, s, "b", []byte("beta"), kvs.Cond{})
	last := mustPut(t, s, "gone", []byte("x"), kvs.Cond{})
	if err := s.Delete(ctx, "gone", kvs.Cond{}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = open()
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	e := mustGet(t, s, "a")
	if string(e.Value) != "alpha" || e.Version != va {
		t.Errorf("after reopen: Get(a) = %q version %d, want %q version %d", e.Value, e.Version, "alpha", va)
	}
	if _, err := s.Get(ctx, "gone"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("after reopen: Get(gone) err = %v, want ErrNotFound", err)
	}
	if v := mustPut(t, s, "gone", []byte("y"), kvs.Cond{}); v <= last {
		t.Errorf("after reopen: Put got version %d, not above %d from before Close: revisions restarted", v, last)
	}
	keys := listAll(t, s, "", 10)
	if got := keyNames(keys); !slices.Equal(got, []string{"a", "b", "gone"}) {
		t.Errorf("after reopen: List = %q", got)
	}
}

func testGetMissing(t *testing.T, s kvs.Store) {
	if _, err := s.Get(t.Context(), "missing"); !errors.Is(err, kvs.ErrNotFound) {
		t.Fatalf("Get(missing) err = %v, want ErrNotFound", err)
	}
}

func testPutGet(t *testing.T, s kvs.Store) {
	before := time.Now().Add(-time.Second)
	v := mustPut(t, s, "k", []byte("hello"), kvs.Cond{})
	if v <= 0 {
		t.Errorf("Put version = %d, want > 0", v)
	}
	e := mustGet(t, s, "k")
	if e.Key != "k" || string(e.Value) != "hello" || e.Version != v {
		t.Errorf("Get = {%q %q %d}, want {k hello %d}", e.Key, e.Value, e.Version, v)
	}
	if e.Updated.Before(before) || e.Updated.After(time.Now().Add(time.Second)) {
		t.Errorf("Updated = %v, want about now", e.Updated)
	}
	if e.Updated.Location() != time.UTC {
		t.Errorf("Updated location = %v, want UTC", e.Updated.Location())
	}
	// The returned value is the caller's: changing it changes nothing.
	e.Value[0] = 'J'
	if e2 := mustGet(t, s, "k"); string(e2.Value) != "hello" {
		t.Errorf("Get after modifying a returned value = %q", e2.Value)
	}
}

func testOverwrite(t *testing.T, s kvs.Store) {
	v1 := mustPut(t, s, "k", []byte("one"), kvs.Cond{})
	v2 := mustPut(t, s, "k", []byte("two"), kvs.Cond{})
	if v2 <= v1 {
		t.Errorf("second Put version %d, not above first %d", v2, v1)
	}
	if e := mustGet(t, s, "k"); string(e.Value) != "two" || e.Version != v2 {
		t.Errorf("Get = %q version %d, want two version %d", e.Value, e.Version, v2)
	}
}

func testVersionsIncrease(t *testing.T, s kvs.Store) {
	var last int64
	seen := map[int64]bool{}
	step := func(what string, v int64) {
		t.Helper()
		if v <= last {
			t.Errorf("%s: version %d, not above the previous %d", what, v, last)
		}
		if seen[v] {
			t.Errorf("%s: version %d reused", what, v)
		}
		seen[v], last = true, v
	}
	for _, k := range []string{"a", "b", "c", "a", "b"} {
		step("Put "+k, mustPut(t, s, k, []byte(k), kvs.Cond{}))
	}
	old := mustGet(t, s, "a").Version
	if err := s.Delete(t.Context(), "a", kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	v := mustPut(t, s, "a", []byte("again"), kvs.Cond{CreateOnly: true})
	step("recreate a", v)
	// No ABA: the version from before the delete no longer matches.
	if _, err := s.Put(t.Context(), "a", []byte("stale"), kvs.Cond{IfVersion: old}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("Put IfVersion=<version before delete> err = %v, want ErrPrecondition", err)
	}
	step("IfVersion", mustPut(t, s, "a", []byte("cas"), kvs.Cond{IfVersion: v}))
}

func testIfVersion(t *testing.T, s kvs.Store) {
	ctx := t.Context()
	v1 := mustPut(t, s, "k", []byte("one"), kvs.Cond{})
	v2 := mustPut(t, s, "k", []byte("two"), kvs.Cond{IfVersion: v1})
	if v2 <= v1 {
		t.Errorf("IfVersion Put version %d, not above %d", v2, v1)
	}
	// v1 is stale now.
	if _, err := s.Put(ctx, "k", []byte("three"), kvs.Cond{IfVersion: v1}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("Put with stale IfVersion err = %v, want ErrPrecondition", err)
	}
	if e := mustGet(t, s, "k"); string(e.Value) != "two" || e.Version != v2 {
		t.Errorf("after failed IfVersion: Get = %q version %d, want two version %d", e.Value, e.Version, v2)
	}
	if _, err := s.Put(ctx, "missing", []byte("x"), kvs.Cond{IfVersion: v2}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("Put IfVersion on a missing key err = %v, want ErrPrecondition", err)
	}
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("failed IfVersion Put created the key: Get err = %v", err)
	}
}

func testCreateOnly(t *testing.T, s kvs.Store) {
	ctx := t.Context()
	v := mustPut(t, s, "k", []byte("first"), kvs.Cond{CreateOnly: true})
	if _, err := s.Put(ctx, "k", []byte("second"), kvs.Cond{CreateOnly: true}); !errors.Is(err, kvs.ErrPrecondition) {
		t.Errorf("CreateOnly on an existing key err = %v, want ErrPrecondition", err)
	}
	if e := mustGet(t, s, "k"); string(e.Value) != "first" || e.Version != v {
		t.Errorf("after failed CreateOnly: Get = %q version %d, want first version %d", e.Value, e.Version, v)
	}
	if err := s.Delete(ctx, "k", kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", []byte("third"), kvs.Cond{CreateOnly: true})
}

func testImpossibleCond(t *testing.T, s kvs.Store) {
	ctx := t.Context()
	v := mustPut(t, s, "k", []byte("x"), kvs.Cond{})
	for _, c := range []kvs.Cond{{IfVersion: v, CreateOnly: true}, {IfVersion: -1}} {
		if _, err := s.Put(ctx, "k", []byte("y"), c); !errors.Is(err, kvs.ErrPrecondition) {
			t.Errorf("Put %+v err = %v, want ErrPrecondition", c, err)
		}
		if _, err := s.Put(ctx, "new", []byte("y"), c); !errors.Is(err, kvs.ErrPrecondition) {
			t.Errorf("Put %+v on a missing key err = %v, want ErrPrecondition", c, err)
		}
	}
	if e := mustGet(t, s, "k"); e.Version != v {
		t.Errorf("impossible conditions changed the key: version %d, want %d", e.Version, v)
	}
}

func testDelete(t *testing.T, s kvs.Store) {
	ctx := t.Context()
	for _, c := range []kvs.Cond{{}, {IfVersion: 1}, {CreateOnly: true}} {
		if err := s.Delete(ctx, "missing", c); !errors.Is(err, kvs.ErrNotFound) {
			t.Errorf("Delete(missing, %+v) err = %v, want ErrNotFound", c, err)
		}
	}
	v := mustPut(t, s, "k", []byte("x"), kvs.Cond{})
	for _, c := range []kvs.Cond{{IfVersion: v + 1000}, {IfVersion: -1}, {CreateOnly: true}} {
		if err := s.Delete(ctx, "k", c); !errors.Is(err, kvs.ErrPrecondition) {
			t.Errorf("Delete(k, %+v) err = %v, want ErrPrecondition", c, err)
		}
	}
	if e := mustGet(t, s, "k"); e.Version != v {
		t.Errorf("after failed Deletes: version %d, want %d", e.Version, v)
	}
	if err := s.Delete(ctx, "k", kvs.Cond{IfVersion: v}); err != nil {
		t.Errorf("Delete with the right version: %v", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("Get after Delete err = %v, want ErrNotFound", err)
	}
	mustPut(t, s, "u", []byte("x"), kvs.Cond{})
	if err := s.Delete(ctx, "u", kvs.Cond{}); err != nil {
		t.Errorf("unconditional Delete: %v", err)
	}
	if err := s.Delete(ctx, "u", kvs.Cond{}); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("second Delete err = %v, want ErrNotFound", err)
	}
}

func testInvalidKeys(t *testing.T, s kvs.Store) {
	ctx := t.Context()
	for name, key := range map[string]string{
		"empty":    "",
		"NUL":      "a\x00b",
		"bad UTF8": "a\xffb",
		"too long": strings.Repeat("k", kvs.MaxKeyLen+1),
	} {
		if _, err := s.Get(ctx, key); !errors.Is(err, kvs.ErrInvalidKey) {
			t.Errorf("Get(%s) err = %v, want ErrInvalidKey", name, err)
		}
		if _, err := s.Put(ctx, key, []byte("x"), kvs.Cond{}); !errors.Is(err, kvs.ErrInvalidKey) {
			t.Errorf("Put(%s) err = %v, want ErrInvalidKey", name, err)
		}
		if err := s.Delete(ctx, key, kvs.Cond{}); !errors.Is(err, kvs.ErrInvalidKey) {
			t.Errorf("Delete(%s) err = %v, want ErrInvalidKey", name, err)
		}
		if key == "" {
			continue // an empty prefix or cursor is fine
		}
		if _, _, err := s.List(ctx, key, "", 10); !errors.Is(err, kvs.ErrInvalidKey) {
			t.Errorf("List(prefix %s) err = %v, want ErrInvalidKey", name, err)
		}
		if _, _, err := s.List(ctx, "", key, 10); !errors.Is(err, kvs.ErrInvalidKey) {
			t.Errorf("List(after %s) err = %v, want ErrInvalidKey", name, err)
		}
	}
	if keys := listAll(t, s, "", 100); len(keys) != 0 {
		t.Errorf("invalid keys were stored: %q", keyNames(keys))
	}
	long := strings.Repeat("é", kvs.MaxKeyLen/2) // exactly MaxKeyLen bytes
	mustPut(t, s, long, []byte("x"), kvs.Cond{})
	mustGet(t, s, long)
}

// oddKeys are keys that must be stored and listed as plain bytes.
var oddKeys = []string{
	"'; DROP TABLE kv; --",
	`"; DROP TABLE kv; --`,
	"../x",
	"a/../../b",
	"/",
	"//",
	".",
	"%2F",
	"%",
	"_",
	`\`,
	`\\`,
	"a b",
	" lead",
	"trail ",
	"tab\there",
	"new\nline",
	"\x01\x7f",
	"日本語",
	"😀 emoji",
	"e\u0301", // e + combining accent: not normalized
	"\u00e9",  // é precomposed: a different key
	"\uFEFFbom",
	"\U0010FFFF",
	"$1",
	"?",
	"{}",
}

func testOddKeys(t *testing.T, s kvs.Store) {
	versions := map[string]int64{}
	for i, k := range oddKeys {
		versions[k] = mustPut(t, s, k, fmt.Appendf(nil, "value %d", i), kvs.Cond{})
	}
	for i, k := range oddKeys {
		e := mustGet(t, s, k)
		if e.Key != k || string(e.Value) != fmt.Sprintf("value %d", i) || e.Version != versions[k] {
			t.Errorf("Get(%q) = {%q %q %d}", k, e.Key, e.Value, e.Version)
		}
	}
	want := slices.Clone(oddKeys)
	slices.Sort(want) // Go string order is byte order
	if got := keyNames(listAll(t, s, "", 7)); !slices.Equal(got, want) {
		t.Errorf("List =\n%q\nwant (byte order)\n%q", got, want)
	}
	if _, err := s.Get(t.Context(), "kv"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("Get(kv) err = %v, want ErrNotFound", err)
	}
}

func testBinaryValues(t *testing.T, s kvs.Store) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat(all, 1024) // 256 KiB
	for _, tc := range []struct {
		name  string
		value []byte
		want  []byte
	}{
		{"all bytes", all, all},
		{"empty", []byte{}, []byte{}},
		{"nil", nil, []byte{}},
		{"NUL", []byte{0}, []byte{0}},
		{"invalid UTF-8", []byte("\xff\xfe\xc3"), []byte("\xff\xfe\xc3")},
		{"256 KiB", big, big},
	} {
		v := mustPut(t, s, tc.name, tc.value, kvs.Cond{})
		e := mustGet(t, s, tc.name)
		if !bytes.Equal(e.Value, tc.want) || e.Value == nil || e.Version != v {
			t.Errorf("%s: Get = %d bytes (nil %v) version %d, want %d bytes version %d",
				tc.name, len(e.Value), e.Value == nil, e.Version, len(tc.want), v)
		}
		keys, _, err := s.List(t.Context(), tc.name, "", 1)
		if err != nil || len(keys) != 1 || keys[0].Size != len(tc.want) || keys[0].Version != v {
			t.Errorf("%s: List = %+v, %v; want size %d version %d", tc.name, keys, err, len(tc.want), v)
		}
	}
}

func mustPut(t *testing.T, s kvs.Store, key string, value []byte, c kvs.Cond) int64 {
	t.Helper()
	v, err := s.Put(t.Context(), key, value, c)
	if err != nil {
		t.Fatalf("Put(%q, %+v): %v", key, c, err)
	}
	return v
}

func mustGet(t *testing.T, s kvs.Store, key string) kvs.Entry {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e
}

// listAll pages through every key with prefix, limit at a time.
func listAll(t *testing.T, s kvs.Store, prefix string, limit int) []kvs.KeyInfo {
	t.Helper()
	var all []kvs.KeyInfo
	for after := ""; ; {
		keys, next, err := s.List(t.Context(), prefix, after, limit)
		if err != nil {
			t.Fatalf("List(%q, %q, %d): %v", prefix, after, limit, err)
		}
		all = append(all, keys...)
		if next == "" {
			return all
		}
		if next <= after {
			t.Fatalf("List(%q, %q, %d): next %q does not advance", prefix, after, limit, next)
		}
		after = next
	}
}

func keyNames(keys []kvs.KeyInfo) []string {
	var names []string
	for _, k := range keys {
		names = append(names, k.Key)
	}
	return names
}

// parallel runs fn(0..n-1) on workers goroutines and fails t on the first
// error.
func parallel(t *testing.T, workers, n int, fn func(i int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
