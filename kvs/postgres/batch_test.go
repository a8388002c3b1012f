package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// TestPostgresConcurrentPuts writes overlapping keys from many goroutines,
// so that Puts are grouped into batches and Puts of one key wait for each
// other's row locks: every Put succeeds with a unique version, and each key
// ends with the value of the Put that got its highest version, so a key's
// version only grows. (An upsert that drew its version before waiting for
// the row lock could commit after a Put with a higher one.)
//
// Four stores share the schema, as four servers would: each store runs its
// batches one after another on a machine this small, so the Puts of
// different stores are the ones that race for a row.
func TestPostgresConcurrentPuts(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	stores := make([]kvs.Store, 4)
	for i := range stores {
		stores[i] = openStore(t, db, schema, postgres.Options{MaxConns: 8})
		defer stores[i].Close()
	}
	s := stores[0]
	const writers, puts, keys = 32, 40, 10
	var mu sync.Mutex
	seen := map[int64]bool{}
	written := map[string]map[int64]string{} // key -> version -> value
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range puts {
				key := fmt.Sprintf("k%d", (w+i)%keys)
				val := fmt.Sprintf("w%d-%d", w, i)
				v, err := stores[w%len(stores)].Put(t.Context(), key, []byte(val), kvs.Cond{})
				if err != nil {
					t.Errorf("put %s: %v", key, err)
					return
				}
				mu.Lock()
				if seen[v] {
					t.Errorf("version %d returned twice", v)
				}
				seen[v] = true
				if written[key] == nil {
					written[key] = map[int64]string{}
				}
				written[key][v] = val
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for key, versions := range written {
		e, err := s.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		top := int64(0)
		for v := range versions {
			top = max(top, v)
		}
		if val, ok := versions[e.Version]; !ok || val != string(e.Value) {
			t.Errorf("%s = %q v%d, which no Put wrote", key, e.Value, e.Version)
		} else if e.Version != top {
			t.Errorf("%s ends at v%d (%q), but a Put of it was acknowledged with v%d", key, e.Version, e.Value, top)
		}
	}
}

// TestPostgresBatchIsolatesFailure makes the server reject one key (a
// trigger raises an error) while many Puts run at once: the Puts that were
// grouped with it must still succeed, and only the bad one fails.
func TestPostgresBatchIsolatesFailure(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	s := openStore(t, db, schema, postgres.Options{MaxConns: 4})
	defer s.Close()
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	sch := pgx.Identifier{schema}.Sanitize()
	for _, q := range []string{
		`CREATE FUNCTION ` + sch + `.reject_bad() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.key LIKE 'bad%' THEN RAISE EXCEPTION 'rejected %', NEW.key; END IF; RETURN NEW; END $$`,
		`CREATE TRIGGER reject_bad BEFORE INSERT OR UPDATE ON ` + sch + `.kv FOR EACH ROW EXECUTE FUNCTION ` + sch + `.reject_bad()`,
	} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make([]error, 40)
		for i := range errs {
			key := fmt.Sprintf("good%d-%d", round, i)
			if i%10 == 5 {
				key = fmt.Sprintf("bad%d-%d", round, i)
			}
			wg.Go(func() { _, errs[i] = s.Put(t.Context(), key, []byte("v"), kvs.Cond{}) })
		}
		wg.Wait()
		for i, err := range errs {
			switch {
			case i%10 == 5 && err == nil:
				t.Errorf("round %d: the rejected key %d was written", round, i)
			case i%10 == 5 && errors.Is(err, kvs.ErrUnavailable):
				t.Errorf("round %d: a rejected statement is not an outage: %v", round, err)
			case i%10 != 5 && err != nil:
				t.Errorf("round %d: good key %d failed with the bad one: %v", round, i, err)
			}
		}
	}
}

// TestPostgresConcurrentGets reads present and missing keys from many
// goroutines, so that Gets are grouped into batches: each gets its own
// value, or ErrNotFound.
func TestPostgresConcurrentGets(t *testing.T) {
	db := pgtest.Database(t)
	s := openStore(t, db, pgtest.Schema(t, db), postgres.Options{MaxConns: 4})
	defer s.Close()
	const keys = 50
	versions := map[string]int64{}
	for i := range keys {
		key := fmt.Sprintf("k%d", i)
		v, err := s.Put(t.Context(), key, []byte("value of "+key), kvs.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		versions[key] = v
	}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := range 2 * keys {
				key := fmt.Sprintf("k%d", (w*7+i)%(2*keys)) // half of them missing
				e, err := s.Get(t.Context(), key)
				want, ok := versions[key]
				switch {
				case !ok && !errors.Is(err, kvs.ErrNotFound):
					t.Errorf("get missing %s: %v, want ErrNotFound", key, err)
				case ok && err != nil:
					t.Errorf("get %s: %v", key, err)
				case ok && (string(e.Value) != "value of "+key || e.Version != want || e.Key != key):
					t.Errorf("get %s = %q v%d (key %q), want %q v%d", key, e.Value, e.Version, e.Key, "value of "+key, want)
				}
			}
		})
	}
	wg.Wait()
	// A Get whose context has ended is not sent.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Get(ctx, "k1"); !errors.Is(err, context.Canceled) {
		t.Errorf("get with a canceled context: %v", err)
	}
}

// TestPostgresPutVersionsGrow widens the moment between an upsert drawing
// its version and taking the row lock (a BEFORE INSERT trigger sleeps a
// random few milliseconds; it fires for every upsert, updates included)
// while two stores write one key at once and a reader watches it: the
// version the reader sees must never go down, and the key must end with
// the highest version any Put was acknowledged with. An upsert that takes
// its version from the proposed row, drawn before the lock, fails both.
func TestPostgresPutVersionsGrow(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	a := openStore(t, db, schema, postgres.Options{MaxConns: 8})
	defer a.Close()
	b := openStore(t, db, schema, postgres.Options{MaxConns: 8})
	defer b.Close()
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	sch := pgx.Identifier{schema}.Sanitize()
	for _, q := range []string{
		`CREATE FUNCTION ` + sch + `.dawdle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(random() * 0.005); RETURN NEW; END $$`,
		`CREATE TRIGGER dawdle BEFORE INSERT ON ` + sch + `.kv FOR EACH ROW EXECUTE FUNCTION ` + sch + `.dawdle()`,
	} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Put(t.Context(), "hot", []byte("first"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		top    int64
		topVal string
	)
	stop := make(chan struct{})
	read := make(chan struct{})
	go func() { // the reader
		defer close(read)
		last := int64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			e, err := b.Get(t.Context(), "hot")
			if err != nil {
				t.Errorf("get: %v", err)
				return
			}
			if e.Version < last {
				t.Errorf("the version of hot went down: v%d, then v%d", last, e.Version)
				return
			}
			last = e.Version
		}
	}()
	var wg sync.WaitGroup
	for w := range 8 {
		s := []kvs.Store{a, b}[w%2]
		wg.Go(func() {
			for i := range 15 {
				val := fmt.Sprintf("w%d-%d", w, i)
				v, err := s.Put(t.Context(), "hot", []byte(val), kvs.Cond{})
				if err != nil {
					t.Errorf("put: %v", err)
					return
				}
				mu.Lock()
				if v > top {
					top, topVal = v, val
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	<-read
	e, err := a.Get(t.Context(), "hot")
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != top || string(e.Value) != topVal {
		t.Errorf("hot = %q v%d, but %q was acknowledged with v%d", e.Value, e.Version, topVal, top)
	}
}
