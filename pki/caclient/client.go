// Package caclient talks to the online CA of package caserver: it
// bootstraps trust by a root's fingerprint, enrolls with a token, renews
// over mutual TLS, revokes, and runs the renewal agent that keeps
// certificate files fresh ('kvsctl pki enroll', 'kvsctl pki renew
// --daemon').
package caclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// ErrFingerprint means no root the CA serves has the fingerprint given:
// the URL reaches another CA, or someone in between.
var ErrFingerprint = errors.New("caclient: CA fingerprint mismatch")

// ErrUnreachable wraps failures to reach the CA at all (connection,
// timeout, TLS): worth retrying. Refusals by the CA are *RefusedError.
var ErrUnreachable = errors.New("caclient: CA unreachable")

// RefusedError is an answer of the CA that is not a success.
type RefusedError struct {
	Status  int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the CA refused (HTTP %d): %s", e.Status, e.Message)
}

// Client is a connection to the online CA, whose TLS certificate it
// verifies against Roots.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// Options configures a Client.
type Options struct {
	// Roots verify the CA's TLS certificate (the trust bundle).
	Roots *x509.CertPool
	// Certificate, when set, is presented for renewal and revocation. It
	// is called for every new connection, so that it can be re-read.
	Certificate func() (*tls.Certificate, error)
	Timeout     time.Duration // per request; 0 means 30s
}

// New returns a client of the CA at caURL (https://host:port).
func New(caURL string, o Options) (*Client, error) {
	base, err := url.Parse(caURL)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("invalid CA URL %q: want https://HOST:PORT", caURL)
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	cfg := &tls.Config{RootCAs: o.Roots, MinVersion: tls.VersionTLS12}
	if o.Certificate != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return o.Certificate() }
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, DisableKeepAlives: o.Certificate != nil}
	return &Client{base: base, hc: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// Bootstrap fetches the CA's trust bundle on first contact and checks it
// by fingerprint: the TLS connection is not verified at first (the bundle
// is what is missing), so one root of the answer must have the SHA-256
// fingerprint given (hex, colons optional, as 'pki init' and 'pki serve'
// print it), and the bundle is then fetched again over a connection
// verified against that root, host name included. It returns the bundle.
func Bootstrap(ctx context.Context, caURL, fingerprint string) ([]*x509.Certificate, []byte, error) {
	want := normalizeFP(fingerprint)
	if len(want) != 64 {
		return nil, nil, fmt.Errorf("invalid fingerprint %q: give the root's full SHA-256 fingerprint, 64 hex digits", fingerprint)
	}
	u, err := url.Parse(caURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("invalid CA URL %q: want https://HOST:PORT", caURL)
	}
	// First contact: unauthenticated, on purpose; what it returns is
	// checked by fingerprint before it is trusted.
	insecure := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
	}}
	data, err := get(ctx, insecure, u.JoinPath(caserver.PathCA).String())
	if err != nil {
		return nil, nil, err
	}
	certs, err := pki.ParseCerts(data)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's trust bundle: %w", err)
	}
	var pinned *x509.Certificate
	var seen []string
	for _, c := range certs {
		fp := normalizeFP(pki.Fingerprint(c.Raw))
		seen = append(seen, fp[:16])
		if fp == want {
			pinned = c
		}
	}
	if pinned == nil {
		return nil, nil, fmt.Errorf("%w: %s serves roots %s..., none with the fingerprint %s", ErrFingerprint, caURL, strings.Join(seen, "..., "), fingerprint)
	}
	pool := x509.NewCertPool()
	pool.AddCert(pinned)
	c, err := New(caURL, Options{Roots: pool})
	if err != nil {
		return nil, nil, err
	}
	again, err := get(ctx, c.hc, u.JoinPath(caserver.PathCA).String())
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's certificate does not chain to the pinned root: %w", err)
	}
	if !bytes.Equal(again, data) {
		return nil, nil, errors.New("the CA's trust bundle changed between two reads: try again")
	}
	return certs, data, nil
}

func normalizeFP(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s)))
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Enroll redeems a token for a certificate of the CSR's key.
func (c *Client) Enroll(ctx context.Context, token string, csrPEM []byte, profile pki.Profile) (*caserver.Certificate, error) {
	var out caserver.Certificate
	err := c.post(ctx, caserver.PathEnroll, caserver.EnrollRequest{Token: token, CSR: string(csrPEM), Profile: string(profile)}, &out)
	return &out, err
}

// Renew asks for the certificate that follows the one the client
// presents, for the CSR's new key.
func (c *Client) Renew(ctx context.Context, csrPEM []byte) (*caserver.Certificate, error) {
	var out caserver.Certificate
	err := c.post(ctx, caserver.PathRenew, caserver.RenewRequest{CSR: string(csrPEM)}, &out)
	return &out, err
}

// Revoke revokes a serial (the client's certificate must be an admin's).
func (c *Client) Revoke(ctx context.Context, serial, reason string) (*caserver.Revocation, error) {
	var out caserver.Revocation
	err := c.post(ctx, caserver.PathRevoke, caserver.RevokeRequest{Serial: serial, Reason: reason}, &out)
	return &out, err
}

// Bundle fetches the trust bundle.
func (c *Client) Bundle(ctx context.Context) ([]byte, error) {
	return get(ctx, c.hc, c.base.JoinPath(caserver.PathCA).String())
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: read answer: %w", ErrUnreachable, err)
	}
	if resp.StatusCode/100 != 2 {
		var e caserver.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &RefusedError{Status: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode the CA's answer: %w", err)
	}
	return nil
}

func get(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrUnreachable, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &RefusedError{Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	}
	return data, nil
}

// NewCSR makes a key of type kt and a PEM CSR with the subject and SANs of
// tmpl.
func NewCSR(kt pki.KeyType, tmpl *x509.CertificateRequest) (crypto.Signer, []byte, error) {
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s key: %w", kt, err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
