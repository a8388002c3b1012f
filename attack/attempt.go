package attack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// attemptTimeout bounds one connection attempt.
const attemptTimeout = 10 * time.Second

// attempt is one connection of an attacker to the server: a TLS handshake
// with a configuration the attacker chose, then one HTTP/1.1 request on
// that connection. It is done by hand rather than with http.Transport so
// that the local address is known (to find the server's side in its log),
// the handshake error is told apart from the answer, and nothing retries.
type attempt struct {
	local     string              // the attacker's local address
	dialErr   error               // could not reach the server at all
	handshake error               // the handshake failed on the attacker's side
	state     tls.ConnectionState // when the handshake completed on the attacker's side
	readErr   error               // the handshake "completed" but the server closed with an alert (TLS 1.3 client auth)
	status    int                 // HTTP status of the answer, 0 when there was none
	body      string              // start of the answer's body
}

// accepted reports whether the server let the connection through to HTTP.
func (a attempt) accepted() bool { return a.status != 0 }

// clientSaw is the attacker's view in one line.
func (a attempt) clientSaw() string {
	switch {
	case a.dialErr != nil:
		return a.dialErr.Error()
	case a.handshake != nil:
		return a.handshake.Error()
	case a.readErr != nil:
		return a.readErr.Error()
	}
	return answer(a.status, a.body)
}

func answer(status int, body string) string {
	s := fmt.Sprintf("HTTP %d", status)
	if b := strings.TrimSpace(body); b != "" {
		s += ": " + b
	}
	return s
}

// newRequest builds the attacker's request: a PUT of key, or a GET when key
// is empty (a harmless request to establish a session).
func newRequest(host, key string) *http.Request {
	u := &url.URL{Scheme: "https", Host: host, Path: "/healthz"}
	method, body := http.MethodGet, []byte(nil)
	if key != "" {
		method, body = http.MethodPut, []byte("written by kvsctl attack: this write should have been refused")
		u.Path = "/v1/kv/" + key
		u.RawPath = "/v1/kv/" + url.PathEscape(key)
	}
	req, _ := http.NewRequest(method, u.String(), bytes.NewReader(body))
	req.Close = true
	return req
}

// tryTLS connects to addr with cfg and sends the request for key (see
// newRequest).
func tryTLS(ctx context.Context, addr string, cfg *tls.Config, key string) attempt {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var a attempt
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		a.dialErr = fmt.Errorf("connect to %s: %w", addr, err)
		return a
	}
	defer raw.Close()
	a.local = raw.LocalAddr().String()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		a.handshake = err
		return a
	}
	a.state = conn.ConnectionState()
	req := newRequest(hostOf(addr, cfg.ServerName), key)
	if err := req.Write(conn); err != nil {
		// The server may have refused the connection right after its part
		// of the handshake (TLS 1.3) and closed it while the request was
		// on its way: the reason is the alert waiting to be read.
		a.readErr = err
		if _, rerr := conn.Read(make([]byte, 1)); isRemoteAlert(rerr) {
			a.readErr = rerr
		}
		return a
	}
	a.status, a.body, a.readErr = readAnswer(conn, req)
	return a
}

// tryPlain sends the request for key as plain HTTP to addr.
func tryPlain(ctx context.Context, addr, key string) attempt {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var a attempt
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		a.dialErr = fmt.Errorf("connect to %s: %w", addr, err)
		return a
	}
	defer conn.Close()
	a.local = conn.LocalAddr().String()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req := newRequest(hostOf(addr, ""), key)
	req.URL.Scheme = "http"
	if err := req.Write(conn); err != nil {
		a.readErr = err
		return a
	}
	a.status, a.body, a.readErr = readAnswer(conn, req)
	return a
}

func readAnswer(conn io.Reader, req *http.Request) (int, string, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(b), nil
}

func hostOf(addr, serverName string) string {
	if serverName != "" {
		_, port, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(serverName, port)
	}
	return addr
}

// errText is err's message without the request URL that net/http puts in
// front of transport errors ("Put \"https://...\": "): the reason is what
// matters, and the key in the URL is in the report already.
func errText(err error) string {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = strings.Replace(msg, ue.Error(), ue.Err.Error(), 1)
	}
	return msg
}

// isRemoteAlert reports whether err is a TLS alert sent by the peer.
func isRemoteAlert(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	var ae tls.AlertError
	return errors.As(err, &ae)
}
