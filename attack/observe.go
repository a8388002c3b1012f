package attack

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kvsctl/kvsctl/kvs/server"
)

// serverLog collects what the demo server saw, so each scenario can report
// the server's side next to the client's. It is an observer of the
// server's typed events (server.Observer): every handshake with its
// version, resumption and verdict, and every request. Handshakes are
// matched to an attacker by its local address, requests by key. Nothing
// here reads a log line.
type serverLog struct {
	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every event
	handshakes map[string]server.HandshakeEvent
	requests   []server.RequestEvent
}

func newServerLog() *serverLog {
	return &serverLog{
		changed:    make(chan struct{}),
		handshakes: map[string]server.HandshakeEvent{},
	}
}

func (l *serverLog) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// observer is the demo server's server.Config.Observer.
func (l *serverLog) observer() server.Observer {
	return server.Observer{Handshake: l.onHandshake, Request: l.onRequest}
}

func (l *serverLog) onHandshake(e server.HandshakeEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handshakes[e.Peer] = e
	l.notify()
}

func (l *serverLog) onRequest(e server.RequestEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests = append(l.requests, e)
	l.notify()
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
		hs, shook := l.handshakes[peer]
		var reqs []server.RequestEvent
		for _, r := range l.requests {
			if r.Peer == peer {
				reqs = append(reqs, r)
			}
		}
		ch := l.changed
		l.mu.Unlock()
		if shook && hs.Err != nil || len(reqs) > 0 {
			return describePeer(hs, shook, reqs)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return describePeer(hs, shook, reqs)
		case <-deadline.C:
			return describePeer(hs, shook, reqs)
		}
	}
}

func describePeer(hs server.HandshakeEvent, shook bool, reqs []server.RequestEvent) string {
	var parts []string
	if shook && hs.Version != 0 && (hs.Err == nil || hs.Resumed || hs.Client != nil) {
		// The handshake got far enough to say how it went.
		s := "handshake " + tls.VersionName(hs.Version)
		if hs.CipherSuite != 0 && hs.Version != tls.VersionTLS13 {
			s += " " + tls.CipherSuiteName(hs.CipherSuite)
		}
		if hs.Resumed {
			s += ", resumed session"
		}
		if hs.Err == nil {
			s += ", accepted"
		}
		parts = append(parts, s)
	}
	if shook && hs.Err != nil {
		parts = append(parts, "refused: "+hs.Err.Error())
	}
	for _, r := range reqs {
		parts = append(parts, describeRequest(r))
	}
	if len(parts) == 0 {
		return "nothing logged"
	}
	return strings.Join(parts, "; ")
}

func describeRequest(r server.RequestEvent) string {
	id := r.Identity
	if id == "" {
		id = "(no certificate)"
	}
	return fmt.Sprintf("%s %s by %s -> %d", strings.ToUpper(r.Op), r.Key, id, r.Status)
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
			if r.Key == key {
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

// refusal waits (up to d) until the server has refused the handshake of
// peer and returns that event; ok is false when it recorded no refusal.
func (l *serverLog) refusal(ctx context.Context, peer string, d time.Duration) (server.HandshakeEvent, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		hs, shook := l.handshakes[peer]
		ch := l.changed
		l.mu.Unlock()
		if shook && hs.Err != nil {
			return hs, true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return server.HandshakeEvent{}, false
		case <-deadline.C:
			return server.HandshakeEvent{}, false
		}
	}
}
