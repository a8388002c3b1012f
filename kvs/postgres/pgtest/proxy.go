package pgtest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP connections to a target, for outage tests. It can freeze (accept and
// hold data without forwarding, like a hung server), stop (close
// everything, so connections are refused) and restart on the same address.
type Proxy struct {
	t      testing.TB
	target string
	Addr   string // host:port (127.0.0.1 unless StartProxyAt), the same across Restart
	frozen atomic.Bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

// StartProxy forwards 127.0.0.1:port (Proxy.Addr) to target until the test
// ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return StartProxyAt(t, "127.0.0.1:0", target)
}

// StartProxyAt is StartProxy listening on addr, e.g. 127.0.0.2:0: another
// address of the same server, for a host name check.
func StartProxyAt(t testing.TB, addr, target string) *Proxy {
	t.Helper()
	p := &Proxy{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Stop)
	return p
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *Proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go p.pipe(up, c)
	p.pipe(c, up)
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.frozen.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: the other side goes too
		}
	}
}

// Freeze holds all data in flight, like a hung server; Thaw lets it go.
func (p *Proxy) Freeze() { p.frozen.Store(true) }

// Thaw undoes Freeze.
func (p *Proxy) Thaw() { p.frozen.Store(false) }

// Stop closes the listener and every connection.
func (p *Proxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.frozen.Store(false)
}

// Restart listens again on the same address after Stop.
func (p *Proxy) Restart() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		p.t.Fatalf("restart proxy on %s: %v", p.Addr, err)
	}
	p.serve(ln)
}
