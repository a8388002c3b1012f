package attack

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// serverLog collects what the demo server saw, so each scenario can report
// the server's side next to the client's: refused handshakes (from
// kvs.Config.OnRefused), the handshakes that reached verification (from a
// wrapper around the server's tls.Config) and requests (from the audit log).
// Handshakes are matched by the attacker's local address, requests by key.
type serverLog struct {
	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every event
	refused    map[string]string
	handshakes map[string]handshake
	requests   []request
}

type handshake struct {
	version uint16
	suite   uint16
	resumed bool
	err     error // the server's own VerifyConnection verdict
}

type request struct {
	peer, identity, op, key string
	status                  int
}

func newServerLog() *serverLog {
	return &serverLog{
		changed:    make(chan struct{}),
		refused:    map[string]string{},
		handshakes: map[string]handshake{},
	}
}

func (l *serverLog) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// onRefused is the server's kvs.Config.OnRefused.
func (l *serverLog) onRefused(peer, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused[peer] = reason
	l.notify()
}

// wrapTLS is the server's kvs.Config.WrapTLS: each handshake's
// configuration is cloned, optionally altered by weaken (tests only), and
// its VerifyConnection is wrapped to record the handshake and the server's
// verdict, which it returns unchanged.
func (l *serverLog) wrapTLS(weaken func(*tls.Config)) func(*tls.Config) *tls.Config {
	return func(base *tls.Config) *tls.Config {
		outer := base.Clone()
		get := base.GetConfigForClient
		outer.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := base
			if get != nil {
				c, err := get(hi)
				if err != nil {
					return nil, err
				}
				if c != nil {
					cfg = c
				}
			}
			cfg = cfg.Clone()
			cfg.GetConfigForClient = nil
			if weaken != nil {
				weaken(cfg)
			}
			peer := hi.Conn.RemoteAddr().String()
			verify := cfg.VerifyConnection
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				var err error
				if verify != nil {
					err = verify(cs)
				}
				l.mu.Lock()
				l.handshakes[peer] = handshake{version: cs.Version, suite: cs.CipherSuite, resumed: cs.DidResume, err: err}
				l.notify()
				l.mu.Unlock()
				return err
			}
			return cfg, nil
		}
		return outer
	}
}

// audit is a slog.Handler for the server's audit log: it keeps the request
// lines.
type auditHandler struct{ l *serverLog }

func (h auditHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h auditHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h auditHandler) WithGroup(string) slog.Handler            { return h }

func (h auditHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "request" {
		return nil
	}
	var rq request
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "peer":
			rq.peer = a.Value.String()
		case "identity":
			rq.identity = a.Value.String()
		case "op":
			rq.op = a.Value.String()
		case "key":
			rq.key = a.Value.String()
		case "status":
			rq.status = int(a.Value.Int64())
		}
		return true
	})
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	h.l.requests = append(h.l.requests, rq)
	h.l.notify()
	return nil
}

// awaitPeer waits (up to d) until the server has recorded a refusal or a
// request from peer, then describes what it saw of that connection. The
// server may log a refusal a moment after the client has its error, so
// waiting is needed; an accepted handshake without a refusal or request
// after d is reported as such.
func (l *serverLog) awaitPeer(ctx context.Context, peer string, d time.Duration) string {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		reason, refused := l.refused[peer]
		hs, shook := l.handshakes[peer]
		var reqs []request
		for _, r := range l.requests {
			if r.peer == peer {
				reqs = append(reqs, r)
			}
		}
		ch := l.changed
		l.mu.Unlock()
		if refused || len(reqs) > 0 {
			return describePeer(reason, refused, hs, shook, reqs)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return describePeer(reason, refused, hs, shook, reqs)
		case <-deadline.C:
			return describePeer(reason, refused, hs, shook, reqs)
		}
	}
}

func describePeer(reason string, refused bool, hs handshake, shook bool, reqs []request) string {
	var parts []string
	if shook {
		s := "handshake " + tls.VersionName(hs.version)
		if hs.suite != 0 && hs.version != tls.VersionTLS13 {
			s += " " + tls.CipherSuiteName(hs.suite)
		}
		if hs.resumed {
			s += ", resumed session"
		}
		if hs.err == nil && !refused {
			s += ", accepted"
		}
		parts = append(parts, s)
	}
	if refused {
		parts = append(parts, "refused: "+reason)
	}
	for _, r := range reqs {
		parts = append(parts, describeRequest(r))
	}
	if len(parts) == 0 {
		return "nothing logged"
	}
	return strings.Join(parts, "; ")
}

func describeRequest(r request) string {
	id := r.identity
	if id == "" {
		id = "(no certificate)"
	}
	return fmt.Sprintf("%s %s by %s -> %d", strings.ToUpper(r.op), r.key, id, r.status)
}

// awaitKey waits (up to d) until the server has logged n requests on key
// and describes them.
func (l *serverLog) awaitKey(ctx context.Context, key string, n int, d time.Duration) string {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		var parts []string
		for _, r := range l.requests {
			if r.key == key {
				parts = append(parts, describeRequest(r))
			}
		}
		ch := l.changed
		l.mu.Unlock()
		if len(parts) >= n {
			return strings.Join(parts, "; ")
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
		case <-deadline.C:
		}
		if len(parts) == 0 {
			return "nothing logged"
		}
		return strings.Join(parts, "; ")
	}
}
