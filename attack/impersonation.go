package attack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
)

// impostor is a server that pretends to be the real one: it presents cert,
// answers every request with a plausible success, and counts what it
// receives. It listens on 127.0.0.1 in this process, whatever server the
// run attacks; the real client is pointed at it while checking the real
// server's name.
type impostor struct {
	addr string
	srv  *http.Server
	done chan struct{}

	mu       sync.Mutex
	changed  chan struct{}
	requests []string // "METHOD path" of each request received
	errs     []string // its refused handshakes, with the reason
}

func startImpostor(cert tls.Certificate) (*impostor, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the impostor server: %w", err)
	}
	im := &impostor{addr: ln.Addr().String(), done: make(chan struct{}), changed: make(chan struct{})}
	im.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			im.record(func() { im.requests = append(im.requests, r.Method+" "+r.URL.Path) })
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Etag", `"1"`)
			fmt.Fprintln(w, `{"version":1}`)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	tln := server.TLSListener(ln, cfg, 5*time.Second, func(e server.HandshakeEvent) {
		if e.Err != nil {
			im.record(func() { im.errs = append(im.errs, e.Err.Error()) })
		}
	})
	go func() {
		defer close(im.done)
		im.srv.Serve(tln)
	}()
	return im, nil
}

func (im *impostor) record(f func()) {
	im.mu.Lock()
	defer im.mu.Unlock()
	f()
	close(im.changed)
	im.changed = make(chan struct{})
}

// saw waits (up to d) for the impostor to log something and describes it.
func (im *impostor) saw(ctx context.Context, d time.Duration) (string, int) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		im.mu.Lock()
		reqs, errs, ch := len(im.requests), append([]string(nil), im.errs...), im.changed
		got := append([]string(nil), im.requests...)
		im.mu.Unlock()
		if reqs > 0 || len(errs) > 0 {
			s := fmt.Sprintf("impostor received %d requests", reqs)
			if reqs > 0 {
				s += " (" + strings.Join(got, ", ") + ")"
			}
			if len(errs) > 0 {
				s += "; its handshake failed: " + strings.Join(errs, "; ")
			}
			return s, reqs
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
		case <-deadline.C:
		}
		return "impostor received 0 requests", 0
	}
}

func (im *impostor) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if im.srv.Shutdown(ctx) != nil {
		im.srv.Close()
	}
	<-im.done
}

// impersonate points the real client at an impostor presenting cert and
// has it write key.
func impersonate(ctx context.Context, e *env, key string, cert tls.Certificate) observation {
	im, err := startImpostor(cert)
	if err != nil {
		return broken("%v", err)
	}
	defer im.close()
	c, err := e.realClient(im.addr, nil)
	if err != nil {
		return broken("load the real client: %v", err)
	}
	defer c.Close()
	_, perr := c.Put(ctx, key, []byte("secret the client must not send to an impostor"), kvs.Cond{})
	o := observation{}
	var n int
	o.serverSaw, n = im.saw(ctx, 2*time.Second)
	if perr != nil {
		o.clientSaw = errText(perr)
	} else {
		o.clientSaw = "PUT accepted (by the impostor)"
	}
	switch {
	case n > 0:
		o.outcome = Succeeded
		o.observed = fmt.Sprintf("the real client trusted the impostor and sent %d request(s) to it", n)
	case errors.Is(perr, client.ErrUntrustedServer):
		o.outcome = Refused
		o.observed = "the real client refused the server's certificate; no request sent"
	case perr != nil:
		o.outcome = Broken
		o.observed = "the real client failed for another reason than the certificate"
	default:
		o.outcome = Broken
		o.observed = "the client reports success but the impostor saw no request"
	}
	return o
}

// runRogueServer: an impostor with a self-signed certificate for the real
// server's name.
func runRogueServer(ctx context.Context, e *env, key string) observation {
	cert, err := selfSigned(e.keyType, pki.ProfileServer, e.serverLeafSubject(), []string{e.serverName}, e.now())
	if err != nil {
		return broken("make the impostor's certificate: %v", err)
	}
	return impersonate(ctx, e, key, cert)
}

// runHostnameMismatch: an impostor with a genuine certificate of the real
// CA, for another name (one the CA's name constraints permit).
func runHostnameMismatch(ctx context.Context, e *env, key string) observation {
	cert, err := signedByCA(e.ca, e.keyType, pki.ProfileServer, e.serverLeafSubject(), []string{permittedHost(e.ca, "kvsctl-attack-other")}, time.Time{}, time.Time{}, e.now())
	if err != nil {
		return broken("make the impostor's certificate: %v", err)
	}
	return impersonate(ctx, e, key, cert)
}
