package kvs

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// testPKI creates a PKI (CA or self-signed mode) with fast ECDSA keys.
func testPKI(t *testing.T, selfSigned bool) pki.Dir {
	t.Helper()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: d, SelfSigned: selfSigned, KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	return d
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	addr  string
	tls   *ServerTLS
	store Store
	log   *syncBuffer
	srv   *Server
}

// startServer serves the PKI's server files with the given store (nil: a
// bolt store in a temp dir) on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, d pki.Dir, store Store, mutate func(*Config)) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	files, err := ServerFilesFromDir(string(d))
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewServerTLS(files, ServerTLSOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if store == nil {
		store, err = OpenStore(ctx, "bolt:"+filepath.Join(t.TempDir(), "kvs.db"), StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
	}
	cfg := Config{TLS: st, Store: store, Logger: logger}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not shut down")
		}
	})
	return &testServer{addr: ln.Addr().String(), tls: cfg.TLS, store: store, log: logs, srv: srv}
}

// newTestClient connects with the PKI's default client files.
func newTestClient(t *testing.T, d pki.Dir, addr string, mutate func(*ClientConfig)) *Client {
	t.Helper()
	files, err := ClientFilesFromDir(string(d))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	cfg := ClientConfig{Server: "localhost:" + port, Files: files, Timeout: 10 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Bridges for the end-to-end tests of the external package kvs_test, which
// share the PostgreSQL helpers of store_postgres_test.go. The names avoid
// the Test prefix that go test and vet reserve.

// E2EServer is a server started by [E2EStartServer].
type E2EServer = testServer

// Addr is the server's 127.0.0.1:port.
func (ts *testServer) Addr() string { return ts.addr }

// TLS is the server's reloadable TLS material.
func (ts *testServer) TLS() *ServerTLS { return ts.tls }

// Store is the store the server serves.
func (ts *testServer) Store() Store { return ts.store }

// Logs returns everything the server logged so far (JSON lines, debug level).
func (ts *testServer) Logs() string { return ts.log.String() }

// E2EPKI is testPKI for kvs_test.
func E2EPKI(t *testing.T, selfSigned bool) pki.Dir { t.Helper(); return testPKI(t, selfSigned) }

// E2EStartServer is startServer for kvs_test.
func E2EStartServer(t *testing.T, d pki.Dir, store Store, mutate func(*Config)) *E2EServer {
	t.Helper()
	return startServer(t, d, store, mutate)
}

// E2EWaitFor is waitFor for kvs_test.
func E2EWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitFor(t, timeout, what, cond)
}

// E2EClient is newTestClient for kvs_test.
func E2EClient(t *testing.T, d pki.Dir, addr string, mutate func(*ClientConfig)) *Client {
	t.Helper()
	return newTestClient(t, d, addr, mutate)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
