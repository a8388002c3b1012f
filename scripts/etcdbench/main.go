// Command etcdbench loads an etcd member with linearizable GETs or PUTs
// through etcd's own Go client (go.etcd.io/etcd/client/v3), the way
// 'kvsctl bench' loads kvsctl serve, and prints the same JSON fields
// (rps, requests, ok, errors, latency.p50_ms...), so that scripts/bench.sh
// can put the two side by side.
//
// It lives in a Go module of its own so that the product's go.mod never
// depends on etcd. Each of -clients workers has a client (and so a gRPC
// connection) of its own unless -conns says fewer; keys are the decimal
// numbers from 10,000,000 as in kvsctl bench, values -value-size random
// bytes.
//
//	go run . -endpoint https://127.0.0.1:2379 -cert client.crt -key client.key -ca ca.crt -op get -preload
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// keyBase is the number of the first key, as in kvs/loadgen.
const keyBase = 10_000_000

type config struct {
	endpoint           string
	cert, key, ca      string
	op                 string
	clients, conns     int
	keys, valueSize    int
	duration           time.Duration
	preload, serialize bool
}

// latency and result mirror the JSON of 'kvsctl bench --json'.
type latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

type result struct {
	Server      string  `json:"server"`
	System      string  `json:"system"`
	Op          string  `json:"op"`
	Consistency string  `json:"consistency"`
	Clients     int     `json:"clients"`
	Conns       int     `json:"conns"`
	ValueSize   int     `json:"value_size"`
	Keys        int     `json:"keys"`
	Protocol    string  `json:"protocol"`
	Elapsed     float64 `json:"elapsed_s"`
	Requests    int64   `json:"requests"`
	OK          int64   `json:"ok"`
	Errors      int64   `json:"errors"`
	RPS         float64 `json:"rps"`
	Latency     latency `json:"latency"`
	FirstError  string  `json:"first_error,omitempty"`
}

func main() {
	var c config
	flag.StringVar(&c.endpoint, "endpoint", "https://127.0.0.1:2379", "etcd client URL")
	flag.StringVar(&c.cert, "cert", "client.crt", "client certificate (leaf and intermediates)")
	flag.StringVar(&c.key, "key", "client.key", "client private key")
	flag.StringVar(&c.ca, "ca", "ca.crt", "CA bundle that signs the server's certificate")
	flag.StringVar(&c.op, "op", "get", "get or put")
	flag.IntVar(&c.clients, "clients", 32, "concurrent workers, one request in flight each")
	flag.IntVar(&c.conns, "conns", 0, "etcd clients (gRPC connections) shared by the workers; 0: one per worker")
	flag.IntVar(&c.keys, "keys", 10_000, "keyspace")
	flag.IntVar(&c.valueSize, "value-size", 100, "bytes per value")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run")
	flag.BoolVar(&c.preload, "preload", false, "put every key once before the timed run")
	flag.BoolVar(&c.serialize, "serializable", false, "serializable reads instead of linearizable")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "etcdbench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, out io.Writer) error {
	switch {
	case c.op != "get" && c.op != "put":
		return fmt.Errorf("unknown operation %q: use get or put", c.op)
	case c.clients < 1 || c.keys < 1 || c.valueSize < 0 || c.duration <= 0:
		return errors.New("clients, keys and duration must be positive")
	}
	if c.conns <= 0 || c.conns > c.clients {
		c.conns = c.clients
	}
	tc, err := tlsConfig(c)
	if err != nil {
		return err
	}
	cls := make([]*clientv3.Client, c.conns)
	for i := range cls {
		cl, err := clientv3.New(clientv3.Config{
			Endpoints: []string{c.endpoint}, TLS: tc, DialTimeout: 10 * time.Second,
			Logger: zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("connect to %s: %w", c.endpoint, err)
		}
		defer cl.Close()
		cls[i] = cl
	}
	if c.preload {
		if err := preload(ctx, c, cls); err != nil {
			return err
		}
	}
	r := measure(ctx, c, cls)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

func tlsConfig(c config) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("load client certificate: %w", err)
	}
	pem, err := os.ReadFile(c.ca)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", c.ca)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func value(n int, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

func preload(ctx context.Context, c config, cls []*clientv3.Client) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, c.clients)
	v := value(c.valueSize, 1)
	for w := range c.clients {
		cl := cls[w%len(cls)]
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(c.keys) {
					return
				}
				if _, err := cl.Put(ctx, strconv.Itoa(keyBase+int(i)), v); err != nil {
					errs <- fmt.Errorf("preload: %w", err)
					next.Store(int64(c.keys))
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

type worker struct {
	lat      []time.Duration
	errs     int64
	firstErr error
}

func measure(ctx context.Context, c config, cls []*clientv3.Client) *result {
	var stop atomic.Bool
	workers := make([]*worker, c.clients)
	var wg sync.WaitGroup
	start := time.Now()
	t := time.AfterFunc(c.duration, func() { stop.Store(true) })
	defer t.Stop()
	var opts []clientv3.OpOption
	if c.serialize {
		opts = append(opts, clientv3.WithSerializable())
	}
	for i := range workers {
		w := &worker{lat: make([]time.Duration, 0, 1<<16)}
		workers[i] = w
		cl := cls[i%len(cls)]
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
		v := value(c.valueSize, uint64(i)+2)
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				key := strconv.Itoa(keyBase + rng.IntN(c.keys))
				t0 := time.Now()
				var err error
				if c.op == "put" {
					_, err = cl.Put(ctx, key, v)
				} else {
					var resp *clientv3.GetResponse
					resp, err = cl.Get(ctx, key, opts...)
					if err == nil && len(resp.Kvs) == 0 {
						err = fmt.Errorf("key %s not found", key)
					}
				}
				if err != nil {
					w.errs++
					if w.firstErr == nil {
						w.firstErr = err
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := &result{
		Server: c.endpoint, System: "etcd", Op: c.op, Consistency: "linearizable",
		Clients: c.clients, Conns: c.conns, ValueSize: c.valueSize, Keys: c.keys,
		Protocol: "h2 (gRPC)", Elapsed: elapsed.Seconds(),
	}
	if c.serialize {
		r.Consistency = "serializable"
	}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		r.Errors += w.errs
		if r.FirstError == "" && w.firstErr != nil {
			r.FirstError = w.firstErr.Error()
		}
	}
	slices.Sort(all)
	r.OK = int64(len(all))
	r.Requests = r.OK + r.Errors
	r.RPS = float64(r.OK) / elapsed.Seconds()
	if len(all) > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		q := func(p float64) float64 { return ms(all[min(len(all)-1, int(p*float64(len(all))))]) }
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		r.Latency = latency{P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(all[len(all)-1]), Mean: ms(sum / time.Duration(len(all)))}
	}
	return r
}
