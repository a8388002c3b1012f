package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/stores"
	"github.com/kvsctl/kvsctl/pki"
)

// TestHostileAttacks runs one attack at a time against a server on the
// embedded store while a legitimate client keeps a steady load, and checks
// that the server stays up, every legitimate request succeeds and memory
// stays bounded. It logs, without asserting them, the legitimate client's
// p99 latency during each attack against its p99 without attack, and the
// process's peak RSS: figures for docs/reliability.md.
//
// Attacks: slowloris (an authenticated client trickling headers), 10,000
// idle TCP connections (2,000 under the race detector, which caps live
// goroutines at 8128), garbage bytes and truncated ClientHellos, oversized
// headers, values far over the limit, and 1 MiB keys.
func TestHostileAttacks(t *testing.T) {
	idle := 10000
	if raceEnabled {
		idle = 2000
	}
	// The idle connections come from a child process, so this process
	// needs a descriptor for the server's end of each only.
	if got := raiseNoFile(t, uint64(idle+2048)); got < uint64(idle+1024) {
		idle = int(got) - 1024
		t.Logf("RLIMIT_NOFILE is %d: holding %d idle connections", got, idle)
	}
	window := relWindow(t)
	d := testPKI(t, false)
	store, err := stores.Open(t.Context(), "bolt:"+filepath.Join(t.TempDir(), "data", "kvs.db"), stores.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	logCount := &countWriter{}
	counted := slog.New(slog.NewJSONHandler(logCount, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := startServer(t, d, store, func(c *Config) { c.Logger, c.Audit = counted, counted })
	a := newAttacker(t, d, srv.addr)
	legit := newLegitLoad(t, d, srv.addr)

	var baseP99, baseP99New time.Duration
	for _, at := range []struct {
		name string
		// run attacks until ctx ends and returns what it did; the
		// measurement starts 300 ms after it calls ready.
		run func(ctx context.Context, ready func()) string
		// cuts: the server must close the attack's connections once they
		// outlast its header (and handshake) timeout
		cuts bool
	}{
		{"none (baseline)", func(ctx context.Context, ready func()) string { ready(); <-ctx.Done(); return "-" }, false},
		{"slowloris: 256 authenticated connections trickling header bytes", now(a.slowloris), true},
		{fmt.Sprintf("%d idle TCP connections", idle), func(ctx context.Context, ready func()) string { return a.idleConns(ctx, ready, idle) }, true},
		{"garbage bytes and truncated ClientHellos", now(a.garbage), false},
		{"oversized headers (1 MiB header, 20,000 headers)", now(a.bigHeaders), false},
		{"values far over the limit (1 GiB declared, endless chunked)", now(a.bigValues), false},
		{"1 MiB keys (and 32 KiB keys)", now(a.bigKeys), false},
	} {
		t.Run(at.name, func(t *testing.T) {
			debug.FreeOSMemory()
			resetPeakRSS()
			logBefore := logCount.lines.Load()
			ctx, cancel := context.WithCancel(context.Background())
			var summary string
			done := make(chan struct{})
			ready := make(chan struct{})
			go func() {
				defer close(done)
				summary = at.run(ctx, sync.OnceFunc(func() { close(ready) }))
			}()
			select {
			case <-ready:
			case <-time.After(60 * time.Second):
				t.Fatal("the attack did not ramp up within 60s")
			}
			time.Sleep(300 * time.Millisecond)
			st := legit.measure(window)
			cancel()
			<-done
			peak := peakRSS()
			logLines := logCount.lines.Load() - logBefore

			// The server is up and serves normally after the attack.
			c := legit.keep
			hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer hcancel()
			if err := c.Ping(hctx); err != nil {
				t.Errorf("health after the attack: %v", err)
			}
			if _, err := c.Put(hctx, "after/"+at.name[:4], []byte("ok"), kvs.Cond{}); err != nil {
				t.Errorf("put after the attack: %v", err)
			}
			for _, err := range st.errs {
				t.Errorf("legitimate request failed during the attack: %v", err)
			}
			if st.n == 0 {
				t.Error("no legitimate request completed during the attack")
			}
			if at.cuts && window > srv.srv.cfg.ReadHeaderTimeout+time.Second && a.cut.Load() == 0 {
				t.Errorf("the attack lasted %v and the server closed none of its connections (header timeout %v)", window, srv.srv.cfg.ReadHeaderTimeout)
			}
			if peak > 2<<30 {
				t.Errorf("peak RSS %d MiB: over the 2 GiB bound", peak>>20)
			}
			if at.name == "none (baseline)" {
				baseP99, baseP99New = st.p99, st.p99New
			}
			t.Logf("%s: %s; legit %d requests, %d errors, p50 %v p99 %v (new connections: p99 %v); peak RSS %d MiB; %d server log lines",
				at.name, summary, st.n, len(st.errs), st.p50, st.p99, st.p99New, peak>>20, logLines)
			figure(t, "attacks", at.name, summary, st.n, len(st.errs), ms(st.p50), ms(st.p99), ms(st.p99New),
				ratio(st.p99, baseP99)+" / "+ratio(st.p99New, baseP99New), peak>>20, logLines)
		})
	}
	// Nothing an attack sent was stored.
	keys, _, err := store.List(t.Context(), "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k.Key, "legit/") && !strings.HasPrefix(k.Key, "after/") {
			t.Errorf("an attack stored key %.40q (%d bytes)", k.Key, k.Size)
		}
	}
}

// now adapts an attack that ramps up at once.
func now(attack func(context.Context) string) func(context.Context, func()) string {
	return func(ctx context.Context, ready func()) string { ready(); return attack(ctx) }
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

func ratio(d, base time.Duration) string {
	if base <= 0 {
		return "-"
	}
	return "×" + strconv.FormatFloat(float64(d)/float64(base), 'f', 1, 64)
}

// countWriter counts the log lines and bytes written to it and drops them.
type countWriter struct{ lines, bytes atomic.Int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.lines.Add(int64(bytes.Count(p, []byte{'\n'})))
	w.bytes.Add(int64(len(p)))
	return len(p), nil
}

// raiseNoFile raises RLIMIT_NOFILE to at least want (root may raise the hard
// limit) and restores it when the test ends; it returns the limit in force.
func raiseNoFile(t testing.TB, want uint64) uint64 {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur >= want {
		return old.Cur
	}
	lim := syscall.Rlimit{Cur: want, Max: max(old.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		lim = syscall.Rlimit{Cur: old.Max, Max: old.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return old.Cur
		}
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	return lim.Cur
}

// resetPeakRSS resets the kernel's peak RSS of this process (VmHWM), so
// that peakRSS reports the peak of one phase. It needs Linux 4.0.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns VmHWM in bytes, 0 when unknown.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// legitLoad is the legitimate client: two workers on one kept-alive HTTP/2
// connection, each a Put then a Get every 10 ms, and one worker opening a
// new TLS connection for a Get every 20 ms, so that attacks on accepting
// and handshaking show up too.
type legitLoad struct {
	keep, fresh *client.Client
}

func newLegitLoad(t *testing.T, d pki.Dir, addr string) *legitLoad {
	return &legitLoad{
		keep:  newTestClient(t, d, addr, nil),
		fresh: newTestClient(t, d, addr, func(c *client.Config) { c.NewConn, c.HTTP1 = true, true }),
	}
}

type legitStats struct {
	n                int
	p50, p99, p99New time.Duration
	errs             []error
}

func (l *legitLoad) measure(window time.Duration) legitStats {
	stop := time.Now().Add(window)
	var (
		mu        sync.Mutex
		lat, latN []time.Duration
		errs      []error
		wg        sync.WaitGroup
	)
	record := func(d time.Duration, fresh bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		if fresh {
			latN = append(latN, d)
		} else {
			lat = append(lat, d)
		}
	}
	value := bytes.Repeat([]byte("v"), 256)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				key := fmt.Sprintf("legit/%d/%d", w, i%100)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				_, err := l.keep.Put(ctx, key, value, kvs.Cond{})
				record(time.Since(start), false, err)
				start = time.Now()
				_, err = l.keep.Get(ctx, key)
				record(time.Since(start), false, err)
				cancel()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(stop) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			start := time.Now()
			_, err := l.fresh.Get(ctx, "legit/0/0")
			if errors.Is(err, kvs.ErrNotFound) {
				err = nil
			}
			record(time.Since(start), true, err)
			cancel()
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Wait()
	return legitStats{n: len(lat) + len(latN) + len(errs), p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), p99New: quantile(latN, 0.99), errs: errs}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*q))]
}

// attacker sends hostile traffic to one server on 127.0.0.1.
type attacker struct {
	t      *testing.T
	addr   string
	tlsCfg *tls.Config  // a valid client certificate: an insider
	hc     *http.Client // HTTP/1.1 with that certificate
	hello  []byte       // a real ClientHello record, to truncate
	cut    atomic.Int64 // connections the server closed in the last attack
}

func newAttacker(t *testing.T, d pki.Dir, addr string) *attacker {
	files, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := files.ClientConfig(pki.TLSOptions{ServerName: "localhost", NoResume: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: cfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &attacker{t: t, addr: addr, tlsCfg: cfg, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, hello: clientHello(t, cfg)}
}

// clientHello records the first TLS record a client sends.
func clientHello(t *testing.T, cfg *tls.Config) []byte {
	c, s := net.Pipe()
	go func() {
		tc := tls.Client(c, cfg)
		tc.Handshake()
		tc.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return append(hdr, body...)
}

func (a *attacker) dial() (net.Conn, error) {
	return net.DialTimeout("tcp", a.addr, 5*time.Second)
}

// abort closes c with a reset rather than a FIN, so the attacker's side
// leaves no TIME_WAIT behind.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// slowloris keeps 256 authenticated HTTP/1.1 connections sending one header
// byte every 100 ms; a connection the server cuts is replaced.
func (a *attacker) slowloris(ctx context.Context) string {
	var opened, cut atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for ctx.Err() == nil {
				raw, err := a.dial()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				c := tls.Client(raw, a.tlsCfg)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.Handshake(); err != nil {
					abort(raw)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				c.SetDeadline(time.Time{})
				opened.Add(1)
				_, err = io.WriteString(c, "GET /v1/kv/slow HTTP/1.1\r\nHost: localhost\r\n")
				hdr := "X-Slow: " + strings.Repeat("a", 1000)
				for i := 0; err == nil && ctx.Err() == nil; i++ {
					_, err = c.Write([]byte{hdr[i%len(hdr)]})
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
				if err != nil {
					cut.Add(1)
				}
				abort(raw)
			}
		})
	}
	wg.Wait()
	a.cut.Store(cut.Load())
	return fmt.Sprintf("%d connections opened, %d cut by the server", opened.Load(), cut.Load())
}

// idleConns has a child process (this test binary, running
// TestHostileIdleHelper) open n TCP connections that send nothing, and hold
// them until ctx ends; it reports how many the server had closed by then.
// A child, so that each process needs a descriptor for one end only.
func (a *attacker) idleConns(ctx context.Context, ready func(), n int) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileIdleHelper$")
	cmd.Env = append(os.Environ(), "KVS_HOSTILE_IDLE="+a.addr+","+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		a.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		a.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	defer cmd.Wait()
	lines := bufio.NewScanner(stdout)
	var held, failed, closed int
	start := time.Now()
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "ready %d %d", &held, &failed); err == nil {
			break
		}
	}
	dialTime := time.Since(start)
	ready()
	<-ctx.Done()
	stdin.Close()
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "closed %d", &closed); err == nil {
			break
		}
	}
	io.Copy(io.Discard, stdout)
	a.cut.Store(int64(closed))
	if held+failed != n {
		a.t.Errorf("the idle-connection helper reported %d held and %d failed of %d", held, failed, n)
	}
	return fmt.Sprintf("%d held (%d dials failed, all open after %v), %d closed by the server at the end", held, failed, dialTime.Round(100*time.Millisecond), closed)
}

// TestHostileIdleHelper is the child process of the idle-connection attack:
// with KVS_HOSTILE_IDLE=addr,n it opens n connections, prints "ready held
// failed", waits for stdin to close, prints "closed k" (connections the
// server had closed) and drops them all.
func TestHostileIdleHelper(t *testing.T) {
	spec := os.Getenv("KVS_HOSTILE_IDLE")
	if spec == "" {
		t.Skip("the child process of TestHostileAttacks")
	}
	addr, ns, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(ns)
	raiseNoFile(t, uint64(n+1024))
	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var wg sync.WaitGroup
	const dialers = 16
	for d := range dialers {
		wg.Go(func() {
			for i := d; i < n; i += dialers {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	fmt.Printf("ready %d %d\n", n-int(failed.Load()), failed.Load())
	io.Copy(io.Discard, os.Stdin)
	closed := 0
	for _, c := range conns {
		if c == nil {
			continue
		}
		if peerClosed(c) {
			closed++
		}
	}
	for _, c := range conns {
		if c != nil {
			abort(c)
		}
	}
	fmt.Printf("closed %d\n", closed)
}

// peerClosed reports, without waiting, whether the other end has closed c.
func peerClosed(c net.Conn) bool {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	buf := make([]byte, 1)
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN)
		return true
	})
	return closed
}

// garbage sends, from 8 workers, random bytes, truncated ClientHellos and
// record headers announcing 16 KiB that never come, each on a new
// connection that it then drops.
func (a *attacker) garbage(ctx context.Context) string {
	var sent [3]atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			buf := make([]byte, 2048)
			for i := 0; ctx.Err() == nil; i++ {
				c, err := a.dial()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				kind := (w + i) % 3
				var p []byte
				switch kind {
				case 0:
					rand.Read(buf)
					p = buf[:1+int(buf[0])<<3]
				case 1:
					p = a.hello[:1+int(randByte())%(len(a.hello)-1)]
				case 2:
					p = []byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01}
				}
				c.SetDeadline(time.Now().Add(time.Second))
				c.Write(p)
				sent[kind].Add(1)
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				c.Read(buf)
				abort(c)
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("%d random, %d truncated ClientHellos, %d stalled records", sent[0].Load(), sent[1].Load(), sent[2].Load())
}

func randByte() byte {
	var b [1]byte
	rand.Read(b[:])
	return b[0]
}

// statusCounter counts answers by status, and transport errors.
type statusCounter struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *statusCounter) add(resp *http.Response, err error) {
	k := "cut"
	if err == nil {
		k = strconv.Itoa(resp.StatusCode)
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]int{}
	}
	s.m[k]++
	s.mu.Unlock()
}

func (s *statusCounter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, s.m[k]))
	}
	return strings.Join(parts, ", ")
}

// only reports an error when an answer other than allowed (or a cut
// connection) was seen.
func (s *statusCounter) only(t *testing.T, what string, allowed ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if k != "cut" && !slices.Contains(allowed, k) {
			t.Errorf("%s: %d answers with status %s, want only %v", what, s.m[k], k, allowed)
		}
	}
}

// run calls fn from workers goroutines until ctx ends.
func (a *attacker) run(ctx context.Context, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i += workers {
				fn(i)
			}
		})
	}
	wg.Wait()
}

func (a *attacker) url(key string) string { return "https://" + a.addr + "/v1/kv/" + key }

// bigHeaders sends requests with one 1 MiB header, or 20,000 small ones.
func (a *attacker) bigHeaders(ctx context.Context) string {
	var sc statusCounter
	big := strings.Repeat("h", 1<<20)
	a.run(ctx, 4, func(i int) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url("legit/0/0"), nil)
		if i%2 == 0 {
			req.Header.Set("X-Big", big)
		} else {
			for j := range 20000 {
				req.Header["X-H"+strconv.Itoa(j)] = []string{"v"}
			}
		}
		sc.add(a.hc.Do(req))
	})
	sc.only(a.t, "oversized headers", "431")
	return sc.String()
}

// zeros is an endless reader of zero bytes that counts what it gave.
type zeros struct{ n *atomic.Int64 }

func (z zeros) Read(p []byte) (int, error) {
	clear(p)
	z.n.Add(int64(len(p)))
	return len(p), nil
}

// bigValues PUTs 1 GiB declared in Content-Length, or an endless chunked
// body; the server must answer 413 without reading it all.
func (a *attacker) bigValues(ctx context.Context) string {
	var sc statusCounter
	var sent, attempts atomic.Int64
	a.run(ctx, 4, func(i int) {
		attempts.Add(1)
		var body io.Reader = zeros{&sent}
		if i%2 == 0 {
			body = io.LimitReader(body, 1<<30)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, a.url("huge/value"), body)
		if i%2 == 0 {
			req.ContentLength = 1 << 30
		}
		sc.add(a.hc.Do(req))
	})
	sc.only(a.t, "values over the limit", "413")
	return fmt.Sprintf("%s; %.1f MiB sent per attempt", sc.String(), float64(sent.Load())/float64(max(attempts.Load(), 1))/(1<<20))
}

// bigKeys GETs and PUTs keys of 1 MiB (over the header limit: 431) and of
// 32 KiB (over the key limit: 400).
func (a *attacker) bigKeys(ctx context.Context) string {
	var sc statusCounter
	huge, long := strings.Repeat("k", 1<<20), strings.Repeat("k", 32<<10)
	a.run(ctx, 4, func(i int) {
		key := huge
		if i%2 == 1 {
			key = long
		}
		method := http.MethodGet
		var body io.Reader
		if i%4 >= 2 {
			method, body = http.MethodPut, strings.NewReader("v")
		}
		req, _ := http.NewRequestWithContext(ctx, method, a.url(key), body)
		sc.add(a.hc.Do(req))
	})
	sc.only(a.t, "huge keys", "400", "414", "431")
	return sc.String()
}
