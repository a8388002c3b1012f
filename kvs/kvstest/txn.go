package kvstest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
)

// The transaction tests run on stores that implement kvs.Txner (and
// kvs.PrefixDeleter); a store without them fails: every store of kvsctl
// has them.

func txner(t *testing.T, s kvs.Store) kvs.Txner {
	t.Helper()
	tx, ok := s.(kvs.Txner)
	if !ok {
		t.Fatalf("%T does not implement kvs.Txner", s)
	}
	return tx
}

func mustTxn(t *testing.T, s kvs.Store, txn kvs.Txn) kvs.TxnResult {
	t.Helper()
	res, err := txner(t, s).Txn(t.Context(), txn)
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	return res
}

func put(key, value string) kvs.Op { return kvs.Op{Kind: kvs.OpPut, Key: key, Value: []byte(value)} }
func get(key string) kvs.Op        { return kvs.Op{Kind: kvs.OpGet, Key: key} }
func del(key string) kvs.Op        { return kvs.Op{Kind: kvs.OpDelete, Key: key} }

// testTxnSuccess: compares hold, the success branch's puts share one
// revision above every earlier version, gets see them.
func testTxnSuccess(t *testing.T, s kvs.Store) {
	va := mustPut(t, s, "a", []byte("1"), kvs.Cond{})
	res := mustTxn(t, s, kvs.Txn{
		Compare: []kvs.Compare{{Key: "a", Kind: kvs.CompareVersion, Version: va}, {Key: "b", Kind: kvs.CompareExists, Exists: false}},
		Success: []kvs.Op{put("a", "2"), put("b", "3"), get("a")},
		Failure: []kvs.Op{put("failed", "x")},
	})
	if !res.Succeeded || res.Revision <= va || len(res.Results) != 3 {
		t.Fatalf("Txn = %+v, want success at a revision above %d with 3 results", res, va)
	}
	ea, eb := mustGet(t, s, "a"), mustGet(t, s, "b")
	if string(ea.Value) != "2" || string(eb.Value) != "3" || ea.Version != res.Revision || eb.Version != res.Revision {
		t.Errorf("after Txn: a=%q v%d b=%q v%d, want 2 and 3 at version %d", ea.Value, ea.Version, eb.Value, eb.Version, res.Revision)
	}
	if r := res.Results[0]; r.Kind != kvs.OpPut || r.Version != res.Revision {
		t.Errorf("put result = %+v", r)
	}
	if r := res.Results[2]; !r.Found || string(r.Value) != "2" || r.Version != res.Revision {
		t.Errorf("get result = %+v, want the put before it", r)
	}
	if _, err := s.Get(t.Context(), "failed"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("the failure branch ran too: Get(failed) err = %v", err)
	}
	if v := mustPut(t, s, "c", nil, kvs.Cond{}); v <= res.Revision {
		t.Errorf("Put after Txn: version %d, not above the txn's %d", v, res.Revision)
	}
}

// testTxnFailure: one compare fails, nothing of success is applied and the
// failure branch runs.
func testTxnFailure(t *testing.T, s kvs.Store) {
	va := mustPut(t, s, "a", []byte("1"), kvs.Cond{})
	res := mustTxn(t, s, kvs.Txn{
		Compare: []kvs.Compare{{Key: "a", Kind: kvs.CompareValue, Value: []byte("1")}, {Key: "a", Kind: kvs.CompareVersion, Version: va + 1000}},
		Success: []kvs.Op{put("a", "changed"), put("b", "new"), del("a")},
		Failure: []kvs.Op{get("a"), get("b")},
	})
	if res.Succeeded || len(res.Results) != 2 {
		t.Fatalf("Txn = %+v, want the failure branch with 2 results", res)
	}
	if r := res.Results[0]; !r.Found || string(r.Value) != "1" || r.Version != va {
		t.Errorf("get a = %+v, want 1 at %d", r, va)
	}
	if r := res.Results[1]; r.Found {
		t.Errorf("get b = %+v, want not found", r)
	}
	if e := mustGet(t, s, "a"); string(e.Value) != "1" || e.Version != va {
		t.Errorf("a = %q v%d after a failed compare, want 1 v%d", e.Value, e.Version, va)
	}
	if _, err := s.Get(t.Context(), "b"); !errors.Is(err, kvs.ErrNotFound) {
		t.Errorf("b written by a branch that did not run: err = %v", err)
	}
	if res.Revision < va {
		t.Errorf("revision %d of a read-only branch, below the store's %d", res.Revision, va)
	}
}

// testTxnCompares checks each kind of compare, true and false.
func testTxnCompares(t *testing.T, s kvs.Store) {
	v := mustPut(t, s, "k", []byte("val"), kvs.Cond{})
	mustPut(t, s, "empty", nil, kvs.Cond{})
	for _, tc := range []struct {
		name string
		c    kvs.Compare
		want bool
	}{
		{"version equal", kvs.Compare{Key: "k", Kind: kvs.CompareVersion, Version: v}, true},
		{"version other", kvs.Compare{Key: "k", Kind: kvs.CompareVersion, Version: v + 1}, false},
		{"version 0 of missing", kvs.Compare{Key: "missing", Kind: kvs.CompareVersion}, true},
		{"version 0 of existing", kvs.Compare{Key: "k", Kind: kvs.CompareVersion}, false},
		{"version of missing", kvs.Compare{Key: "missing", Kind: kvs.CompareVersion, Version: v}, false},
		{"exists", kvs.Compare{Key: "k", Kind: kvs.CompareExists, Exists: true}, true},
		{"exists of missing", kvs.Compare{Key: "missing", Kind: kvs.CompareExists, Exists: true}, false},
		{"not exists of missing", kvs.Compare{Key: "missing", Kind: kvs.CompareExists}, true},
		{"not exists", kvs.Compare{Key: "k", Kind: kvs.CompareExists}, false},
		{"value equal", kvs.Compare{Key: "k", Kind: kvs.CompareValue, Value: []byte("val")}, true},
		{"value other", kvs.Compare{Key: "k", Kind: kvs.CompareValue, Value: []byte("va")}, false},
		{"empty value", kvs.Compare{Key: "empty", Kind: kvs.CompareValue, Value: []byte{}}, true},
		{"empty value of missing", kvs.Compare{Key: "missing", Kind: kvs.CompareValue}, false},
	} {
		res := mustTxn(t, s, kvs.Txn{Compare: []kvs.Compare{tc.c}})
		if res.Succeeded != tc.want {
			t.Errorf("%s: succeeded = %v, want %v", tc.name, res.Succeeded, tc.want)
		}
	}
}

// testTxnOrder: a branch runs in order; a delete of a missing key is no
// error.
func testTxnOrder(t *testing.T, s kvs.Store) {
	res := mustTxn(t, s, kvs.Txn{Success: []kvs.Op{
		get("k"), put("k", "1"), get("k"), del("k"), get("k"), del("k"), put("k", "2"),
	}})
	found := make([]bool, 0, 3)
	for _, i := range []int{0, 2, 4} {
		found = append(found, res.Results[i].Found)
	}
	if !slices.Equal(found, []bool{false, true, false}) {
		t.Errorf("gets found %v, want [false true false]", found)
	}
	if res.Results[3].Deleted != 1 || res.Results[5].Deleted != 0 {
		t.Errorf("deletes removed %d and %d keys, want 1 and 0", res.Results[3].Deleted, res.Results[5].Deleted)
	}
	if e := mustGet(t, s, "k"); string(e.Value) != "2" || e.Version != res.Revision {
		t.Errorf("k = %q v%d, want 2 v%d", e.Value, e.Version, res.Revision)
	}
}

// testTxnDeletePrefix deletes a prefix in a transaction and through
// PrefixDeleter, and nothing outside it.
func testTxnDeletePrefix(t *testing.T, s kvs.Store) {
	for _, k := range []string{"a", "a/1", "a/2", "a/2/x", "a0", "b/1", "é/1", "é/2"} {
		mustPut(t, s, k, []byte(k), kvs.Cond{})
	}
	res := mustTxn(t, s, kvs.Txn{Success: []kvs.Op{{Kind: kvs.OpDeletePrefix, Key: "a/"}, put("a/new", "n")}})
	if res.Results[0].Deleted != 3 {
		t.Errorf("delete_prefix a/ removed %d keys, want 3", res.Results[0].Deleted)
	}
	pd, ok := s.(kvs.PrefixDeleter)
	if !ok {
		t.Fatalf("%T does not implement kvs.PrefixDeleter", s)
	}
	n, err := pd.DeletePrefix(t.Context(), "é/")
	if err != nil || n != 2 {
		t.Errorf("DeletePrefix(é/) = %d, %v; want 2", n, err)
	}
	if n, err := pd.DeletePrefix(t.Context(), "zz"); err != nil || n != 0 {
		t.Errorf("DeletePrefix(zz) = %d, %v; want 0", n, err)
	}
	if _, err := pd.DeletePrefix(t.Context(), ""); err == nil {
		t.Error("DeletePrefix(\"\") deleted every key")
	}
	if got := keyNames(listAll(t, s, "", 0)); !slices.Equal(got, []string{"a", "a/new", "a0", "b/1"}) {
		t.Errorf("keys left = %q", got)
	}
}

// testTxnInvalid: malformed and oversized transactions are refused with
// nothing applied.
func testTxnInvalid(t *testing.T, s kvs.Store) {
	many := make([]kvs.Op, kvs.DefaultMaxTxnOps+1)
	for i := range many {
		many[i] = put(fmt.Sprintf("m%d", i), "x")
	}
	for _, tc := range []struct {
		name string
		txn  kvs.Txn
		want error
	}{
		{"unknown op", kvs.Txn{Success: []kvs.Op{put("x", "1"), {Kind: "increment", Key: "x"}}}, kvs.ErrInvalidTxn},
		{"unknown compare", kvs.Txn{Compare: []kvs.Compare{{Key: "x", Kind: "newer"}}, Success: []kvs.Op{put("x", "1")}}, kvs.ErrInvalidTxn},
		{"empty prefix", kvs.Txn{Success: []kvs.Op{put("x", "1"), {Kind: kvs.OpDeletePrefix}}}, kvs.ErrInvalidTxn},
		{"bad key", kvs.Txn{Success: []kvs.Op{put("x", "1"), put("", "1")}}, kvs.ErrInvalidKey},
		{"bad key in failure", kvs.Txn{Success: []kvs.Op{put("x", "1")}, Failure: []kvs.Op{get("a\x00b")}}, kvs.ErrInvalidKey},
		{"too many", kvs.Txn{Success: many}, kvs.ErrTooLarge},
	} {
		_, err := txner(t, s).Txn(t.Context(), tc.txn)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if keys := listAll(t, s, "", 0); len(keys) != 0 {
		t.Errorf("refused transactions wrote %q", keyNames(keys))
	}
}

// testTxnConcurrent: concurrent compare-and-transfer transactions between
// counters never lose or create an amount.
func testTxnConcurrent(t *testing.T, s kvs.Store) {
	const counters, workers, tries = 4, 8, 20
	for i := range counters {
		mustPut(t, s, counterName(i), []byte("100"), kvs.Cond{})
	}
	var mu sync.Mutex
	done := 0
	parallel(t, workers, workers, func(w int) error {
		for i := range tries {
			from, to := counterName((w+i)%counters), counterName((w+i+1)%counters)
			ok, err := Transfer(t.Context(), txner(t, s), from, to, 1)
			if err != nil {
				return err
			}
			if ok {
				mu.Lock()
				done++
				mu.Unlock()
			}
		}
		return nil
	})
	sum, err := Sum(t.Context(), txner(t, s), counters)
	if err != nil {
		t.Fatal(err)
	}
	if sum != counters*100 {
		t.Errorf("sum of the counters = %d after %d transfers, want %d", sum, done, counters*100)
	}
	if done == 0 {
		t.Error("no transfer succeeded")
	}
}

// testTxnConcurrentCreate: of concurrent transactions that each create
// the same missing key (compare: it does not exist) together with a key of
// their own, exactly one succeeds, and only its own key is written.
func testTxnConcurrentCreate(t *testing.T, s kvs.Store) {
	const workers = 12
	var (
		mu  sync.Mutex
		won []int
	)
	parallel(t, workers, workers, func(i int) error {
		res, err := txner(t, s).Txn(t.Context(), kvs.Txn{
			Compare: []kvs.Compare{{Key: "leader", Kind: kvs.CompareExists, Exists: false}},
			Success: []kvs.Op{put("leader", fmt.Sprint(i)), put(fmt.Sprintf("term/%02d", i), "won")},
		})
		if err != nil {
			return err
		}
		if res.Succeeded {
			mu.Lock()
			won = append(won, i)
			mu.Unlock()
		}
		return nil
	})
	if len(won) != 1 {
		t.Fatalf("%d transactions created the key (%v), want exactly 1", len(won), won)
	}
	if e := mustGet(t, s, "leader"); string(e.Value) != fmt.Sprint(won[0]) {
		t.Errorf("leader = %q, want the winner %d", e.Value, won[0])
	}
	if got := keyNames(listAll(t, s, "term/", 0)); !slices.Equal(got, []string{fmt.Sprintf("term/%02d", won[0])}) {
		t.Errorf("term keys = %q: a losing transaction wrote", got)
	}
}

// txnTests are the transaction subtests of Run.
var txnTests = []struct {
	name string
	fn   func(t *testing.T, s kvs.Store)
}{
	{"TxnSuccess", testTxnSuccess},
	{"TxnFailure", testTxnFailure},
	{"TxnCompares", testTxnCompares},
	{"TxnOrder", testTxnOrder},
	{"TxnDeletePrefix", testTxnDeletePrefix},
	{"TxnInvalid", testTxnInvalid},
	{"TxnConcurrent", testTxnConcurrent},
	{"TxnConcurrentCreate", testTxnConcurrentCreate},
}

// counterName names counter i of Transfer and Sum.
func counterName(i int) string { return fmt.Sprintf("c%d", i) }
