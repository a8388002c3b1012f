package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/kvs/stores"
)

// TestLostUpdates has N clients increment one counter for a fixed time, each
// with read, add one, write If-Match the version read, retrying on 412. If
// compare-and-swap holds, the final value equals the number of successful
// increments: on bolt, on PostgreSQL, and across two servers on one
// PostgreSQL database.
func TestLostUpdates(t *testing.T) {
	d := testPKI(t, false)
	bolt := func(t *testing.T) []string {
		s, err := stores.Open(t.Context(), "bolt:"+filepath.Join(t.TempDir(), "data", "kvs.db"), stores.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return []string{startServer(t, d, s, nil).addr}
	}
	for _, tc := range []struct {
		name    string
		servers func(t *testing.T) []string
		blind   bool // negative control: write without If-Match, updates must get lost
	}{
		{"bolt", bolt, false},
		{"bolt, without If-Match (negative control)", bolt, true},
		{"postgres", func(t *testing.T) []string {
			db := pgtest.Database(t)
			s, err := stores.Open(t.Context(), db, stores.Options{Schema: pgtest.Schema(t, db), MaxConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return []string{startServer(t, d, s, nil).addr}
		}, false},
		{"postgres, two servers", func(t *testing.T) []string {
			db := pgtest.Database(t)
			schema := pgtest.Schema(t, db)
			var addrs []string
			for range 2 {
				s, err := stores.Open(t.Context(), db, stores.Options{Schema: schema, MaxConns: 4})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				addrs = append(addrs, startServer(t, d, s, nil).addr)
			}
			return addrs
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := tc.servers(t)
			const clients = 8
			window := relWindow(t)
			if tc.blind {
				window = time.Second
			}
			cs := make([]*client.Client, clients)
			for i := range cs {
				cs[i] = newTestClient(t, d, addrs[i%len(addrs)], nil)
			}
			ctx := t.Context()
			if _, err := cs[0].Put(ctx, "counter", []byte("0"), kvs.Cond{CreateOnly: true}); err != nil {
				t.Fatal(err)
			}
			var (
				mu                   sync.Mutex
				successes, conflicts int
				unexpected           []error
				stop, cancel         = context.WithTimeout(context.Background(), window)
			)
			defer cancel()
			var wg sync.WaitGroup
			for _, c := range cs {
				wg.Go(func() {
					for stop.Err() == nil {
						err := increment(ctx, c, tc.blind)
						mu.Lock()
						switch {
						case err == nil:
							successes++
						case errors.Is(err, kvs.ErrPrecondition):
							conflicts++
						default:
							unexpected = append(unexpected, err)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for _, err := range unexpected {
				t.Errorf("increment: %v", err)
			}
			e, err := cs[len(cs)-1].Get(ctx, "counter")
			if err != nil {
				t.Fatal(err)
			}
			final, err := strconv.Atoi(string(e.Value))
			if err != nil {
				t.Fatalf("counter holds %q", e.Value)
			}
			if tc.blind {
				if final >= successes {
					t.Errorf("without If-Match no update was lost (%d increments, final %d): the test cannot see lost updates", successes, final)
				}
				t.Logf("negative control: %d increments, final value %d: %d updates lost, as expected", successes, final, successes-final)
				figure(t, "lostupdate", tc.name, fmt.Sprintf("%d clients, 1 server", clients), window, successes, "-", final, successes-final)
				return
			}
			if final != successes {
				t.Errorf("counter = %d after %d successful increments: %d updates lost", final, successes, successes-final)
			}
			if successes == 0 {
				t.Error("no increment succeeded")
			}
			t.Logf("%s: %d clients on %d server(s) for %v: %d increments, %d conflicts (412), final value %d",
				tc.name, clients, len(addrs), window, successes, conflicts, final)
			figure(t, "lostupdate", tc.name, fmt.Sprintf("%d clients, %d server(s)", clients, len(addrs)), window,
				successes, conflicts, final, successes-final)
		})
	}
}

// increment reads the counter and writes it plus one if nobody wrote in
// between; kvs.ErrPrecondition when somebody did. blind writes without If-Match.
func increment(ctx context.Context, c *client.Client, blind bool) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	e, err := c.Get(ctx, "counter")
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(string(e.Value))
	if err != nil {
		return fmt.Errorf("counter holds %q", e.Value)
	}
	cond := kvs.Cond{IfVersion: e.Version}
	if blind {
		cond = kvs.Cond{}
	}
	_, err = c.Put(ctx, "counter", []byte(strconv.Itoa(n+1)), cond)
	return err
}
