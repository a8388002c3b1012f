package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

// DefaultServer is the address a client uses when none is given.
const DefaultServer = "localhost:7443"

// Defaults of a Config.
const (
	DefaultTimeout = 30 * time.Second
	DefaultMaxIdle = 100
)

// Config configures a Client. Files (or TLS) is required.
type Config struct {
	Server string    // host:port or https://host:port; "" means DefaultServer
	Files  pki.Files // the client's certificate and key, and the CA bundle that signs the server's
	// TLS is the TLS side of Files: the host name to check, the minimum
	// version, session resumption.
	TLS pki.TLSOptions
	// TLSConfig, when set, is used as it is instead of loading Files:
	// for clients that share one session cache, or present an unusual
	// certificate. It is cloned, never modified. Without it the client
	// re-reads Files when they change (a renewed certificate, a rotated
	// CA bundle), for new connections.
	TLSConfig *tls.Config
	// TLSConfigFunc, when set (and TLSConfig is not), returns the
	// configuration of each new connection: for clients that share one
	// session cache and one reloading set of files ([pki.ClientTLS]).
	TLSConfigFunc func() *tls.Config

	// HTTP2 offers HTTP/2 in ALPN (the server picks it when it can). The
	// default is HTTP/1.1 over a pool of keep-alive connections: with one
	// request in flight per connection, HTTP/2's framing and its
	// goroutine per stream cost both sides CPU and buy nothing ('make
	// bench' measures both; docs/performance.md has the figures). Turn it
	// on for many concurrent requests through few connections.
	HTTP2 bool
	// HTTP1 forces HTTP/1.1 even when HTTP2 is set.
	HTTP1   bool
	NewConn bool          // a new TLS connection for every request (measures handshakes)
	MaxIdle int           // idle connections kept; 0 means DefaultMaxIdle
	Timeout time.Duration // per request; 0 means DefaultTimeout
}

// Client speaks the kvs HTTP API over mutual TLS. It is safe for concurrent
// use; create one and reuse it.
type Client struct {
	base   *url.URL
	hc     *http.Client
	stream *http.Client // hc without its overall timeout, for watches, long polls and snapshots
	tr     *http.Transport
	tls    func() *tls.Config // the configuration of a new connection
	closed atomic.Bool

	// The configuration of the moment and how many connections were made
	// with it: when the files are reloaded (a renewed certificate), the
	// connections made before are stale, and as many requests as there
	// were ask to close theirs, so that the next ones reconnect with the
	// new certificate before the old one expires.
	tlsOf   func() *tls.Config
	genMu   sync.Mutex
	genCur  *tls.Config
	genConn int64
	drain   atomic.Int64
}

var _ kvs.Store = (*Client)(nil)

// New loads the TLS files (unless cfg.TLSConfig is given) and prepares a
// client; it does not connect.
func New(cfg Config) (*Client, error) {
	tlsOf := cfg.TLSConfigFunc
	switch {
	case cfg.TLSConfig == nil && tlsOf == nil:
		ct, err := cfg.Files.NewClientTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		tlsOf = ct.Config
	case cfg.TLSConfig != nil:
		fixed := cfg.TLSConfig.Clone()
		tlsOf = func() *tls.Config { return fixed }
	}
	server := cfg.Server
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	base, err := url.Parse(server)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("invalid server address %q: want host:port", cfg.Server)
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = DefaultMaxIdle
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	h2 := cfg.HTTP2 && !cfg.HTTP1
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	c := &Client{base: base, tlsOf: tlsOf}
	c.tls = func() *tls.Config {
		t := c.generation(true).Clone()
		if t.ServerName == "" {
			t.ServerName = base.Hostname()
		}
		t.NextProtos = protos
		return t
	}
	nd := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		// Every connection takes the TLS configuration of the moment, so
		// that reloaded files apply to the next connection.
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second) // dial and handshake
			defer cancel()
			return (&tls.Dialer{NetDialer: nd, Config: c.tls()}).DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:   h2,
		MaxIdleConns:        cfg.MaxIdle,
		MaxIdleConnsPerHost: cfg.MaxIdle,
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   cfg.NewConn,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c.tr, c.hc = tr, &http.Client{Transport: tr, Timeout: cfg.Timeout}
	c.stream = &http.Client{Transport: tr}
	return c, nil
}

// Close releases idle connections. Calls after Close return
// kvs.ErrUnavailable.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.tr.CloseIdleConnections()
	return nil
}

func (c *Client) url(path string, q url.Values) *url.URL {
	u := *c.base
	u.Path = path
	u.RawQuery = q.Encode()
	return &u
}

func (c *Client) keyURL(key string) *url.URL {
	u := *c.base
	u.Path = kvs.KeyPath + key
	u.RawPath = kvs.KeyPath + url.PathEscape(key)
	return &u
}

// generation returns the TLS configuration of the moment. When it is new
// (the files were reloaded), the connections made with the previous ones
// are to be drained. dial counts a new connection.
func (c *Client) generation(dial bool) *tls.Config {
	cfg := c.tlsOf()
	c.genMu.Lock()
	defer c.genMu.Unlock()
	if cfg != c.genCur {
		if c.genCur != nil {
			c.drain.Add(c.genConn)
		}
		c.genCur, c.genConn = cfg, 0
	}
	if dial {
		c.genConn++
	}
	return cfg
}

// draining reports whether this request should close its connection after
// the response: one of the connections made before a reload.
func (c *Client) draining() bool {
	c.generation(false)
	for {
		n := c.drain.Load()
		if n <= 0 {
			return false
		}
		if c.drain.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// do sends a request and turns transport and status errors into the
// package's errors.
func (c *Client) do(ctx context.Context, method string, u *url.URL, body []byte, hdr http.Header) (*http.Response, error) {
	return c.send(ctx, c.hc, method, u, body, hdr)
}

// send is do on hc.
func (c *Client) send(ctx context.Context, hc *http.Client, method string, u *url.URL, body []byte, hdr http.Header) (*http.Response, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("%s %s: %w: client closed", method, u.Path, kvs.ErrUnavailable)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	// HTTP/1.1 closes the connection after the response; HTTP/2 lets the
	// streams in flight finish and sends no new ones to it.
	req.Close = c.draining()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var e kvs.CompactedResponse
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return nil, &StatusError{Code: resp.StatusCode, Message: e.Error, Oldest: e.Oldest}
	}
	return resp, nil
}

// Get returns the value, version and update time of key.
func (c *Client) Get(ctx context.Context, key string) (kvs.Entry, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return kvs.Entry{}, err
	}
	resp, err := c.do(ctx, http.MethodGet, c.keyURL(key), nil, nil)
	if err != nil {
		return kvs.Entry{}, err
	}
	defer resp.Body.Close()
	var value []byte
	if resp.ContentLength >= 0 {
		value = make([]byte, resp.ContentLength)
		_, err = io.ReadFull(resp.Body, value)
	} else {
		value, err = io.ReadAll(resp.Body)
	}
	if err != nil {
		return kvs.Entry{}, fmt.Errorf("read value: %w", err)
	}
	e := kvs.Entry{Key: key, Value: value}
	e.Version, _ = strconv.ParseInt(strings.Trim(resp.Header.Get("Etag"), `"`), 10, 64)
	if t, err := time.Parse(time.RFC3339Nano, resp.Header.Get(kvs.HeaderUpdated)); err == nil {
		e.Updated = t.UTC()
	}
	return e, nil
}

func condHeader(cond kvs.Cond) http.Header {
	h := http.Header{}
	if cond.IfVersion != 0 {
		h.Set("If-Match", `"`+strconv.FormatInt(cond.IfVersion, 10)+`"`)
	}
	if cond.CreateOnly {
		h.Set("If-None-Match", "*")
	}
	return h
}

// Put stores value under key and returns its new version.
func (c *Client) Put(ctx context.Context, key string, value []byte, cond kvs.Cond) (int64, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return 0, err
	}
	if !cond.Satisfiable() {
		return 0, kvs.ErrPrecondition
	}
	return c.putQuery(ctx, key, value, cond, nil)
}

// putQuery is Put with query parameters.
func (c *Client) putQuery(ctx context.Context, key string, value []byte, cond kvs.Cond, q url.Values) (int64, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return 0, err
	}
	if !cond.Satisfiable() {
		return 0, kvs.ErrPrecondition
	}
	if value == nil {
		value = []byte{}
	}
	u := c.keyURL(key)
	u.RawQuery = q.Encode()
	resp, err := c.do(ctx, http.MethodPut, u, value, condHeader(cond))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out kvs.PutResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("decode answer: %w", err)
	}
	return out.Version, nil
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key string, cond kvs.Cond) error {
	if err := kvs.ValidateKey(key); err != nil {
		return err
	}
	if cond.CreateOnly || cond.IfVersion < 0 {
		// The server refuses If-None-Match on DELETE and a negative
		// If-Match; as conditions they cannot hold for an existing key,
		// which is what the Store contract says.
		if _, err := c.Get(ctx, key); err != nil {
			return err
		}
		return kvs.ErrPrecondition
	}
	resp, err := c.do(ctx, http.MethodDelete, c.keyURL(key), nil, condHeader(cond))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// List returns up to limit keys with prefix after the cursor, and the cursor
// of the next page ("" when there is none). A limit < 1 means
// kvs.MaxPageSize, as for every Store.
func (c *Client) List(ctx context.Context, prefix, after string, limit int) ([]kvs.KeyInfo, string, error) {
	if err := kvs.CheckList(prefix, after); err != nil {
		return nil, "", err
	}
	if limit < 1 || limit > kvs.MaxPageSize {
		limit = kvs.MaxPageSize
	}
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if after != "" {
		q.Set("after", after)
	}
	q.Set("limit", strconv.Itoa(limit))
	resp, err := c.do(ctx, http.MethodGet, c.url(kvs.ListPath, q), nil, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var out kvs.ListResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, "", fmt.Errorf("decode answer: %w", err)
	}
	return out.Keys, out.Next, nil
}

// Ping asks the server (/healthz) whether it and its store answer.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, c.url(kvs.HealthPath, nil), nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// probeWait bounds how long transportError waits for the server's verdict on
// its probe connection.
const probeWait = time.Second

// transportError classifies a failed request. In TLS 1.3 the server judges
// the client certificate only after the client has finished its half of the
// handshake, so a refusal often reaches the HTTP transport as a broken pipe,
// a reset or an HTTP/2 connection that "could not be established", without
// the alert. When the error is not explained otherwise, one probe connection
// asks again and reads the server's first record: an alert there means the
// server refuses this client (the server logs that handshake too).
func (c *Client) transportError(ctx context.Context, err error) error {
	if cerr := classifyTransport(err); cerr != err {
		return cerr
	}
	var op *net.OpError
	var ne net.Error
	if ctx.Err() != nil || errors.As(err, &op) && op.Op == "dial" || errors.As(err, &ne) && ne.Timeout() {
		return err // the caller gave up, nothing listens there, or no answer
	}
	if perr := c.probe(ctx); perr != nil {
		return perr
	}
	return err
}

// probe connects once more and returns the classified error when the server
// refuses the handshake or sends an alert right after it, else nil.
func (c *Client) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*probeWait)
	defer cancel()
	addr := c.base.Host
	if c.base.Port() == "" {
		addr = net.JoinHostPort(c.base.Hostname(), "443")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: probeWait}, Config: c.tls()}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(probeWait))
		_, err = conn.Read(make([]byte, 1))
	}
	if err == nil {
		return nil
	}
	if cerr := classifyTransport(err); cerr != err {
		return cerr
	}
	return nil
}
