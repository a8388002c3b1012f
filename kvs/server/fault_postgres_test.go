package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	"github.com/kvsctl/kvsctl/kvs/stores"
	"github.com/kvsctl/kvsctl/pki"
)

// TestFaultPostgres runs a write load through a server whose PostgreSQL (a
// private cluster) is restarted, cleanly and then as a crash, and has its
// connections killed with pg_terminate_backend. The server must stay up,
// answer 503 while the database is gone, recover by itself, and afterwards
// every acknowledged write must be there with its value, while a write that
// got an error holds either its old or its new value, never part of one.
func TestFaultPostgres(t *testing.T) {
	pg := startPrivatePG(t)
	d := testPKI(t, false)
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T) // runs during the load
		gap   bool               // the database is unreachable for a while: 503s must be seen
	}{
		{"restart-fast", func(t *testing.T) {
			pg.stop("fast")
			time.Sleep(time.Second)
			pg.start()
		}, true},
		{"restart-crash", func(t *testing.T) {
			pg.stop("immediate")
			time.Sleep(time.Second)
			pg.start()
		}, true},
		{"terminate-backends", func(t *testing.T) {
			total := 0
			for range 5 {
				n, err := pg.terminate(t.Context())
				if err != nil {
					t.Fatalf("pg_terminate_backend: %v", err)
				}
				total += n
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("terminated %d backends", total)
			if total == 0 {
				t.Error("no kvsctl backend was terminated: the fault did not happen")
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runPostgresFault(t, pg, d, tc.name, tc.fault, tc.gap)
		})
	}
}

func runPostgresFault(t *testing.T, pg *privatePG, d pki.Dir, name string, fault func(*testing.T), gap bool) {
	window := relWindow(t)
	schema := pgtest.Schema(t, pg.URL)
	opts := stores.Options{Schema: schema, MaxConns: 4, StatementTimeout: time.Second}
	store, err := stores.Open(t.Context(), pg.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ts := startServer(t, d, store, nil)
	c := newTestClient(t, d, ts.addr, nil)

	// The health probe: the server must answer every time, 200 or 503.
	var health struct {
		ok, unavailable, other atomic.Int64
	}
	probeCtx, stopProbe := context.WithCancel(context.Background())
	var probe sync.WaitGroup
	probe.Go(func() {
		for probeCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(probeCtx, 5*time.Second)
			err := c.Ping(ctx)
			cancel()
			switch {
			case err == nil:
				health.ok.Add(1)
			case errors.Is(err, kvs.ErrUnavailable):
				health.unavailable.Add(1)
			case probeCtx.Err() == nil:
				health.other.Add(1)
				t.Errorf("health check: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	load := newWriteLoad()
	loadCtx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		load.run(loadCtx, 4, 40, "load/", func(ctx context.Context, _ int, key string, value []byte) error {
			_, err := c.Put(ctx, key, value, kvs.Cond{})
			if err != nil {
				time.Sleep(10 * time.Millisecond) // a client backs off a little
			}
			return err
		}, func(err error) bool {
			var se *client.StatusError
			return errors.As(err, &se) && se.Code == http.StatusServiceUnavailable
		})
	}()

	time.Sleep(max(window/2, 500*time.Millisecond))
	fault(t)
	faultEnd := time.Now()

	// Recovery without a restart: a write must succeed again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Put(ctx, "probe/after-fault", []byte("x"), kvs.Cond{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			stopLoad()
			<-loadDone
			stopProbe()
			probe.Wait()
			t.Fatalf("the server did not recover within 30s of the fault: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := time.Since(faultEnd)
	time.Sleep(max(window/2, 500*time.Millisecond))
	stopLoad()
	<-loadDone
	stopProbe()
	probe.Wait()
	if err := c.Ping(t.Context()); err != nil {
		t.Errorf("health after recovery: %v", err)
	}

	// Read everything back through a new pool, as a restarted server would.
	check, err := stores.Open(t.Context(), pg.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	res, err := load.check(t.Context(), func(ctx context.Context, key string) ([]byte, error) {
		e, err := check.Get(ctx, key)
		return e.Value, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.problems {
		t.Error(p)
	}
	t.Logf("%s: %d writes acknowledged, %d errored %v (%d of them applied), %d keys; health probes ok=%d 503=%d other=%d; recovered %v after the fault ended",
		name, load.acked, load.errored, load.statuses, res.erroredApplied, res.keys,
		health.ok.Load(), health.unavailable.Load(), health.other.Load(), ms(recovered)+" ms")
	if load.unexpected > 0 {
		t.Errorf("%d writes failed with something other than 503: %v", load.unexpected, load.statuses)
	}
	if load.acked == 0 {
		t.Error("no write was acknowledged: the load did not run")
	}
	if gap && load.statuses["503"] == 0 && health.unavailable.Load() == 0 {
		t.Error("no 503 was seen while the database was down")
	}
	figure(t, "faults", "PostgreSQL "+name, "postgres", load.acked, load.statuses["503"], load.unexpected,
		res.erroredApplied, res.lost, res.halfApplied, load.gap().Round(10*time.Millisecond), ms(recovered)+" ms")
}
