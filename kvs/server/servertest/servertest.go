// Package servertest starts real kvs servers for the tests of other
// packages: a PKI with fast keys, a server on 127.0.0.1 over mutual TLS
// (on a bolt store of its own unless given one), and clients of it. Every
// server stops, and every store and client closes, when the test ends.
// Only tests import this package.
package servertest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
)

// PKI makes a PKI with ECDSA P-256 keys and a server certificate for
// localhost and 127.0.0.1: a root CA and an issuing intermediate that signs
// the leaves (what pki init makes), or, with selfSigned, a self-signed
// server and client.
func PKI(t testing.TB, selfSigned bool) pki.Dir {
	t.Helper()
	return PKIWith(t, func(o *pki.InitOptions) { o.SelfSigned = selfSigned })
}

// PKIWith makes a PKI like PKI, with the options mutate sets: Flat for
// one CA that signs the leaves itself, Constraints for name constraints
// on the intermediate, and so on.
func PKIWith(t testing.TB, mutate func(*pki.InitOptions)) pki.Dir {
	t.Helper()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	o := pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost", "127.0.0.1"}}
	if mutate != nil {
		mutate(&o)
	}
	if _, err := pki.Init(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return d
}

// Server is a server started by Start.
type Server struct {
	Addr   string         // 127.0.0.1:port
	Server string         // localhost:port, the name its certificate carries
	Srv    *server.Server // the server itself
	Store  kvs.Store      // the store it serves
	stop   func()
}

// Stop stops the server before the test ends; it is safe to call twice.
func (s *Server) Stop() { s.stop() }

// Start serves cfg on 127.0.0.1:0 through server.Run until the test ends.
// cfg.Files defaults to d's server files (the intermediates bundle
// included, in a hierarchy), cfg.Store to a bolt store in a temporary
// directory (closed at the end; a given store is closed too).
func Start(t testing.TB, d pki.Dir, cfg server.Config) *Server {
	t.Helper()
	if cfg.Files.Cert == "" {
		f, err := d.ServerFiles()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Files = f
	}
	if cfg.Store == nil {
		s, err := bolt.Open(context.Background(), filepath.Join(t.TempDir(), "data", "kvs.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store = s
	}
	srv, err := server.New(cfg)
	if err != nil {
		cfg.Store.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("the server did not stop within 20s")
		}
		cfg.Store.Close()
	}
	t.Cleanup(stop)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &Server{Addr: ln.Addr().String(), Server: "localhost:" + port, Srv: srv, Store: cfg.Store, stop: stop}
}

// Client returns a client with d's default client files (a test may change
// cfg first), closed when the test ends.
func (s *Server) Client(t testing.TB, d pki.Dir, mutate func(*client.Config)) *client.Client {
	t.Helper()
	files, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	cfg := client.Config{Server: s.Server, Files: files, Timeout: 10 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
