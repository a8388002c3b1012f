package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// Defaults of a run.
const (
	DefaultClients   = 32
	DefaultValueSize = 100
	DefaultKeys      = 10_000
	DefaultListPage  = 10
	DefaultDuration  = 10 * time.Second
)

// KeyBase is the number of the first key: key i is the decimal string of
// KeyBase+i, so every key has the same length and a SQL script (pgbench)
// can produce the same keys with an integer variable.
const KeyBase = 10_000_000

// Key returns the name of key i of the keyspace.
func Key(i int) string { return strconv.Itoa(KeyBase + i) }

// Config describes a run.
type Config struct {
	// Client is the server address and TLS material; HTTP1, NewConn and
	// TLS.NoResume select the protocol, a connection per request and
	// session resumption. Each worker gets a client (and so connections)
	// of its own; they share one TLS session cache.
	Client client.Config

	Clients   int           // concurrent workers; 0 means DefaultClients
	Duration  time.Duration // how long to send; 0 with Requests 0 means DefaultDuration
	Requests  int64         // total requests to send (instead of Duration)
	ValueSize int           // bytes per PUT value; negative means DefaultValueSize
	Keys      int           // keyspace size; 0 means DefaultKeys
	Preload   bool          // PUT every key once before the timed run
	Op        Op            // "" means OpGet
	Mix       Mix           // weights for OpMixed; zero means DefaultMix
	ListPage  int           // page size of LIST requests; 0 means DefaultListPage
	Seed      uint64        // seed of the key and operation choices (0: random)

	// Progress, when set, is called every ProgressInterval (default 1s)
	// from a goroutine of its own while the timed run lasts.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Progress is a snapshot of a run in progress.
type Progress struct {
	Elapsed  time.Duration
	Requests int64   // completed so far, errors included
	Errors   int64   // failed so far
	RPS      float64 // successful requests per second over the last interval
	Done     float64 // fraction of the run done, from 0 to 1
}

// Latency summarises request latencies, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Result is the outcome of a run. Latencies and RPS count successful
// requests only.
type Result struct {
	Server    string           `json:"server"`
	Op        Op               `json:"op"`
	Mix       string           `json:"mix,omitempty"`
	Clients   int              `json:"clients"`
	ValueSize int              `json:"value_size"`
	Keys      int              `json:"keys"`
	Protocol  string           `json:"protocol"` // ALPN of the connections: h2 or http/1.1
	NewConn   bool             `json:"new_conn"`
	Resume    bool             `json:"resume"`
	Elapsed   float64          `json:"elapsed_s"`
	Requests  int64            `json:"requests"` // completed, errors included
	OK        int64            `json:"ok"`
	Errors    int64            `json:"errors"`
	ErrorKind map[string]int64 `json:"errors_by_kind"`
	ByOp      map[Op]int64     `json:"ok_by_op"`
	RPS       float64          `json:"rps"`
	Latency   Latency          `json:"latency"`

	// Handshakes counts TLS handshakes the clients made during the timed
	// run, and Resumed those that resumed a session.
	Handshakes int64 `json:"handshakes"`
	Resumed    int64 `json:"resumed"`

	// FirstError is the text of one error, to explain the error counts.
	FirstError string `json:"first_error,omitempty"`
}

func (c *Config) defaults() error {
	if c.Clients <= 0 {
		c.Clients = DefaultClients
	}
	if c.Duration < 0 || c.Requests < 0 {
		return errors.New("duration and requests cannot be negative")
	}
	if c.Duration == 0 && c.Requests == 0 {
		c.Duration = DefaultDuration
	}
	if c.Duration > 0 && c.Requests > 0 {
		return errors.New("give a duration or a number of requests, not both")
	}
	if c.ValueSize < 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.Keys <= 0 {
		c.Keys = DefaultKeys
	}
	if c.Op == "" {
		c.Op = OpGet
	}
	if _, err := ParseOp(string(c.Op)); err != nil {
		return err
	}
	if c.Mix.total() == 0 {
		c.Mix = DefaultMix
	}
	if c.ListPage <= 0 {
		c.ListPage = DefaultListPage
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	return nil
}

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

// Run preloads the keyspace if asked, then sends requests until the
// duration passes or the number of requests is reached, and returns the
// figures. A request error is counted, not returned; Run returns an error
// only when the run cannot start (bad configuration, TLS files, a failed
// preload). Cancelling ctx ends the run early with the figures so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	tlsCfg, err := sharedTLS(cfg.Client)
	if err != nil {
		return nil, err
	}
	if cfg.Preload {
		if err := preload(ctx, cfg, tlsCfg); err != nil {
			return nil, err
		}
	}

	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		cc := cfg.Client
		cc.TLSConfig = tlsCfg
		c, err := client.New(cc)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		value := make([]byte, cfg.ValueSize)
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		workers[i] = &worker{client: c, rng: rng, value: value, errs: map[string]int64{}, byOp: map[Op]int64{}}
	}

	var (
		stop   atomic.Bool
		issued atomic.Int64
		done   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	if cfg.Duration > 0 {
		t := time.AfterFunc(cfg.Duration, func() { stop.Store(true) })
		defer t.Stop()
	}
	for _, w := range workers {
		wg.Go(func() {
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
			rctx := httptrace.WithClientTrace(runCtx, trace)
			for !stop.Load() && runCtx.Err() == nil {
				if cfg.Requests > 0 && issued.Add(1) > cfg.Requests {
					return
				}
				op := cfg.Op
				if op == OpMixed {
					op = cfg.Mix.pick(w.rng.IntN(cfg.Mix.total()))
				}
				t0 := time.Now()
				err := w.do(rctx, op, cfg)
				d := time.Since(t0)
				if err != nil {
					if runCtx.Err() != nil {
						return // interrupted: not a server error
					}
					w.errs[ErrorKind(err)]++
					if w.firstErr == nil {
						w.firstErr = err
					}
					failed.Add(1)
				} else {
					w.hist.record(d)
					w.byOp[op]++
				}
				done.Add(1)
			}
		})
	}

	finished := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress != nil {
		pwg.Go(func() {
			t := time.NewTicker(cfg.ProgressInterval)
			defer t.Stop()
			last, lastAt := int64(0), start
			for {
				select {
				case <-finished:
					return
				case now := <-t.C:
					n, e := done.Load(), failed.Load()
					p := Progress{Elapsed: now.Sub(start), Requests: n, Errors: e}
					p.RPS = float64((n-e)-last) / now.Sub(lastAt).Seconds()
					last, lastAt = n-e, now
					if cfg.Duration > 0 {
						p.Done = min(float64(p.Elapsed)/float64(cfg.Duration), 1)
					} else {
						p.Done = min(float64(n)/float64(cfg.Requests), 1)
					}
					cfg.Progress(p)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(finished)
	pwg.Wait()

	r := &Result{
		Server: cfg.Client.Server, Op: cfg.Op, Clients: cfg.Clients, ValueSize: cfg.ValueSize, Keys: cfg.Keys,
		NewConn: cfg.Client.NewConn, Resume: tlsCfg.ClientSessionCache != nil,
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
	return r, nil
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
	}
	_, err := w.client.Get(ctx, key)
	return err
}

// preload writes every key once over keep-alive connections, whatever the
// run's connection settings.
func preload(ctx context.Context, cfg Config, tlsCfg *tls.Config) error {
	cc := cfg.Client
	cc.NewConn, cc.TLSConfig = false, tlsCfg
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
// its session cache): cc.TLSConfig, or one loaded from cc.Files. With
// NoResume it has no session cache.
func sharedTLS(cc client.Config) (*tls.Config, error) {
	cfg := cc.TLSConfig
	if cfg == nil {
		var err error
		if cfg, err = cc.Files.ClientConfig(cc.TLS); err != nil {
			return nil, err
		}
	}
	if cc.TLS.NoResume {
		cfg = cfg.Clone()
		cfg.ClientSessionCache = nil
	}
	return cfg, nil
}
