package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/kvstest"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// The invariant under contention: 8 clients move random amounts between
// 10 counters, through the real servers. With compare-and-transfer
// transactions the sum never changes, as seen by transactional reads taken
// all along and at the end; the negative control moves the amounts with
// two separate PUTs and must see the sum change (lost updates).
const (
	invCounters = 10
	invClients  = 8
	invStart    = 1000
	invRounds   = 40 // transfers each client tries
)

type invCounts struct {
	applied, conflicts, sums atomic.Int64
	badSum                   atomic.Int64 // sums that were not invCounters*invStart
}

// runInvariant runs the transfers through clients (round robin over
// servers) with transfer, while a checker reads the sum.
func runInvariant(t *testing.T, clients []*client.Client, transfer func(ctx context.Context, c *client.Client, from, to string, amount int64) (bool, error)) *invCounts {
	t.Helper()
	ctx := t.Context()
	for i := range invCounters {
		if _, err := clients[0].Put(ctx, fmt.Sprintf("c%d", i), []byte(strconv.Itoa(invStart)), kvs.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	var counts invCounts
	sum := func() {
		s, err := kvstest.Sum(ctx, clients[len(clients)-1], invCounters)
		if err != nil {
			t.Errorf("sum: %v", err)
			return
		}
		counts.sums.Add(1)
		if s != invCounters*invStart {
			counts.badSum.Add(1)
		}
	}
	stop := make(chan struct{})
	checker := make(chan struct{})
	go func() {
		defer close(checker)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				sum()
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range invClients {
		c := clients[w%len(clients)]
		rng := rand.New(rand.NewPCG(uint64(w), 15))
		wg.Go(func() {
			for range invRounds {
				from := rng.IntN(invCounters)
				to := (from + 1 + rng.IntN(invCounters-1)) % invCounters
				ok, err := transfer(ctx, c, fmt.Sprintf("c%d", from), fmt.Sprintf("c%d", to), int64(1+rng.IntN(50)))
				if err != nil {
					t.Errorf("transfer: %v", err)
					return
				}
				if ok {
					counts.applied.Add(1)
				} else {
					counts.conflicts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-checker
	sum()
	return &counts
}

// casTransfer is the compare-and-transfer of kvstest.
func casTransfer(ctx context.Context, c *client.Client, from, to string, amount int64) (bool, error) {
	return kvstest.Transfer(ctx, c, from, to, amount)
}

// putTransfer is the negative control: read both, then two plain PUTs.
func putTransfer(ctx context.Context, c *client.Client, from, to string, amount int64) (bool, error) {
	a, err := c.Get(ctx, from)
	if err != nil {
		return false, err
	}
	b, err := c.Get(ctx, to)
	if err != nil {
		return false, err
	}
	na, _ := strconv.ParseInt(string(a.Value), 10, 64)
	nb, _ := strconv.ParseInt(string(b.Value), 10, 64)
	if _, err := c.Put(ctx, from, strconv.AppendInt(nil, na-amount, 10), kvs.Cond{}); err != nil {
		return false, err
	}
	time.Sleep(time.Millisecond) // the window a crash or a reader falls in
	if _, err := c.Put(ctx, to, strconv.AppendInt(nil, nb+amount, 10), kvs.Cond{}); err != nil {
		return false, err
	}
	return true, nil
}

func TestE2ETxnInvariant(t *testing.T) {
	d := testPKI(t, false)
	setups := []struct {
		name    string
		clients func(t *testing.T) []*client.Client
	}{
		{"bolt", func(t *testing.T) []*client.Client {
			ts := startServer(t, d, nil, nil)
			return []*client.Client{newTestClient(t, d, ts.addr, nil)}
		}},
		{"postgres-two-servers", func(t *testing.T) []*client.Client {
			db := pgtest.Database(t)
			schema := pgtest.Schema(t, db)
			var cs []*client.Client
			for range 2 {
				ts := startServer(t, d, openPostgres(t, db, schema, postgres.Options{MaxConns: 6}), nil)
				cs = append(cs, newTestClient(t, d, ts.addr, nil))
			}
			return cs
		}},
	}
	for _, setup := range setups {
		t.Run(setup.name, func(t *testing.T) {
			counts := runInvariant(t, setup.clients(t), casTransfer)
			t.Logf("%s, transactions: %d transfers applied, %d lost to a concurrent change, %d transactional sums read, %d wrong",
				setup.name, counts.applied.Load(), counts.conflicts.Load(), counts.sums.Load(), counts.badSum.Load())
			if counts.badSum.Load() != 0 {
				t.Errorf("the sum changed in %d of %d reads", counts.badSum.Load(), counts.sums.Load())
			}
			if counts.applied.Load() == 0 || counts.conflicts.Load() == 0 {
				t.Errorf("no contention to speak of: %d applied, %d conflicts", counts.applied.Load(), counts.conflicts.Load())
			}
		})
		t.Run(setup.name+"/control-separate-puts", func(t *testing.T) {
			counts := runInvariant(t, setup.clients(t), putTransfer)
			t.Logf("%s, separate PUTs: %d transfers, %d transactional sums read, %d wrong",
				setup.name, counts.applied.Load(), counts.sums.Load(), counts.badSum.Load())
			if counts.badSum.Load() == 0 {
				t.Error("negative control: separate PUTs never changed the sum; the test cannot tell")
			}
		})
	}
}
