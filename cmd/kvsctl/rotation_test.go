package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/loadgen"
	"github.com/kvsctl/kvsctl/pki"
)

// serialWatch records the serials of the server certificates a client
// sees on new connections, and the roots they chain to, in order.
type serialWatch struct {
	mu   sync.Mutex
	seen []string // "server serial <- root CN", each once, in order
}

func (w *serialWatch) add(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) == 0 || w.seen[len(w.seen)-1] != s {
		w.seen = append(w.seen, s)
	}
}

func (w *serialWatch) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.seen...)
}

// TestRootRotationUnderLoad runs 'kvsctl bench' with a full TLS handshake
// per request against a running server while the root is rotated, the
// server and client certificates are re-issued from the new hierarchy and
// the files swapped in place, and the old root is retired: not one request
// may fail. Afterwards a client that holds only a certificate of the old
// generation is refused (and was accepted during the overlap: the control).
func TestRootRotationUnderLoad(t *testing.T) {
	dir := kvPKI(t, false)
	d := pki.Dir(dir)
	srv := startServeCLI(t, dir, "--reload-interval", "100ms")
	oldRoot := certOf(t, d.CACert())
	oldServer := pki.SerialHex(certOf(t, d.ServerCert()))
	// The old generation's client, kept aside.
	oldClient := filepath.Join(t.TempDir(), "old")
	os.MkdirAll(oldClient, 0o700)
	for _, f := range []string{"client.crt", "client.key", "ca.crt"} {
		os.WriteFile(filepath.Join(oldClient, f), mustRead(t, d.Path(f)), 0o600)
	}
	oldFiles := pki.Files{Cert: filepath.Join(oldClient, "client.crt"), Key: filepath.Join(oldClient, "client.key"), CA: d.CACert()}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := &serialWatch{}
	go probeServerSerials(ctx, t, d, srv.server, watch)

	var benchOut bytes.Buffer
	benchDone := make(chan int, 1)
	go func() {
		benchDone <- run(ctx, []string{"kvsctl", "bench", "--server", srv.server, "--dir", dir, "--op", "mixed", "--clients", "4",
			"--duration", "9s", "--new-conn", "--no-resume", "--http1", "--keys", "100", "--preload", "--json", "--quiet"},
			strings.NewReader(""), &benchOut, &lockedBuffer{})
	}()
	step := func(at time.Duration, args ...string) string {
		time.Sleep(at)
		return mustRun(t, args...)
	}
	step(time.Second, "pki", "ca", "rotate", "--root", "--dir", dir)
	// Peers pick up the two-root bundle (the server polls, the client
	// checks once a second), then the certificates are re-issued.
	step(2*time.Second, "pki", "renew", d.ServerCert(), "--dir", dir)
	step(0, "pki", "renew", d.ClientCert(), "--dir", dir)
	// Control: during the overlap the old generation's client is accepted.
	if err := putWith(t, srv.server, oldFiles); err != nil {
		t.Errorf("control: a client of the old generation during the overlap: %v", err)
	}
	time.Sleep(2 * time.Second)
	step(0, "pki", "ca", "retire", pki.Fingerprint(oldRoot.Raw), "--dir", dir)

	var code int
	select {
	case code = <-benchDone:
	case <-time.After(60 * time.Second):
		t.Fatal("bench did not finish")
	}
	var r loadgen.Result
	if err := json.Unmarshal(benchOut.Bytes(), &r); err != nil || code != 0 {
		t.Fatalf("bench exit %d: %v\n%s", code, err, benchOut.String())
	}
	cancel()
	seen := watch.list()
	t.Logf("rotation under load: %d requests (%d handshakes), %d failed; server certificates seen: %s",
		r.Requests, r.Handshakes, r.Errors, strings.Join(seen, ", then "))
	if r.Errors != 0 || r.Requests < 100 {
		t.Errorf("%d of %d requests failed (%v): the rotation must not fail any", r.Errors, r.Requests, r.ErrorKind)
	}
	newServer := pki.SerialHex(certOf(t, d.ServerCert()))
	if len(seen) < 2 || !strings.HasPrefix(seen[0], oldServer) || !strings.HasPrefix(seen[len(seen)-1], newServer) {
		t.Errorf("serials seen %v: want %s first and the renewed %s last", seen, oldServer, newServer)
	}
	// After the retirement the old generation is refused.
	if err := putWith(t, srv.server, oldFiles); !errors.Is(err, client.ErrRejected) && !errors.Is(err, client.ErrUntrustedServer) {
		t.Errorf("a client of the retired root: %v, want it refused", err)
	}
}

// probeServerSerials handshakes with the server every 50ms with the
// directory's client files, as they are at that moment, and records the
// server's serial and root.
func probeServerSerials(ctx context.Context, t *testing.T, d pki.Dir, server string, w *serialWatch) {
	files, err := d.ClientFiles()
	if err != nil {
		t.Error(err)
		return
	}
	ct, err := files.NewClientTLS(pki.TLSOptions{NoResume: true})
	if err != nil {
		t.Error(err)
		return
	}
	ct.CheckEvery = 50 * time.Millisecond
	host, _, _ := net.SplitHostPort(server)
	for ctx.Err() == nil {
		cfg := ct.Config().Clone()
		cfg.ServerName = host
		conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", server)
		if err == nil {
			st := conn.(*tls.Conn).ConnectionState()
			chain := st.VerifiedChains[0]
			w.add(pki.SerialHex(st.PeerCertificates[0]) + " <- " + chain[len(chain)-1].Subject.CommonName)
			conn.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// putWith stores one value with a client of the given files.
func putWith(t *testing.T, server string, files pki.Files) error {
	t.Helper()
	c, err := client.New(client.Config{Server: server, Files: files, Timeout: 5 * time.Second, HTTP1: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Put(context.Background(), "rotation/probe", []byte("x"), kvs.Cond{})
	return err
}

// TestRenewalMovesOpenConnections: a client on keep-alive connections
// (HTTP/2 and HTTP/1.1) whose certificate is renewed on disk moves its
// requests to connections with the new certificate: once the old one is
// revoked, which the server checks on every request of an open
// connection, not one request fails.
func TestRenewalMovesOpenConnections(t *testing.T) {
	for _, proto := range []string{"h2", "http1"} {
		t.Run(proto, func(t *testing.T) {
			dir := kvPKI(t, false)
			d := pki.Dir(dir)
			srv := startServeCLI(t, dir, "--reload-interval", "100ms")
			old := certOf(t, d.ClientCert())
			args := []string{"kvsctl", "bench", "--server", srv.server, "--dir", dir, "--op", "mixed", "--clients", "4",
				"--duration", "5s", "--keys", "100", "--preload", "--json", "--quiet"}
			if proto == "h2" {
				args = append(args, "--http2")
			}
			ctx := context.Background()
			var out bytes.Buffer
			done := make(chan int, 1)
			go func() { done <- run(ctx, args, strings.NewReader(""), &out, &lockedBuffer{}) }()
			time.Sleep(time.Second)
			mustRun(t, "pki", "renew", d.ClientCert(), "--dir", dir)
			time.Sleep(2 * time.Second) // the client notices within a second
			mustRun(t, "pki", "revoke", pki.SerialHex(old), "--dir", dir)
			if code := <-done; code != 0 {
				t.Fatalf("bench exit %d: %s", code, out.String())
			}
			var r loadgen.Result
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d requests over %d connections, %d failed", proto, r.Requests, r.Handshakes, r.Errors)
			if r.Errors != 0 || r.Handshakes < 2 {
				t.Errorf("%d of %d requests failed (%v) over %d connections: the renewal must move them", r.Errors, r.Requests, r.ErrorKind, r.Handshakes)
			}
		})
	}
}
