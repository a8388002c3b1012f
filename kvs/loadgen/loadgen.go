package loadgen

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

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
	// Client is the server address and TLS material; HTTP2, NewConn and
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
	workers, err := newWorkers(cfg, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, w := range workers {
			w.client.Close()
		}
	}()
	r := &run{cfg: cfg}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	if cfg.Duration > 0 {
		t := time.AfterFunc(cfg.Duration, func() { r.stop.Store(true) })
		defer t.Stop()
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { r.work(runCtx, w) })
	}
	finished := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress != nil {
		pwg.Go(func() { r.report(start, finished) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(finished)
	pwg.Wait()
	return summarize(cfg, workers, elapsed, tlsCfg().ClientSessionCache != nil), nil
}
