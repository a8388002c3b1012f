package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"

	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// TestPostgresGetBatch answers one hand-made batch of Gets with the single
// SELECT over its distinct keys: a key asked for twice, a missing key and
// a present one all get their own answer, a Get whose context ended while
// it was queued fails without being sent, and when the statement fails
// every Get fails with it.
func TestPostgresGetBatch(t *testing.T) {
	db := pgtest.Database(t)
	s, err := Open(t.Context(), db, Options{Schema: pgtest.Schema(t, db), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ps := s
	want := map[string]int64{}
	for _, k := range []string{"a", "b", "c"} {
		v, err := s.Put(t.Context(), k, []byte("value of "+k), kvs.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	keys := []string{"a", "missing", "b", "a", "c", "missing", "b"}
	var batch []*pgGet
	for _, k := range keys {
		batch = append(batch, &pgGet{ctx: t.Context(), key: k, done: make(chan struct{})})
	}
	canceled := &pgGet{ctx: gone, key: "c", done: make(chan struct{})}
	batch = append(batch, canceled)
	ps.getBatch(batch)
	for i, g := range batch[:len(keys)] {
		<-g.done
		v, ok := want[g.key]
		switch {
		case !ok && !errors.Is(g.err, kvs.ErrNotFound):
			t.Errorf("%d: get %q: %v, want kvs.ErrNotFound", i, g.key, g.err)
		case ok && g.err != nil:
			t.Errorf("%d: get %q: %v", i, g.key, g.err)
		case ok && (g.entry.Key != g.key || string(g.entry.Value) != "value of "+g.key || g.entry.Version != v):
			t.Errorf("%d: get %q = %q %q v%d, want its own value v%d", i, g.key, g.entry.Key, g.entry.Value, g.entry.Version, v)
		}
	}
	<-canceled.done
	if !errors.Is(canceled.err, context.Canceled) {
		t.Errorf("a Get canceled while queued: %v, want context.Canceled", canceled.err)
	}

	// The statement itself, without the fallback a failing batch could
	// hide behind: exactly the keys with a row come back.
	found, err := ps.getMany([]string{"a", "b", "c", "missing"})
	if err != nil {
		t.Fatalf("getMany: %v", err)
	}
	if len(found) != 3 {
		t.Errorf("getMany found %d keys, want a, b and c: %v", len(found), found)
	}
	for k, v := range want {
		if e := found[k]; e.Key != k || e.Version != v || string(e.Value) != "value of "+k {
			t.Errorf("getMany: %q = %+v, want v%d", k, e, v)
		}
	}

	// When the statement fails, every Get of the batch fails, and none
	// claims its key is missing.
	if _, err := ps.pool.Exec(t.Context(), "DROP TABLE kv"); err != nil {
		t.Fatal(err)
	}
	batch = batch[:0]
	for _, k := range keys {
		batch = append(batch, &pgGet{ctx: t.Context(), key: k, done: make(chan struct{})})
	}
	ps.getBatch(batch)
	for i, g := range batch {
		<-g.done
		if g.err == nil || errors.Is(g.err, kvs.ErrNotFound) {
			t.Errorf("%d: get %q from a dropped table: %v, want the statement's error", i, g.key, g.err)
		}
	}
}
