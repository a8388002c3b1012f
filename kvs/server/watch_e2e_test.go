package server

// End-to-end tests of watches through the real server over mutual TLS:
// delivery across two servers on one PostgreSQL, resume across a restart,
// 410 past the retention, the policy, bad input and a watcher that never
// reads.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// op is one write of the cross-server test and what its event must be.
type op struct {
	typ     kvs.EventType
	key     string
	version int64 // puts only
}

// writeMany makes writers*each writes through c under prefix: each writer
// puts keys of its own and deletes every third one right after, so the
// order per key is known while the writers race.
func writeMany(t *testing.T, c *client.Client, prefix string, writers, each int) map[string][]op {
	t.Helper()
	var mu sync.Mutex
	perKey := map[string][]op{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("%s%d/%d", prefix, w, i%4)
				v, err := c.Put(t.Context(), key, []byte(key), kvs.Cond{})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				perKey[key] = append(perKey[key], op{kvs.EventPut, key, v})
				mu.Unlock()
				if i%3 == 2 {
					if err := c.Delete(t.Context(), key, kvs.Cond{}); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					perKey[key] = append(perKey[key], op{typ: kvs.EventDelete, key: key})
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return perKey
}

// expectAll reads events from st until every op of perKey was seen and
// checks: revisions strictly increase (in order, none repeated), every op
// is there once with its version, in its key's order, and nothing else.
func expectAll(t *testing.T, st kvs.EventStream, perKey map[string][]op, last *int64) {
	t.Helper()
	total := 0
	for _, ops := range perKey {
		total += len(ops)
	}
	seen := map[string]int{}
	events := make(chan kvs.Event)
	errc := make(chan error, 1)
	go func() {
		for range total {
			e, err := st.Next()
			if err != nil {
				errc <- err
				return
			}
			events <- e
		}
	}()
	for n := range total {
		var e kvs.Event
		select {
		case e = <-events:
		case err := <-errc:
			t.Fatalf("after %d of %d events: %v", n, total, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d events within 30s", n, total)
		}
		if e.Version <= *last {
			t.Fatalf("event %d (%s %s) after %d: out of order or repeated", e.Version, e.Type, e.Key, *last)
		}
		*last = e.Version
		ops := perKey[e.Key]
		i := seen[e.Key]
		if i >= len(ops) {
			t.Fatalf("unexpected event %+v", e)
		}
		want := ops[i]
		if e.Type != want.typ || (want.version != 0 && e.Version != want.version) {
			t.Fatalf("event %d of %s: %s v%d, want %s v%d", i, e.Key, e.Type, e.Version, want.typ, want.version)
		}
		seen[e.Key]++
	}
}

// TestE2EWatchAcrossServers: a watcher on server B sees every one of the
// PUTs and DELETEs racing through server A, in order, none missing, none
// repeated; then B restarts while A goes on writing, and the same watch
// reconnects and resumes without missing or repeating anything.
func TestE2EWatchAcrossServers(t *testing.T) {
	db := pgtest.Database(t)
	schema := pgtest.Schema(t, db)
	d := testPKI(t, false)
	storeA := openPostgres(t, db, schema, postgres.Options{MaxConns: 6})
	a := newTestClient(t, d, startServer(t, d, storeA, nil).addr, nil)
	storeB := openPostgres(t, db, schema, postgres.Options{MaxConns: 4})
	tsB := startServer(t, d, storeB, nil)
	b := newTestClient(t, d, tsB.addr, nil)

	st, err := b.WatchWith(t.Context(), client.WatchRequest{Prefix: "w/", After: kvs.WatchFromNow})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := a.Put(t.Context(), "other/x", []byte("not watched"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	last := st.Last()
	expectAll(t, st, writeMany(t, a, "w/", 4, 30), &last)

	// Restart B on the same address; A writes while B is down.
	tsB.stop()
	more := writeMany(t, a, "w/", 3, 12)
	storeB2 := openPostgres(t, db, schema, postgres.Options{MaxConns: 4})
	startServerAt(t, d, storeB2, tsB.addr, nil)
	expectAll(t, st, more, &last)
	if st.Last() != last {
		t.Fatalf("Last() = %d, want %d", st.Last(), last)
	}
}

// TestE2EWatchCompacted: past the retention a watch answers 410 Gone with
// the oldest revision it may resume after, and resuming there works.
func TestE2EWatchCompacted(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) {
		c.WatchRetention = kvs.Retention{Revisions: 5}
		c.WatchPruneInterval = 20 * time.Millisecond
	})
	c := newTestClient(t, d, ts.addr, nil)
	var vs []int64
	for i := range 20 {
		v, err := c.Put(t.Context(), fmt.Sprintf("k/%d", i), []byte("v"), kvs.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	first := vs[0]
	// Keeping the last 5 changes forgets up to the 15th put.
	var ce *kvs.CompactedError
	waitFor(t, 10*time.Second, "the log to be pruned", func() bool {
		st, err := c.Watch(t.Context(), "k/", first)
		if err == nil {
			st.Close()
		}
		return errors.As(err, &ce) && ce.Oldest == vs[14]
	})
	if ce.Oldest <= first {
		t.Fatalf("oldest revision %d, want past %d", ce.Oldest, first)
	}
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	resp, err := hc.Get(serverURL(ts.addr) + kvs.WatchPath + "?prefix=k/&rev=" + fmt.Sprint(first))
	if err != nil {
		t.Fatal(err)
	}
	var body kvs.CompactedResponse
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone || body.Oldest != ce.Oldest || !strings.Contains(body.Error, "compacted") {
		t.Fatalf("raw watch of a compacted revision: %d %+v, want 410 with oldest_revision %d", resp.StatusCode, body, ce.Oldest)
	}
	st, err := c.Watch(t.Context(), "k/", ce.Oldest)
	if err != nil {
		t.Fatalf("watch after the oldest revision: %v", err)
	}
	defer st.Close()
	if e, err := st.Next(); err != nil || e.Version <= ce.Oldest {
		t.Fatalf("first event after the oldest revision: %+v, %v", e, err)
	}
}

// TestE2EWatchPolicy: a watch needs read on a prefix inside the identity's
// prefixes; outside it is 403 and shows nothing. The negative control is
// the same watch by an identity allowed there.
func TestE2EWatchPolicy(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) {
		c.PolicyFile = writePolicy(t, "identities:\n  client:\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n  eve:\n    prefixes: [\"eve/\"]\n    operations: [read, write, list]\n")
	})
	owner := newTestClient(t, d, ts.addr, nil)
	eveFiles := signLeaf(t, d, "eve", nil)
	eve := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.Files = eveFiles })
	for _, prefix := range []string{"", "e", "client/", "eve"} {
		if st, err := eve.Watch(t.Context(), prefix, kvs.WatchFromNow); !errors.Is(err, kvs.ErrForbidden) {
			if st != nil {
				st.Close()
			}
			t.Errorf("eve watches %q: %v, want 403", prefix, err)
		}
	}
	if _, err := eve.WatchWith(t.Context(), client.WatchRequest{Key: "client/secret", After: kvs.WatchFromNow}); !errors.Is(err, kvs.ErrForbidden) {
		t.Errorf("eve watches the key client/secret: %v, want 403", err)
	}
	hc := httpClient(t, clientTLS(t, eveFiles, nil), false)
	for q, want := range map[string]int{"client/": http.StatusForbidden, "eve/": http.StatusOK} {
		resp, err := hc.Get(serverURL(ts.addr) + kvs.ListPath + "?wait=10ms&index=0&prefix=" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("eve long-polls %s: %d, want %d", q, resp.StatusCode, want)
		}
	}
	// Negative control: inside her prefix, and the owner everywhere.
	st, err := eve.Watch(t.Context(), "eve/", kvs.WatchFromNow)
	if err != nil {
		t.Fatalf("eve watches eve/: %v", err)
	}
	defer st.Close()
	all, err := owner.Watch(t.Context(), "", kvs.WatchFromNow)
	if err != nil {
		t.Fatalf("the owner watches everything: %v", err)
	}
	defer all.Close()
	if _, err := owner.Put(t.Context(), "client/secret", []byte("s"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	v, err := eve.Put(t.Context(), "eve/x", []byte("x"), kvs.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := st.Next(); err != nil || e.Key != "eve/x" || e.Version != v {
		t.Fatalf("eve's watch: %+v, %v; want only eve/x v%d", e, err, v)
	}
	if e, err := all.Next(); err != nil || e.Key != "client/secret" {
		t.Fatalf("owner's watch: %+v, %v", e, err)
	}
}

// TestE2EWatchBadInput: unknown parameters, bad revisions and prefixes, a
// revision in the future and a bad long poll are 400 with a clear message.
func TestE2EWatchBadInput(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, nil)
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	for _, tc := range []struct{ query, want string }{
		{"/v1/watch?prefix=a&bogus=1", `unknown parameter "bogus"`},
		{"/v1/watch?prefix=a&key=b", "prefix or key, not both"},
		{"/v1/watch?prefix=a&rev=-1", "rev must be a revision"},
		{"/v1/watch?prefix=a&rev=abc", "rev must be a revision"},
		{"/v1/watch?prefix=a&rev=999999999", "revision in the future"},
		{"/v1/watch?prefix=a&values=maybe", "values must be true or false"},
		{"/v1/watch?key=", "invalid key"},
		{"/v1/watch?prefix=" + url.QueryEscape("a\x00"), "invalid key"},
		{"/v1/kv?prefix=a&wait=-1s&index=1", "wait must be a duration"},
		{"/v1/kv?prefix=a&wait=1h&index=1", "wait must be a duration"},
		{"/v1/kv?prefix=a&wait=1s&index=x", "index must be a revision"},
		{"/v1/kv?prefix=a&wait=1s&bogus=1", `unknown parameter "bogus"`},
	} {
		resp, err := hc.Get(serverURL(ts.addr) + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var body kvs.ErrorResponse
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.Error, tc.want) {
			t.Errorf("%s: %d %q, want 400 saying %q", tc.query, resp.StatusCode, body.Error, tc.want)
		}
	}
}

// TestE2EWatchNeverReads: a watcher that never reads its stream is dropped
// and counted once its buffer or its connection is full; the server does
// not keep buffering for it.
func TestE2EWatchNeverReads(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) {
		c.WatchBuffer = 16
		c.WatchWriteTimeout = 500 * time.Millisecond
		c.MaxValue = 1 << 20
	})
	cfg := clientTLS(t, clientFiles(t, d), nil)
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /v1/watch?prefix=big/ HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, d, ts.addr, nil)
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	metric := func(series string) float64 { return scrape(t, hc, ts.addr, series) }
	waitFor(t, 10*time.Second, "the watch to open", func() bool { return metric("kvs_watchers") == 1 })
	value := make([]byte, 256<<10)
	for i := 0; metric("kvs_watchers") == 1; i++ {
		if i > 400 {
			t.Fatal("the watcher that never reads was not dropped after 400 changes of 256 KiB")
		}
		if _, err := c.Put(t.Context(), fmt.Sprintf("big/%d", i%8), value, kvs.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	dropped := metric(`kvs_watch_dropped_total{reason="slow_reader"}`) + metric(`kvs_watch_dropped_total{reason="write_timeout"}`)
	if dropped != 1 {
		t.Fatalf("kvs_watch_dropped_total = %v, want 1", dropped)
	}
	if !strings.Contains(ts.Logs(), "watch dropped") {
		t.Error("no log line says why the watch was dropped")
	}
}

// scrape reads one series of the /metrics of the server at addr (0 when
// absent).
func scrape(t *testing.T, hc *http.Client, addr, series string) float64 {
	t.Helper()
	resp, err := hc.Get(serverURL(addr) + kvs.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return metricValue(string(text), series)
}

// TestE2ELongPoll: GET /v1/kv?prefix=P&index=N&wait=D answers at once
// without an index, as soon as a change under P follows N, and at the
// timeout with the same index when nothing changed.
func TestE2ELongPoll(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, nil)
	c := newTestClient(t, d, ts.addr, nil)
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	poll := func(query string) (int64, kvs.ListResponse, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := hc.Get(serverURL(ts.addr) + kvs.ListPath + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var lr kvs.ListResponse
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&lr) != nil {
			t.Fatalf("%s: %d", query, resp.StatusCode)
		}
		var idx int64
		fmt.Sscan(resp.Header.Get(kvs.HeaderIndex), &idx)
		return idx, lr, time.Since(start)
	}
	if _, err := c.Put(t.Context(), "lp/a", []byte("1"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	idx, lr, _ := poll("prefix=lp/&wait=5s")
	if idx == 0 || len(lr.Keys) != 1 {
		t.Fatalf("poll without index: index %d, %d keys", idx, len(lr.Keys))
	}
	same, _, took := poll(fmt.Sprintf("prefix=lp/&wait=200ms&index=%d", idx))
	if same != idx || took < 200*time.Millisecond {
		t.Fatalf("poll with nothing changed: index %d after %v, want %d after the 200ms wait", same, took, idx)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = c.Put(context.Background(), "other/x", []byte("not under lp/"), kvs.Cond{})
		_, _ = c.Put(context.Background(), "lp/b", []byte("2"), kvs.Cond{})
	}()
	next, lr, _ := poll(fmt.Sprintf("prefix=lp/&wait=20s&index=%d", idx))
	if next <= idx || len(lr.Keys) != 2 {
		t.Fatalf("poll woken by lp/b: index %d (was %d), %d keys; want a later index and 2 keys", next, idx, len(lr.Keys))
	}
}
