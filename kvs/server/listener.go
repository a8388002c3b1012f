package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// TLSListener wraps ln so that Accept returns only connections whose TLS
// handshake has completed, and reports every handshake, accepted or
// refused, to onHandshake as a typed event: no reason is ever recovered by
// parsing a log line. Handshakes run concurrently, each bounded by timeout,
// so a slow or silent client holds only its own connection. A client that
// speaks plain HTTP gets the answer net/http gives it ("400 Bad Request").
//
// An http.Server serving the listener sees *tls.Conn connections whose
// handshake is done, and serves HTTP/2 on those that negotiated "h2".
func TLSListener(ln net.Listener, cfg *tls.Config, timeout time.Duration, onHandshake func(HandshakeEvent)) net.Listener {
	l := &tlsListener{
		inner:   ln,
		cfg:     cfg,
		timeout: timeout,
		observe: onHandshake,
		ready:   make(chan net.Conn),
		done:    make(chan struct{}),
		pending: map[net.Conn]struct{}{},
	}
	go l.acceptLoop()
	return l
}

type tlsListener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration
	observe func(HandshakeEvent)

	ready chan net.Conn // connections whose handshake completed
	done  chan struct{} // closed by Close

	mu      sync.Mutex
	err     error                 // the inner listener's final Accept error
	pending map[net.Conn]struct{} // connections still in their handshake
	closed  bool
}

// Accept returns the next connection whose handshake completed.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes the connections still in their
// handshake.
func (l *tlsListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	err := l.inner.Close()
	l.finish(nil)
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

// finish records the final error and wakes Accept, once.
func (l *tlsListener) finish(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return
	default:
	}
	if l.err == nil {
		l.err = err
	}
	close(l.done)
}

// acceptLoop accepts raw connections and hands each to a handshake
// goroutine. Temporary errors (too many open files) back off as net/http
// does; any other error ends the listener.
func (l *tlsListener) acceptLoop() {
	var delay time.Duration
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			l.finish(err)
			return
		}
		delay = 0
		if !l.track(raw) {
			raw.Close()
			return
		}
		go l.handshake(raw)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (l *tlsListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *tlsListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

// handshake runs the TLS handshake of raw, reports it and queues the
// connection for Accept when it succeeded.
func (l *tlsListener) handshake(raw net.Conn) {
	defer l.untrack(raw)
	start := time.Now()
	if l.timeout > 0 {
		_ = raw.SetDeadline(start.Add(l.timeout))
	}
	tc := tls.Server(raw, l.cfg)
	err := tc.HandshakeContext(context.Background())
	ev := HandshakeEvent{Peer: raw.RemoteAddr().String()}
	cs := tc.ConnectionState()
	ev.Version, ev.CipherSuite, ev.Resumed = cs.Version, cs.CipherSuite, cs.DidResume
	if len(cs.PeerCertificates) > 0 {
		ev.Client = cs.PeerCertificates[0]
	}
	if err != nil {
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			_, _ = io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			err = errPlaintextHTTP
		}
		ev.Err, ev.Reason, ev.Duration = err, ReasonOf(err), time.Since(start)
		l.observe(ev)
		raw.Close()
		return
	}
	ev.Duration = time.Since(start)
	_ = raw.SetDeadline(time.Time{}) // http.Server sets its own from here
	l.observe(ev)
	select {
	case l.ready <- tc:
	case <-l.done:
		tc.Close()
	}
}

// looksLikeHTTP reports whether the first five bytes of a connection are
// the start of a plain HTTP request (the same test net/http makes).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
