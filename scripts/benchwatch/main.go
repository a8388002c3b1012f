// Command benchwatch measures watches on two 'kvsctl serve' over one
// PostgreSQL database ('make bench-watch'; figures in docs/performance.md,
// section Watch):
//
//  1. memory: server B's resident memory and Go heap+stacks before and
//     after W idle watchers connect (each over its own HTTP/1.1 TLS
//     connection), per watcher;
//  2. delivery: R PUTs/s through server A for D while the W watchers on B
//     each watch a prefix of their own that 1/W of the PUTs fall under:
//     every watcher must receive every change under its prefix, in order,
//     none repeated; PUT-to-event latency (from before the PUT is sent to
//     the event's arrival) p50/p99/max;
//  3. throughput: PUTs/s through A by 16 back-to-back writers with no
//     watcher, then with 100 watchers on A (one change each per 100 PUTs),
//     alternating, and the ratio.
//
// Usage:
//
//	go run ./scripts/benchwatch [-bin bin/kvsctl] [-watchers 1000] [-rate 1000] [-duration 20s]
//
// PostgreSQL comes from KVS_TEST_DATABASE (default
// postgres://postgres@127.0.0.1:5432/test); a database of its own is made
// on that server and dropped afterwards.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

func main() {
	bin := flag.String("bin", "bin/kvsctl", "the kvsctl binary")
	watchers := flag.Int("watchers", 1000, "idle and delivery watchers on server B")
	rate := flag.Int("rate", 1000, "PUTs per second through server A")
	duration := flag.Duration("duration", 20*time.Second, "how long the PUTs go on")
	tput := flag.Duration("throughput", 10*time.Second, "each throughput round")
	h2 := flag.Bool("http2", false, "watchers share HTTP/2 connections instead of one HTTP/1.1 connection each")
	flag.Parse()
	if err := run(*bin, *watchers, *rate, *duration, *tput, *h2); err != nil {
		log.Fatal(err)
	}
}

var listening = regexp.MustCompile(`listening on https://(127\.0\.0\.1:\d+)|"addr":"(127\.0\.0\.1:\d+)"`)

type server struct {
	cmd     *exec.Cmd
	addr    string
	metrics string // the plain-HTTP /metrics address
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startServe(bin, dir, store string) (*server, error) {
	m, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--dir", dir, "--store", store, "--max-conns", "0", "--metrics-listen", m)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if mm := listening.FindStringSubmatch(sc.Text()); mm != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return &server{cmd: cmd, addr: mm[1] + mm[2], metrics: m}, nil
		}
	}
	return nil, fmt.Errorf("serve exited before listening")
}

func (s *server) rssKiB() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func newClient(dir, addr string, h2 bool) (*client.Client, error) {
	files, err := pki.Dir(dir).ClientFiles()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return client.New(client.Config{Server: "localhost:" + port, Files: files, Timeout: 30 * time.Second, MaxIdle: 2000, HTTP2: h2})
}

// metric reads one series of a server's /metrics.
func (s *server) metric(series string) float64 {
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func run(bin string, nWatch, rate int, duration, tput time.Duration, h2 bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := os.Getenv("KVS_TEST_DATABASE")
	if db == "" {
		db = "postgres://postgres@127.0.0.1:5432/test"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "kvs_benchwatch_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return err
	}
	defer admin.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)") //nolint:errcheck // best effort
	u, _ := url.Parse(db)
	u.Path = "/" + name
	store := u.String()

	tmp, err := os.MkdirTemp("", "benchwatch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "pki")
	if out, err := exec.Command(bin, "pki", "init", "--dir", dir, "--hosts", "localhost,127.0.0.1").CombinedOutput(); err != nil {
		return fmt.Errorf("pki init: %v: %s", err, out)
	}
	a, err := startServe(bin, dir, store)
	if err != nil {
		return err
	}
	defer a.cmd.Process.Kill()
	bsrv, err := startServe(bin, dir, store)
	if err != nil {
		return err
	}
	defer bsrv.cmd.Process.Kill()
	ca, err := newClient(dir, a.addr, false)
	if err != nil {
		return err
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("# watch benchmark, %s, load average before: %s", time.Now().UTC().Format(time.RFC3339), load)
	proto := "one HTTP/1.1 connection each"
	if h2 {
		proto = "sharing HTTP/2 connections"
	}
	fmt.Printf("servers A %s and B %s on one PostgreSQL database; %d watchers on B (%s), %d PUT/s through A for %s\n\n", a.addr, bsrv.addr, nWatch, proto, rate, duration)

	// 1. Memory of idle watchers.
	time.Sleep(time.Second)
	rss0 := bsrv.rssKiB()
	heap0 := bsrv.metric("go_memstats_heap_inuse_bytes") + bsrv.metric("go_memstats_stack_inuse_bytes")
	type watcher struct {
		w      *client.Watch
		prefix string
		got    int64
		last   int64
		bad    string
		lat    []uint32 // counts by 0.5ms bucket; the last is everything above
	}
	ws := make([]*watcher, nWatch)
	shared, err := newClient(dir, bsrv.addr, true)
	if err != nil {
		return err
	}
	for i := range ws {
		wc := shared // HTTP/2: streams share connections
		if !h2 {
			if wc, err = newClient(dir, bsrv.addr, false); err != nil { // a connection of its own
				return err
			}
		}
		p := fmt.Sprintf("w/%04d/", i)
		w, err := wc.WatchWith(ctx, client.WatchRequest{Prefix: p, After: kvs.WatchFromNow})
		if err != nil {
			return fmt.Errorf("watcher %d: %w", i, err)
		}
		ws[i] = &watcher{w: w, prefix: p, last: w.Last(), lat: make([]uint32, 2001)}
	}
	for bsrv.metric("kvs_watchers") < float64(nWatch) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	rss1 := bsrv.rssKiB()
	heap1 := bsrv.metric("go_memstats_heap_inuse_bytes") + bsrv.metric("go_memstats_stack_inuse_bytes")
	fmt.Printf("## idle watchers\n\nserver B resident memory %d MiB -> %d MiB with %d idle watchers: %.1f KiB per watcher (Go heap+stacks: %.1f KiB per watcher)\n\n",
		rss0/1024, rss1/1024, nWatch, float64(rss1-rss0)/float64(nWatch), (heap1-heap0)/1024/float64(nWatch))

	// 2. Delivery and latency.
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			for {
				e, err := w.w.Next()
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				sent, _ := strconv.ParseInt(string(e.Value), 10, 64)
				us := (now - sent) / 500_000
				w.lat[min(us, 2000)]++
				if e.Version <= w.last || !strings.HasPrefix(e.Key, w.prefix) {
					w.bad = fmt.Sprintf("event %d %s after %d", e.Version, e.Key, w.last)
				}
				w.last = e.Version
				atomic.AddInt64(&w.got, 1)
			}
		})
	}
	var sent, failed atomic.Int64
	perKey := make([]atomic.Int64, nWatch)
	start := time.Now()
	const writers = 16
	var pw sync.WaitGroup
	for g := range writers {
		pw.Go(func() {
			interval := time.Duration(int64(time.Second) * writers / int64(rate))
			next := start.Add(time.Duration(g) * interval / writers)
			for i := g; time.Since(start) < duration; i += writers {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				k := i % nWatch
				v := strconv.FormatInt(time.Now().UnixNano(), 10)
				if _, err := ca.Put(ctx, fmt.Sprintf("w/%04d/k", k), []byte(v), kvs.Cond{}); err != nil {
					failed.Add(1)
					continue
				}
				sent.Add(1)
				perKey[k].Add(1)
			}
		})
	}
	pw.Wait()
	elapsed := time.Since(start)
	deadline := time.Now().Add(30 * time.Second)
	complete := func() bool {
		for i, w := range ws {
			if atomic.LoadInt64(&w.got) < perKey[i].Load() {
				return false
			}
		}
		return true
	}
	for !complete() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	var missing, extra, bad int64
	total := make([]uint64, 2001)
	for i, w := range ws {
		got := atomic.LoadInt64(&w.got)
		if d := perKey[i].Load() - got; d > 0 {
			missing += d
		} else {
			extra -= d
		}
		if w.bad != "" {
			bad++
		}
		for j, n := range w.lat {
			total[j] += uint64(n)
		}
	}
	q := func(p float64) string {
		var n, all uint64
		for _, c := range total {
			all += c
		}
		for j, c := range total {
			n += c
			if float64(n) >= p*float64(all) {
				if j == 2000 {
					return ">1s"
				}
				return fmt.Sprintf("%.1f ms", float64(j+1)/2)
			}
		}
		return "-"
	}
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("## delivery\n\n%d PUTs through A in %s (%.0f/s), %d failed; events missing %d, extra %d, watchers out of order %d\n",
		sent.Load(), elapsed.Round(time.Millisecond), float64(sent.Load())/elapsed.Seconds(), failed.Load(), missing, extra, bad)
	fmt.Printf("PUT-to-event latency: p50 %s, p99 %s, p99.9 %s (0.5 ms buckets); load average after: %s\n", q(0.5), q(0.99), q(0.999), load)
	for _, w := range ws {
		w.w.Close()
	}
	wg.Wait()

	// 3. PUT throughput with and without watchers on A.
	round := func(label string) float64 {
		var n atomic.Int64
		t0 := time.Now()
		var g sync.WaitGroup
		for i := range 16 {
			g.Go(func() {
				for j := 0; time.Since(t0) < tput; j++ {
					if _, err := ca.Put(ctx, fmt.Sprintf("t/%02d/%d", (i*7+j)%100, j%10), []byte("x"), kvs.Cond{}); err == nil {
						n.Add(1)
					}
				}
			})
		}
		g.Wait()
		r := float64(n.Load()) / time.Since(t0).Seconds()
		fmt.Printf("PUT throughput %s: %.0f/s\n", label, r)
		return r
	}
	fmt.Printf("\n## PUT throughput through A, 16 writers, %s rounds\n\n", tput)
	var none, with []float64
	for r := range 2 {
		none = append(none, round(fmt.Sprintf("round %d, no watcher", r+1)))
		var tw []*client.Watch
		for i := range 100 {
			w, err := ca.WatchWith(ctx, client.WatchRequest{Prefix: fmt.Sprintf("t/%02d/", i), After: kvs.WatchFromNow})
			if err != nil {
				return err
			}
			tw = append(tw, w)
			go func() {
				for {
					if _, err := w.Next(); err != nil {
						return
					}
				}
			}()
		}
		with = append(with, round(fmt.Sprintf("round %d, 100 watchers on A", r+1)))
		for _, w := range tw {
			w.Close()
		}
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("ratio with 100 watchers / none: %.2f (load average after: %s)", mean(with)/mean(none), load)
	return nil
}
