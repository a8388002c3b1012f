package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/stores"
	"github.com/kvsctl/kvsctl/pki"

	"github.com/jackc/pgx/v5"
)

// Benchmarks of the server's hot paths. They measure; they assert nothing
// about speed (see docs/performance.md for the comparison run).
//
//	go test -run '^$' -bench . -benchmem ./kvs/
//	go test -run '^$' -bench Loopback -cpuprofile cpu.out ./kvs/ && go tool pprof -top cpu.out

// benchPKI creates a CA-mode PKI (with its CRL) for a benchmark.
func benchPKI(b *testing.B, kt pki.KeyType) pki.Dir {
	b.Helper()
	d := pki.Dir(filepath.Join(b.TempDir(), "certs"))
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: d, KeyType: kt, Hosts: []string{"localhost", "127.0.0.1"}}); err != nil {
		b.Fatal(err)
	}
	return d
}

// benchAudit returns the audit logger of a benchmark: "discard" (disabled),
// or "file", a text handler writing to a file as `kvsctl serve 2>file`
// does.
func benchAudit(b *testing.B, kind string) *slog.Logger {
	b.Helper()
	if kind == "discard" {
		return slog.New(slog.DiscardHandler)
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return slog.New(slog.NewTextHandler(f, nil))
}

// benchServer builds a server on a bolt store with nkeys keys preloaded.
func benchServer(b *testing.B, d pki.Dir, audit *slog.Logger, nkeys int) (*Server, *TLS) {
	b.Helper()
	files, err := d.ServerFiles()
	if err != nil {
		b.Fatal(err)
	}
	store, err := stores.Open(context.Background(), "bolt:"+filepath.Join(b.TempDir(), "data", "kvs.db"), stores.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	value := bytes.Repeat([]byte("v"), 100)
	for i := range nkeys {
		if _, err := store.Put(context.Background(), benchKey(i), value, kvs.Cond{}); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := New(Config{Files: files, Store: store, Audit: audit})
	if err != nil {
		b.Fatal(err)
	}
	return srv, srv.TLS()
}

func benchKey(i int) string { return strconv.Itoa(10_000_000 + i) }

// BenchmarkHandler is the request path without network or TLS: routing,
// key validation, policy, the bolt store, metrics and the audit line.
func BenchmarkHandler(b *testing.B) {
	d := benchPKI(b, pki.ECDSAP256)
	cf, err := d.ClientFiles()
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := pki.LoadCert(cf.Cert)
	if err != nil {
		b.Fatal(err)
	}
	cs := &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}
	const nkeys = 1000
	value := bytes.Repeat([]byte("v"), 100)
	for _, audit := range []string{"discard", "file"} {
		srv, _ := benchServer(b, d, benchAudit(b, audit), nkeys)
		for _, op := range []string{http.MethodGet, http.MethodPut} {
			b.Run(op+"/audit="+audit, func(b *testing.B) {
				b.ReportAllocs()
				reportCPU(b)
				var n atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := int(n.Add(1)) % nkeys
						var body io.Reader = http.NoBody
						if op == http.MethodPut {
							body = bytes.NewReader(value)
						}
						r := httptest.NewRequest(op, "https://localhost/v1/kv/"+benchKey(i), body)
						r.TLS = cs
						w := httptest.NewRecorder()
						srv.ServeHTTP(w, r)
						if w.Code != http.StatusOK {
							b.Fatalf("%s: status %d: %s", op, w.Code, w.Body)
						}
					}
				})
			})
		}
	}
}

// BenchmarkLoopback is the whole path: the kvs client and server over
// mutual TLS on 127.0.0.1, one connection per parallel worker, with the
// audit log written to a file as `kvsctl serve` does.
func BenchmarkLoopback(b *testing.B) {
	d := benchPKI(b, pki.ECDSAP256)
	const nkeys = 1000
	value := bytes.Repeat([]byte("v"), 100)
	for _, proto := range []string{"h2", "http1"} {
		srv, _ := benchServer(b, d, benchAudit(b, "file"), nkeys)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx, ln) }()
		b.Cleanup(func() { cancel(); <-done })
		cf, err := d.ClientFiles()
		if err != nil {
			b.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		for _, op := range []string{"get", "put"} {
			b.Run(op+"/"+proto, func(b *testing.B) {
				b.ReportAllocs()
				reportCPU(b)
				var n atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					c, err := client.New(client.Config{Server: "localhost:" + port, Files: cf, HTTP1: proto == "http1", HTTP2: proto == "h2"})
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					ctx := context.Background()
					for pb.Next() {
						key := benchKey(int(n.Add(1)) % nkeys)
						if op == "get" {
							_, err = c.Get(ctx, key)
						} else {
							_, err = c.Put(ctx, key, value, kvs.Cond{})
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkConfigForClient is the TLS snapshot lookup every handshake makes.
func BenchmarkConfigForClient(b *testing.B) {
	_, st := benchServer(b, benchPKI(b, pki.ECDSAP256), nil, 0)
	get := st.Config().GetConfigForClient
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c, err := get(hello); c == nil || err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyConnection is the check every handshake runs: the CRL
// (here with 1000 revoked serials) and, on a resumed session, the chain
// re-verified against the current roots.
func BenchmarkVerifyConnection(b *testing.B) {
	d := benchPKI(b, pki.ECDSAP256)
	ca, err := tls.LoadX509KeyPair(d.CACert(), d.CAKey())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(2), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour)}
	for i := range 1000 {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: big.NewInt(int64(1e9 + i)), RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Leaf, ca.PrivateKey.(crypto.Signer))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(d.CRL(), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		b.Fatal(err)
	}
	_, st := benchServer(b, d, nil, 0)
	snap := st.snap.Load()
	if crls := snap.crls.sorted(); len(crls) != 1 || len(crls[0].List.RevokedCertificateEntries) != 1000 {
		b.Fatal("the CRL did not load")
	}
	cf, err := d.ClientFiles()
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := pki.LoadCert(cf.Cert)
	if err != nil {
		b.Fatal(err)
	}
	for _, resumed := range []bool{false, true} {
		b.Run(map[bool]string{false: "full", true: "resumed"}[resumed], func(b *testing.B) {
			cs := tls.ConnectionState{HandshakeComplete: true, DidResume: resumed, PeerCertificates: []*x509.Certificate{leaf}}
			if !resumed { // crypto/tls has verified the chain of a full handshake
				cs.VerifiedChains = [][]*x509.Certificate{{leaf, ca.Leaf}}
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := snap.config.VerifyConnection(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBoltPut is durable writes to the bolt store from one writer and
// from 32 concurrent writers: how well concurrent writes share commits (and
// fsyncs).
func BenchmarkBoltPut(b *testing.B) {
	value := bytes.Repeat([]byte("v"), 100)
	for _, writers := range []int{1, 32} {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) {
			store, err := stores.Open(context.Background(), "bolt:"+filepath.Join(b.TempDir(), "data", "kvs.db"), stores.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			reportCPU(b)
			var n atomic.Int64
			put := func() {
				if _, err := store.Put(context.Background(), benchKey(int(n.Add(1))%10000), value, kvs.Cond{}); err != nil {
					b.Fatal(err)
				}
			}
			if writers == 1 {
				for b.Loop() {
					put()
				}
				return
			}
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					put()
				}
			})
		})
	}
}

// BenchmarkPostgresConcurrent is GETs and unconditional PUTs to the
// PostgreSQL store from 32 concurrent callers with a pool of 32
// connections, as `kvsctl serve --pool-size 32` under 32 clients. It needs
// KVS_TEST_DATABASE.
func BenchmarkPostgresConcurrent(b *testing.B) {
	db := os.Getenv("KVS_TEST_DATABASE")
	if db == "" {
		b.Skip("KVS_TEST_DATABASE is not set")
	}
	schema := fmt.Sprintf("kvsbench_%d", time.Now().UnixNano())
	store, err := stores.Open(context.Background(), db, stores.Options{Schema: schema, MaxConns: 32})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		store.Close()
		if conn, err := pgx.Connect(context.Background(), db); err == nil {
			conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			conn.Close(context.Background())
		}
	})
	value := bytes.Repeat([]byte("v"), 100)
	const nkeys = 10000
	for i := range nkeys {
		if _, err := store.Put(context.Background(), benchKey(i), value, kvs.Cond{}); err != nil {
			b.Fatal(err)
		}
	}
	for _, op := range []string{"get", "put"} {
		b.Run(op, func(b *testing.B) {
			reportCPU(b)
			b.SetParallelism(16)
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					key := benchKey(int(n.Add(1)) % nkeys)
					var err error
					if op == "get" {
						_, err = store.Get(ctx, key)
					} else {
						_, err = store.Put(ctx, key, value, kvs.Cond{})
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
