package attack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// The demo's online CA: a caserver (as 'kvsctl pki serve' runs it) on a
// throwaway PKI directory of its own, so that the scenarios that spend
// its tokens, revoke its certificates and (in the negative controls) roll
// its files back never touch the PKI the kvs server trusts. What it saw
// of a request is the typed audit event its Observer receives, matched to
// the attacker by address.

// onlineCA is the running online CA of a demo.
type onlineCA struct {
	dir   pki.Dir
	url   string         // https://127.0.0.1:PORT
	roots *x509.CertPool // its trust bundle, which its TLS certificate chains to
	audit *caAudit
	// forgets are the files of dir that a weakened CA puts back as they
	// were before a legitimate change (see weakening.caForgets).
	forgets []func(pki.Dir) string
}

// startOnlineCA makes a PKI in dir, serves an online CA on it on
// 127.0.0.1 (configured as the weakening says), and returns it with the
// function that stops it.
func startOnlineCA(ctx context.Context, dir pki.Dir, weak weakening) (*onlineCA, func() error, error) {
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: dir, Hosts: demoHosts, KeyType: pki.ECDSAP256}); err != nil {
		return nil, nil, fmt.Errorf("create the online CA's PKI: %w", err)
	}
	roots, err := pki.LoadPool(dir.CACert())
	if err != nil {
		return nil, nil, err
	}
	c := &onlineCA{dir: dir, roots: roots, audit: newCAAudit(), forgets: weak.caForgets}
	cfg := caserver.Config{Dir: dir, CertTTL: time.Hour, Observer: c.audit.observe}
	if weak.ca != nil {
		weak.ca(&cfg)
	}
	srv, err := caserver.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start the online CA: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	c.url = "https://" + ln.Addr().String()
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln, nil) }()
	return c, func() error {
		cancel()
		if err := <-served; err != nil {
			return fmt.Errorf("online CA: %w", err)
		}
		return nil
	}, nil
}

// caAttempt is one request of an attacker to the online CA, made by hand
// (as attempt is for the kvs server) so that its local address is known.
type caAttempt struct {
	local   string                // the attacker's local address
	err     error                 // the request got no answer (connection, TLS)
	status  int                   // HTTP status of the answer
	message string                // the error of a refusal
	cert    *caserver.Certificate // the answer of a success
}

// clientSaw is the attacker's view in one line.
func (a caAttempt) clientSaw() string {
	if a.err != nil {
		return a.err.Error()
	}
	if a.cert != nil {
		return fmt.Sprintf("HTTP %d: certificate serial %s for %s, valid until %s", a.status, a.cert.Serial, a.cert.Subject, a.cert.NotAfter.Format(time.RFC3339))
	}
	return answer(a.status, a.message)
}

// post sends body as JSON to path, over TLS verified against the CA's
// trust bundle, presenting cert when it is not nil.
func (c *onlineCA) post(ctx context.Context, path string, cert *tls.Certificate, body any) caAttempt {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var a caAttempt
	data, err := json.Marshal(body)
	if err != nil {
		a.err = fmt.Errorf("encode the request: %w", err)
		return a
	}
	cfg := &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	var mu sync.Mutex // the transport dials on a goroutine of its own
	var local string
	tr := &http.Transport{
		TLSClientConfig:   cfg,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				local = conn.LocalAddr().String()
				mu.Unlock()
			}
			return conn, err
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(data))
	if err != nil {
		a.err = fmt.Errorf("build the request: %w", err)
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	mu.Lock()
	a.local = local
	mu.Unlock()
	if err != nil {
		a.err = errors.New(errText(err))
		return a
	}
	defer resp.Body.Close()
	a.status = resp.StatusCode
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		a.err = fmt.Errorf("read the answer: %w", err)
		return a
	}
	if a.status/100 == 2 {
		var out caserver.Certificate
		if err := json.Unmarshal(raw, &out); err != nil {
			a.err = fmt.Errorf("decode the answer (HTTP %d): %w", a.status, err)
			return a
		}
		a.cert = &out
		return a
	}
	var e caserver.Error
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(raw))
	}
	a.message = e.Error
	return a
}

// judge judges an attacker's request that the CA should refuse for one
// reason, want (a part of the error the CA gives for it): an answer with a
// certificate is the attack succeeding; a 403 whose error says want, and
// whose audit record (found by the attacker's address) is a refusal of op
// with the same reason, is refused, because; any other answer proves
// nothing about the check under test, and the scenario is in error.
func (c *onlineCA) judge(ctx context.Context, a caAttempt, op, want, because string) observation {
	o := observation{clientSaw: a.clientSaw(), serverSaw: "nothing recorded"}
	ev, ok := c.audit.await(ctx, func(ev caEvent) bool { return ev.Op == op && ev.Peer == a.local }, time.Second)
	if ok {
		o.serverSaw = ev.String()
	}
	switch {
	case a.err != nil:
		o.outcome, o.observed = Broken, "no answer from the online CA"
	case a.cert != nil:
		o.outcome = Succeeded
		o.observed = fmt.Sprintf("the CA issued a certificate: serial %s, valid until %s", a.cert.Serial, a.cert.NotAfter.Format(time.RFC3339))
	case a.status != http.StatusForbidden || !strings.Contains(a.message, want):
		o.outcome = Broken
		o.observed = fmt.Sprintf("refused with %s, but not as %q: the check under test was not reached", statusText(a.status), want)
	case !ok:
		o.outcome = Broken
		o.observed = "refused with 403, but the CA recorded no audit line of the request: the scenario cannot tell why"
	case ev.Outcome != "refused" || !strings.Contains(ev.Reason, want):
		o.outcome = Broken
		o.observed = fmt.Sprintf("refused with 403, but the CA recorded %s %s (%s), not a refusal as %q", ev.Op, ev.Outcome, ev.Reason, want)
	default:
		o.outcome = Refused
		o.observed = "refused with 403: " + because
	}
	return o
}

// checkpoint saves the files the CA forgets (none for a sound CA) before
// a legitimate change; rollBack puts them back after it.
func (c *onlineCA) checkpoint() (*rollback, error) {
	rb := &rollback{}
	for _, f := range c.forgets {
		path := f(c.dir)
		saved := savedFile{path: path}
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("save %s: %w", path, err)
		default:
			if saved.data, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("save %s: %w", path, err)
			}
			saved.mode, saved.existed = fi.Mode().Perm(), true
		}
		rb.files = append(rb.files, saved)
	}
	return rb, nil
}

// rollback is what checkpoint saved.
type rollback struct{ files []savedFile }

type savedFile struct {
	path    string
	data    []byte
	mode    fs.FileMode
	existed bool
}

// rollBack puts the saved files back, and says which (for the report):
// "" when there were none.
func (rb *rollback) rollBack() (string, error) {
	var names []string
	for _, f := range rb.files {
		var err error
		if f.existed {
			err = pki.WriteFileAtomic(f.path, f.data, f.mode, true)
		} else if err = os.Remove(f.path); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err != nil {
			return "", fmt.Errorf("roll back %s: %w", f.path, err)
		}
		names = append(names, filepath.Base(f.path))
	}
	return strings.Join(names, " and "), nil
}

// caEvent is one audit record of the online CA: an enrollment, renewal or
// revocation, its outcome, and why it was refused.
type caEvent struct {
	Op, Outcome, Identity, Serial, Peer, Reason string
}

func (ev caEvent) String() string {
	s := ev.Op + " " + ev.Outcome
	if ev.Identity != "" {
		s += " for " + ev.Identity
	}
	if ev.Serial != "" {
		s += ", serial " + ev.Serial
	}
	if ev.Reason != "" {
		s += ": " + ev.Reason
	}
	return s
}

// caAudit collects the online CA's audit records, from its typed
// observer.
type caAudit struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every record
	events  []caEvent
}

func newCAAudit() *caAudit { return &caAudit{changed: make(chan struct{})} }

// observe is the CA's Observer.
func (l *caAudit) observe(e caserver.AuditEvent) {
	ev := caEvent{Op: e.Op, Outcome: e.Outcome, Identity: e.Identity, Serial: e.Serial, Peer: e.Peer}
	if e.Err != nil {
		ev.Reason = e.Err.Error()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	close(l.changed)
	l.changed = make(chan struct{})
}

// await waits (up to d) for a record that match accepts, the latest one.
// The CA records before it answers, so the wait is short.
func (l *caAudit) await(ctx context.Context, match func(caEvent) bool, d time.Duration) (caEvent, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ch := l.changed
		for i := len(l.events) - 1; i >= 0; i-- {
			if match(l.events[i]) {
				ev := l.events[i]
				l.mu.Unlock()
				return ev, true
			}
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return caEvent{}, false
		case <-deadline.C:
			return caEvent{}, false
		}
	}
}
