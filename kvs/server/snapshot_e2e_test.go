package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
	snapfmt "github.com/kvsctl/kvsctl/kvs/snapshot"
)

// ackedWrite is a PUT the server answered, with the version it gave.
type ackedWrite struct {
	key     string
	value   string
	version int64
	before  bool // acknowledged before the snapshot was asked for
}

// TestE2ESnapshotUnderLoad takes a snapshot through the server while 4
// writers keep writing, then compares it with the log of acknowledged
// writes. bolt orders commits by revision, so the snapshot is exactly,
// for each key, the last write at or below its revision. PostgreSQL
// draws revisions before commit, so there a write just below the
// revision may commit after the snapshot began; the test checks what
// holds there: every entry is a logged write at or below the revision,
// no write acknowledged before the request is missing or replaced by an
// older one, and the keys of the snapshot are exactly those with such a
// write.
func TestE2ESnapshotUnderLoad(t *testing.T) {
	d := testPKI(t, false)
	for _, name := range []string{"bolt", "postgres"} {
		t.Run(name, func(t *testing.T) {
			var store kvs.Store
			if name == "postgres" {
				db := pgtest.Database(t)
				store = openPostgres(t, db, pgtest.Schema(t, db), postgres.Options{})
			}
			ts := startServer(t, d, store, nil)
			c := newTestClient(t, d, ts.addr, nil)
			ctx := t.Context()
			// Keys that only make the snapshot take a while.
			const fill = 10000
			for i := 0; i < fill; i += 100 {
				var ops []kvs.Op
				for j := i; j < i+100; j++ {
					ops = append(ops, kvs.Op{Kind: kvs.OpPut, Key: fmt.Sprintf("fill/%05d", j), Value: bytes.Repeat([]byte("f"), 100)})
				}
				if _, err := ts.store.(kvs.Txner).Txn(ctx, kvs.Txn{Success: ops}); err != nil {
					t.Fatal(err)
				}
			}
			const writers, keysPer = 4, 50
			var (
				mu      sync.Mutex
				log     []ackedWrite
				asked   bool
				wg      sync.WaitGroup
				stop    = make(chan struct{})
				started = make(chan struct{}, writers)
			)
			for w := range writers {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						key := fmt.Sprintf("w%d/k%03d", w, i%keysPer)
						value := fmt.Sprintf("%d-%d", w, i)
						v, err := c.Put(ctx, key, []byte(value), kvs.Cond{})
						if err != nil {
							t.Errorf("put: %v", err)
							return
						}
						mu.Lock()
						log = append(log, ackedWrite{key, value, v, !asked})
						mu.Unlock()
						if i == keysPer {
							started <- struct{}{}
						}
					}
				})
			}
			for range writers {
				<-started
			}
			mu.Lock()
			asked = true
			mu.Unlock()
			body, err := c.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(body)
			body.Close()
			time.Sleep(50 * time.Millisecond) // writes after the snapshot, too
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			r, err := snapfmt.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			rev := r.Header().Revision
			got := map[string]kvs.SnapshotEntry{}
			fills := 0
			for {
				e, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if bytes.HasPrefix([]byte(e.Key), []byte("fill/")) {
					fills++
					continue
				}
				got[e.Key] = e
			}
			if fills != fill {
				t.Errorf("%d fill keys in the snapshot, want %d", fills, fill)
			}
			// What the log says the store held at rev.
			type write struct {
				value   string
				version int64
			}
			byVersion := map[string]map[int64]string{}
			want := map[string]write{}   // the last write <= rev
			before := map[string]int64{} // the last write acknowledged before the request
			for _, w := range log {
				if byVersion[w.key] == nil {
					byVersion[w.key] = map[int64]string{}
				}
				byVersion[w.key][w.version] = w.value
				if w.version <= rev && w.version > want[w.key].version {
					want[w.key] = write{w.value, w.version}
				}
				if w.before && w.version > before[w.key] {
					before[w.key] = w.version
				}
			}
			after := 0
			for _, w := range log {
				if w.version > rev {
					after++
				}
			}
			t.Logf("%s: %d acknowledged writes, %d of them after the snapshot's revision %d; %d keys in the snapshot",
				name, len(log), after, rev, len(got))
			if after == 0 {
				t.Error("no write after the snapshot: the load did not overlap it")
			}
			for key, e := range got {
				if e.Version > rev || byVersion[key][e.Version] != string(e.Value) {
					t.Errorf("%s: %q v%d in the snapshot is no acknowledged write at or below %d", name, key, e.Version, rev)
				}
				if e.Version < before[key] {
					t.Errorf("%s: %q v%d in the snapshot, older than v%d acknowledged before it was asked for", name, key, e.Version, before[key])
				}
				if name == "bolt" && (e.Version != want[key].version || string(e.Value) != want[key].value) {
					t.Errorf("bolt: %q = %q v%d, want the last write at or below %d: %q v%d", key, e.Value, e.Version, rev, want[key].value, want[key].version)
				}
			}
			for key := range before {
				if _, ok := got[key]; !ok {
					t.Errorf("%s: %q, written before the snapshot was asked for, is missing", name, key)
				}
			}
			if name == "bolt" {
				for key := range want {
					if _, ok := got[key]; !ok {
						t.Errorf("bolt: %q has a write at or below %d but is not in the snapshot", key, rev)
					}
				}
			}
		})
	}
}
