package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// heapBytes reads go_memstats_heap_alloc_bytes from the server's own
// /metrics (its runtime's figure, which does not lag like RSS), after a
// collection: the server runs in this process, so that is its live heap.
func heapBytes(t *testing.T, hc *http.Client, base string) float64 {
	t.Helper()
	runtime.GC()
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_alloc_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no go_memstats_heap_alloc_bytes in /metrics")
	return 0
}

// headerOnlyPuts opens n PUTs to addr that announce a 1 MiB body and send
// none, holds them for hold, and returns the peak growth of the heap seen
// through metricsBase. The server runs in this process, so the growth
// includes the clients' own buffers; callers compare two servers.
func headerOnlyPuts(t *testing.T, cfg *tls.Config, proto, addr, metricsBase string, n int, hold time.Duration) float64 {
	t.Helper()
	hc := httpClient(t, cfg.Clone(), proto == "http1")
	metrics := httpClient(t, cfg.Clone(), true)
	before := heapBytes(t, metrics, metricsBase)
	var (
		wg    sync.WaitGroup
		pipes []*io.PipeWriter
		conns []net.Conn
	)
	for i := range n {
		if proto == "http1" {
			// By hand: net/http's transport holds the headers back until
			// the body starts.
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			fmt.Fprintf(c, "PUT /v1/kv/mem/%d HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n", i)
			continue
		}
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("https://%s/v1/kv/mem/%d", addr, i), pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 1 << 20
		wg.Go(func() {
			if resp, err := hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	peak := before
	for deadline := time.Now().Add(hold); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		peak = max(peak, heapBytes(t, metrics, metricsBase))
	}
	for _, pw := range pipes {
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return peak - before
}

// TestHeaderOnlyPutsReserveNoMemory sends PUTs that announce a 1 MiB body
// (Content-Length: 1048576) and then send nothing, over HTTP/2 and
// HTTP/1.1, and watches the heap while they wait: the kvs server's growth,
// less that of the bare server (which reads no body into memory) under the
// same load, must stay small, because a buffer grows with the bytes that
// arrive, not with what a header promises.
func TestHeaderOnlyPutsReserveNoMemory(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) { c.ReadTimeout = time.Minute })
	files, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bare := make(chan error, 1)
	go func() { bare <- ServeBare(ctx, ln, files, TLSOptions{}) }()
	t.Cleanup(func() { cancel(); <-bare })
	cfg := clientTLS(t, clientFiles(t, d), nil)
	const n = 150
	for _, proto := range []string{"h2", "http1"} {
		t.Run(proto, func(t *testing.T) {
			ref := headerOnlyPuts(t, cfg, proto, ln.Addr().String(), serverURL(ts.addr), n, 2*time.Second)
			got := headerOnlyPuts(t, cfg, proto, ts.addr, serverURL(ts.addr), n, 2*time.Second)
			perPut := (got - ref) / n / 1024
			t.Logf("FIGURE memory | %d header-only 1 MiB PUTs over %s | kvs server %.1f MiB, bare %.1f MiB: %.0f KiB per PUT |",
				n, proto, got/(1<<20), ref/(1<<20), perPut)
			// Before the fix a PUT cost its whole announced 1 MiB; now at
			// most bodyChunk, plus the noise of the clients in this process.
			if perPut > 4*bodyChunk/1024 {
				t.Errorf("%.0f KiB of heap per PUT that sent no body: the server reserves what the header announces", perPut)
			}
		})
	}
}
