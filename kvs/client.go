package kvs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultServer is the address clients use when none is given.
const DefaultServer = "localhost:7443"

// Client errors, besides the store's ErrNotFound, ErrPrecondition,
// ErrUnavailable and ErrInvalidKey, which a [StatusError] matches with
// errors.Is.
var (
	// ErrRejected means the server refused this client: a TLS alert during
	// the handshake (unknown CA, revoked, expired...) or a 403 from the
	// policy.
	ErrRejected = errors.New("kvs: refused by the server")
	// ErrUntrustedServer means this client refused the server: its
	// certificate does not chain to the CA bundle or does not name the
	// host. No request was sent.
	ErrUntrustedServer = errors.New("kvs: server certificate not trusted")
)

// StatusError is an error answer of the server.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
}

// Is lets errors.Is match a StatusError against the package's sentinels.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == http.StatusNotFound
	case ErrPrecondition:
		return e.Code == http.StatusPreconditionFailed
	case ErrForbidden, ErrRejected:
		return e.Code == http.StatusForbidden
	case ErrUnavailable:
		return e.Code == http.StatusServiceUnavailable
	case ErrInvalidKey:
		return e.Code == http.StatusBadRequest
	}
	return false
}

// ClientConfig configures a [Client].
type ClientConfig struct {
	Server  string   // host:port or https://host:port; "" means DefaultServer
	Files   TLSFiles // client certificate, key and the CA bundle for the server
	TLS     ClientOptions
	HTTP1   bool          // use HTTP/1.1 only (default: HTTP/2 when the server offers it)
	NewConn bool          // a new TLS connection for every request (measures handshakes)
	MaxIdle int           // idle connections kept; 0 means 100
	Timeout time.Duration // per request; 0 means 30s
}

// Client speaks the kvs HTTP API over mutual TLS. It is safe for concurrent
// use; create one and reuse it.
type Client struct {
	base *url.URL
	hc   *http.Client
	tr   *http.Transport
}

// NewClient loads the TLS files and prepares a client; it does not connect.
func NewClient(cfg ClientConfig) (*Client, error) {
	tlsCfg, err := cfg.Files.ClientConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	return NewClientTLS(cfg, tlsCfg)
}

// NewClientTLS is NewClient with a ready tls.Config (used by tests and by
// kvsctl attack to present unusual certificates).
func NewClientTLS(cfg ClientConfig, tlsCfg *tls.Config) (*Client, error) {
	server := cfg.Server
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	base, err := url.Parse(server)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("invalid server address %q: use host:port", cfg.Server)
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 100
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   !cfg.HTTP1,
		MaxIdleConns:        cfg.MaxIdle,
		MaxIdleConnsPerHost: cfg.MaxIdle,
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   cfg.NewConn,
	}
	if cfg.HTTP1 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &Client{base: base, tr: tr, hc: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

func (c *Client) keyURL(key string) *url.URL {
	u := *c.base
	u.Path = keyPrefix + key
	u.RawPath = keyPrefix + url.PathEscape(key)
	return &u
}

// do sends a request and turns transport and status errors into the
// package's errors.
func (c *Client) do(ctx context.Context, method string, u *url.URL, body []byte, hdr http.Header) (*http.Response, error) {
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
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return nil, &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// classifyTransport tells apart the server refusing us, us refusing the
// server, and plain network errors.
func classifyTransport(err error) error {
	var cve *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var uae x509.UnknownAuthorityError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &hostErr) || errors.As(err, &uae) || errors.As(err, &cie) {
		return fmt.Errorf("%w: %w", ErrUntrustedServer, err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return err
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
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: probeWait}, Config: c.tr.TLSClientConfig}
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

// Get returns the value and version of key.
func (c *Client) Get(ctx context.Context, key string) (Entry, error) {
	resp, err := c.do(ctx, http.MethodGet, c.keyURL(key), nil, nil)
	if err != nil {
		return Entry{}, err
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
		return Entry{}, fmt.Errorf("read value: %w", err)
	}
	v, _ := strconv.ParseInt(strings.Trim(resp.Header.Get("Etag"), `"`), 10, 64)
	return Entry{Key: key, Value: value, Version: v}, nil
}

func condHeader(cond Cond) http.Header {
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
func (c *Client) Put(ctx context.Context, key string, value []byte, cond Cond) (int64, error) {
	if value == nil {
		value = []byte{}
	}
	resp, err := c.do(ctx, http.MethodPut, c.keyURL(key), value, condHeader(cond))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Version int64 `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("decode answer: %w", err)
	}
	return out.Version, nil
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key string, cond Cond) error {
	resp, err := c.do(ctx, http.MethodDelete, c.keyURL(key), nil, condHeader(cond))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// List returns up to limit keys with prefix after the cursor, and the cursor
// of the next page ("" when there is none).
func (c *Client) List(ctx context.Context, prefix, after string, limit int) ([]KeyInfo, string, error) {
	u := *c.base
	u.Path = "/v1/kv"
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	u.RawQuery = q.Encode()
	resp, err := c.do(ctx, http.MethodGet, &u, nil, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var out listResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, "", fmt.Errorf("decode answer: %w", err)
	}
	return out.Keys, out.Next, nil
}

// Health asks the server whether its store answers.
func (c *Client) Health(ctx context.Context) error {
	u := *c.base
	u.Path = "/healthz"
	resp, err := c.do(ctx, http.MethodGet, &u, nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
