package loadgen

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// worker is the state of one concurrent client; only its goroutine writes
// it until the run ends.
type worker struct {
	client   *client.Client
	rng      *rand.Rand
	value    []byte
	hist     histogram
	errs     map[string]int64
	byOp     map[Op]int64
	firstErr error

	// Set from the transport's dial goroutines.
	handshakes atomic.Int64
	resumed    atomic.Int64
	proto      atomic.Pointer[string]
}

// newWorkers makes one worker per client, each with a client of its own
// sharing tlsCfg (and so its session cache), and a value of its own.
func newWorkers(cfg Config, tlsCfg func() *tls.Config) ([]*worker, error) {
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		cc := cfg.Client
		cc.TLSConfig, cc.TLSConfigFunc = nil, tlsCfg
		c, err := client.New(cc)
		if err != nil {
			for _, w := range workers[:i] {
				w.client.Close()
			}
			return nil, err
		}
		value := make([]byte, cfg.ValueSize)
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		workers[i] = &worker{client: c, rng: rng, value: value, errs: map[string]int64{}, byOp: map[Op]int64{}}
	}
	return workers, nil
}

// run is the state the workers of one timed run share.
type run struct {
	cfg    Config
	stop   atomic.Bool  // the duration has passed
	issued atomic.Int64 // requests started, against cfg.Requests
	done   atomic.Int64 // requests completed, errors included
	failed atomic.Int64 // requests failed
}

// work sends requests as w until the run ends, recording each.
func (r *run) work(ctx context.Context, w *worker) {
	trace := &httptrace.ClientTrace{TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
		if err != nil {
			return
		}
		w.handshakes.Add(1)
		if cs.DidResume {
			w.resumed.Add(1)
		}
		w.proto.CompareAndSwap(nil, &cs.NegotiatedProtocol)
	}}
	rctx := httptrace.WithClientTrace(ctx, trace)
	for !r.stop.Load() && ctx.Err() == nil {
		if r.cfg.Requests > 0 && r.issued.Add(1) > r.cfg.Requests {
			return
		}
		op := r.cfg.Op
		if op == OpMixed {
			op = r.cfg.Mix.pick(w.rng.IntN(r.cfg.Mix.total()))
		}
		t0 := time.Now()
		err := w.do(rctx, op, r.cfg)
		d := time.Since(t0)
		if err != nil {
			if ctx.Err() != nil {
				return // interrupted: not a server error
			}
			w.errs[ErrorKind(err)]++
			if w.firstErr == nil {
				w.firstErr = err
			}
			r.failed.Add(1)
		} else {
			w.hist.record(d)
			w.byOp[op]++
		}
		r.done.Add(1)
	}
}

// report calls cfg.Progress every ProgressInterval until finished closes.
func (r *run) report(start time.Time, finished <-chan struct{}) {
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-finished:
			return
		case now := <-t.C:
			n, e := r.done.Load(), r.failed.Load()
			p := Progress{Elapsed: now.Sub(start), Requests: n, Errors: e}
			p.RPS = float64((n-e)-last) / now.Sub(lastAt).Seconds()
			last, lastAt = n-e, now
			if r.cfg.Duration > 0 {
				p.Done = min(float64(p.Elapsed)/float64(r.cfg.Duration), 1)
			} else {
				p.Done = min(float64(n)/float64(r.cfg.Requests), 1)
			}
			r.cfg.Progress(p)
		}
	}
}

// summarize merges the workers' figures into the Result.
func summarize(cfg Config, workers []*worker, elapsed time.Duration, resume bool) *Result {
	r := &Result{
		Server: cfg.Client.Server, Op: cfg.Op, Clients: cfg.Clients, ValueSize: cfg.ValueSize, Keys: cfg.Keys,
		NewConn: cfg.Client.NewConn, Resume: resume,
		Elapsed: elapsed.Seconds(), ErrorKind: map[string]int64{}, ByOp: map[Op]int64{},
	}
	if cfg.Op == OpMixed {
		r.Mix = cfg.Mix.String()
	}
	var h histogram
	for _, w := range workers {
		h.merge(&w.hist)
		for k, n := range w.errs {
			r.ErrorKind[k] += n
			r.Errors += n
		}
		for op, n := range w.byOp {
			r.ByOp[op] += n
		}
		r.Handshakes += w.handshakes.Load()
		r.Resumed += w.resumed.Load()
		if p := w.proto.Load(); r.Protocol == "" && p != nil {
			r.Protocol = *p
		}
		if r.FirstError == "" && w.firstErr != nil {
			r.FirstError = w.firstErr.Error()
		}
	}
	if r.Protocol == "" && r.Handshakes > 0 {
		r.Protocol = "http/1.1" // no ALPN offered or chosen
	}
	r.OK = h.n
	r.Requests = r.OK + r.Errors
	if elapsed > 0 {
		r.RPS = float64(r.OK) / elapsed.Seconds()
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.Latency = Latency{
		P50: ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)),
		Max: ms(time.Duration(h.max)), Mean: ms(h.mean()),
	}
	return r
}

// do sends one request of kind op on a random key.
func (w *worker) do(ctx context.Context, op Op, cfg Config) error {
	key := Key(w.rng.IntN(cfg.Keys))
	switch op {
	case OpPut:
		_, err := w.client.Put(ctx, key, w.value, kvs.Cond{})
		return err
	case OpList:
		_, _, err := w.client.List(ctx, "", key, cfg.ListPage)
		return err
	case OpTxn:
		other := Key(w.rng.IntN(cfg.Keys))
		res, err := w.client.Txn(ctx, kvs.Txn{
			Compare: []kvs.Compare{{Key: key, Kind: kvs.CompareExists, Exists: true}, {Key: other, Kind: kvs.CompareExists, Exists: true}},
			Success: []kvs.Op{{Kind: kvs.OpPut, Key: key, Value: w.value}, {Kind: kvs.OpPut, Key: other, Value: w.value}},
		})
		if err == nil && !res.Succeeded {
			return errTxnCompare
		}
		return err
	}
	_, err := w.client.Get(ctx, key)
	return err
}

// preload writes every key once over keep-alive connections, whatever the
// run's connection settings.
func preload(ctx context.Context, cfg Config, tlsCfg func() *tls.Config) error {
	cc := cfg.Client
	cc.NewConn, cc.TLSConfig, cc.TLSConfigFunc = false, nil, tlsCfg
	var (
		next     atomic.Int64
		firstErr error
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	value := make([]byte, cfg.ValueSize)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1<<32))
	for j := range value {
		value[j] = byte(rng.Uint32())
	}
	for range min(cfg.Clients, cfg.Keys) {
		c, err := client.New(cc)
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer c.Close()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Keys || ctx.Err() != nil {
					return
				}
				if _, err := c.Put(ctx, Key(i), value, kvs.Cond{}); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("preload key %s: %w", Key(i), err)
					}
					mu.Unlock()
					next.Store(int64(cfg.Keys)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// sharedTLS is the TLS configuration every client of a run shares (and so
// its session cache), as a function of the moment: cc.TLSConfig, or the
// files of cc.Files as they are on disk (a long run picks up a renewed
// certificate or a rotated CA bundle). With NoResume it has no session
// cache.
func sharedTLS(cc client.Config) (func() *tls.Config, error) {
	if cfg := cc.TLSConfig; cfg != nil {
		if cc.TLS.NoResume {
			cfg = cfg.Clone()
			cfg.ClientSessionCache = nil
		}
		return func() *tls.Config { return cfg }, nil
	}
	ct, err := cc.Files.NewClientTLS(cc.TLS)
	if err != nil {
		return nil, err
	}
	return ct.Config, nil
}
