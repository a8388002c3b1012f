package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/kvsctl/kvsctl/kvs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgMaxBatch bounds the operations of one batch.
const pgMaxBatch = 128

// pgBatcher groups concurrent operations of one kind so that they share a
// round trip to PostgreSQL (one write and one read on each side instead of
// one per operation): Puts as a pipelined pgx batch, which PostgreSQL runs
// as one implicit transaction with one commit and WAL flush, and Gets as
// one statement over all their keys. An operation that
// finds one of max batch slots free goes at once, alone; operations that
// arrive while every slot is busy queue, and a slot that frees takes all
// of them (up to pgMaxBatch). So at rest nothing waits, and under load
// operations group rather than each taking a pool connection.
type pgBatcher[R any] struct {
	max int
	run func([]*R) // answers every request of the batch

	mu      sync.Mutex
	queue   []*R
	running int
}

// submit queues r and makes sure a slot will run it.
func (b *pgBatcher[R]) submit(r *R) {
	b.mu.Lock()
	b.queue = append(b.queue, r)
	if b.running < b.max {
		b.running++
		go b.drain()
	}
	b.mu.Unlock()
}

// drain runs batches until the queue is empty.
func (b *pgBatcher[R]) drain() {
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
		b.run(batch)
	}
}

// pgBatchSlots is how many batches of one kind may be in flight at once:
// one per two CPUs, and at most half of the pool, leaving connections for
// the other operations. Fewer slots make bigger batches: on 2 CPUs shared
// with PostgreSQL, one slot served 18,800 GETs/s against 15,300 with four
// and 13,000 with eight, and 12,200 PUTs/s against 10,600 and 8,900
// (kvsctl bench, 32 HTTP/1.1 clients, pool of 32).
func pgBatchSlots(poolSize int32) int {
	return max(1, min(runtime.GOMAXPROCS(0)/2, int(poolSize)/2))
}

// Unconditional Puts go through a pgBatcher. A Put is answered only after
// its batch has committed (the batch's final ReadyForQuery), never on its
// row alone. Rows are written in key order, so two batches cannot deadlock
// on each other's row locks. When the server rejects a statement it rolls
// the whole batch back and each Put runs again on its own, so only the bad
// one fails; when the server cannot be reached or does not answer, every
// Put of the batch fails as it would have alone.
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

// put stores value under key unconditionally and returns its version.
func (s *Store) put(ctx context.Context, key string, value []byte) (int64, error) {
	p := &pgPut{ctx: ctx, key: key, value: value, done: make(chan struct{})}
	s.puts.submit(p)
	<-p.done // bounded: every batch has the store's statement timeout
	return p.version, p.err
}

// putOne is an unconditional Put on its own.
func (s *Store) putOne(ctx context.Context, key string, value []byte) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	version, err := putTx(qctx, s.pool, key, value, kvs.Cond{}, pgLease{})
	if err != nil {
		return 0, s.fail(ctx, "postgres put", err)
	}
	return version, nil
}

// putBatch runs the upserts of batch in one pipelined implicit
// transaction and answers each Put.
func (s *Store) putBatch(batch []*pgPut) {
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

// Gets go through a pgBatcher too: under load, the Gets that queue while
// every slot is busy are answered by one SELECT over their keys.
type pgGet struct {
	ctx   context.Context
	key   string
	entry kvs.Entry
	err   error
	done  chan struct{}
}

func (g *pgGet) finish(e kvs.Entry, err error) {
	g.entry, g.err = e, err
	close(g.done)
}

// get returns the entry of key.
func (s *Store) get(ctx context.Context, key string) (kvs.Entry, error) {
	g := &pgGet{ctx: ctx, key: key, done: make(chan struct{})}
	s.gets.submit(g)
	<-g.done // bounded: every batch has the store's statement timeout
	return g.entry, g.err
}

// getOne is a Get on its own.
func (s *Store) getOne(ctx context.Context, key string) (kvs.Entry, error) {
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	e := kvs.Entry{Key: key}
	if err := s.pool.QueryRow(qctx, sqlGet, key).Scan(&e.Value, &e.Version, &e.Updated); err != nil {
		return kvs.Entry{}, s.fail(ctx, "postgres get", err)
	}
	return finishEntry(e), nil
}

func finishEntry(e kvs.Entry) kvs.Entry {
	if e.Value == nil {
		e.Value = []byte{}
	}
	e.Updated = e.Updated.UTC()
	return e
}

// getBatch answers every Get of batch with one SELECT over the distinct
// keys (sqlGetMany): one statement to bind, plan and execute instead of
// one per Get, which is what PostgreSQL spends most of a small read on.
// The statement takes its snapshot when it starts, after every Get of the
// batch was submitted, so each still sees every Put that completed before
// it started. Keys are valid UTF-8 without NUL (kvs.ValidateKey), so no key
// can make the statement fail for the others: an error fails every Get of
// the batch, as it would have failed each alone.
func (s *Store) getBatch(batch []*pgGet) {
	live := batch[:0]
	for _, g := range batch {
		if err := g.ctx.Err(); err != nil {
			g.finish(kvs.Entry{}, fmt.Errorf("postgres get: %w", err))
			continue
		}
		live = append(live, g)
	}
	if len(live) == 1 {
		g := live[0]
		g.finish(s.getOne(g.ctx, g.key))
		return
	}
	if len(live) == 0 {
		return
	}
	keys := make([]string, len(live))
	for i, g := range live {
		keys[i] = g.key
	}
	slices.Sort(keys)
	found, err := s.getMany(slices.Compact(keys))
	for _, g := range live {
		switch e, ok := found[g.key]; {
		case err != nil:
			g.finish(kvs.Entry{}, s.fail(g.ctx, "postgres get", err))
		case ok:
			g.finish(e, nil)
		default:
			g.finish(kvs.Entry{}, kvs.ErrNotFound)
		}
	}
}

// getMany reads the rows of the distinct keys, by key; a key without a
// row is absent. The batch belongs to no single caller, so it runs under
// its own statement timeout.
func (s *Store) getMany(keys []string) (map[string]kvs.Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, sqlGetMany, keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[string]kvs.Entry, len(keys))
	for rows.Next() {
		var e kvs.Entry
		if err := rows.Scan(&e.Key, &e.Value, &e.Version, &e.Updated); err != nil {
			return nil, err
		}
		found[e.Key] = finishEntry(e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return found, nil
}
