package kvs

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgMaxBatch bounds the statements of one batch.
const pgMaxBatch = 128

// pgPutBatcher sends concurrent unconditional Puts to PostgreSQL together:
// the upserts that queue while every batch slot is busy go in one
// pipelined batch, which PostgreSQL runs as one implicit transaction, so
// they share a round trip, a commit and a WAL flush. A Put that finds a
// free slot goes at once, alone, as before. At most max batches are in
// flight, so that under load writes queue and group rather than each
// taking a pool connection.
//
// A Put is answered only after its batch has committed (the batch's final
// ReadyForQuery), never on its row alone. Rows are written in key order,
// so two batches cannot deadlock on each other's row locks. When the
// server rejects a statement it rolls the whole batch back and each Put
// runs again on its own, so only the bad one fails; when the server
// cannot be reached or does not answer, every Put of the batch fails as
// it would have alone.
type pgPutBatcher struct {
	s   *postgresStore
	max int

	mu      sync.Mutex
	queue   []*pgPut
	running int
}

type pgPut struct {
	ctx     context.Context
	key     string
	value   []byte
	version int64
	err     error
	done    chan struct{}
}

func (p *pgPut) finish(v int64, err error) {
	p.version, p.err = v, err
	close(p.done)
}

// pgBatchSlots is how many batches may be in flight at once: a few per
// CPU, and at most half of the pool, leaving connections for reads.
func pgBatchSlots(poolSize int32) int {
	return max(1, min(2*runtime.GOMAXPROCS(0), int(poolSize)/2))
}

// put stores value under key unconditionally and returns its version.
func (b *pgPutBatcher) put(ctx context.Context, key string, value []byte) (int64, error) {
	p := &pgPut{ctx: ctx, key: key, value: value, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.running < b.max {
		b.running++
		go b.drain()
	}
	b.mu.Unlock()
	<-p.done // bounded: every batch has the store's statement timeout
	return p.version, p.err
}

// drain sends batches until the queue is empty.
func (b *pgPutBatcher) drain() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), pgMaxBatch)
		if n == 0 {
			b.running--
			b.queue = nil
			b.mu.Unlock()
			return
		}
		batch := slices.Clone(b.queue[:n])
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.mu.Unlock()
		b.s.putBatch(batch)
	}
}

// putOne is an unconditional Put on its own.
func (s *postgresStore) putOne(ctx context.Context, key string, value []byte) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var version int64
	if err := s.pool.QueryRow(qctx, sqlUpsert, key, value).Scan(&version); err != nil {
		return 0, s.fail(ctx, "postgres put", err)
	}
	return version, nil
}

// putBatch runs the upserts of batch in one pipelined implicit
// transaction and answers each Put.
func (s *postgresStore) putBatch(batch []*pgPut) {
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.finish(0, fmt.Errorf("postgres put: %w", err)) // gave up while queued: not written
			continue
		}
		live = append(live, p)
	}
	if len(live) == 1 {
		p := live[0]
		p.finish(s.putOne(p.ctx, p.key, p.value))
		return
	}
	if len(live) == 0 {
		return
	}
	slices.SortStableFunc(live, func(a, b *pgPut) int { return strings.Compare(a.key, b.key) })

	// The batch belongs to no single caller: one giving up must not
	// cancel the others' writes.
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	var pb pgx.Batch
	for _, p := range live {
		pb.Queue(sqlUpsert, p.key, p.value)
	}
	br := s.pool.SendBatch(ctx, &pb)
	versions := make([]int64, len(live))
	var err error
	for i := range live {
		if err = br.QueryRow().Scan(&versions[i]); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr // the commit itself failed
	}
	if err == nil {
		for i, p := range live {
			p.finish(versions[i], nil)
		}
		return
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !pgUnavailable(pgErr.Code) {
		// The server refused a statement and rolled the batch back:
		// nothing was written. Each Put runs again alone, so only the
		// one at fault fails.
		var wg sync.WaitGroup
		for _, p := range live {
			wg.Go(func() { p.finish(s.putOne(p.ctx, p.key, p.value)) })
		}
		wg.Wait()
		return
	}
	for _, p := range live {
		p.finish(0, s.fail(p.ctx, "postgres put", err))
	}
}
