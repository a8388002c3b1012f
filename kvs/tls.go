package kvs

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// TLSFiles names the files one side of a connection needs. It has the same
// shape as pki.Files, so TLSFiles(pkiFiles) converts.
type TLSFiles struct {
	CA   string // PEM bundle of the roots that sign the peer's certificate
	Cert string // this side's certificate (PEM)
	Key  string // this side's private key (PEM, 0600)
	CRL  string // server only: CRL to check client certificates against
}

// ServerFilesFromDir returns the server's files of a PKI directory, in either
// mode (see pki.Dir.ServerFiles).
func ServerFilesFromDir(dir string) (TLSFiles, error) {
	f, err := pki.Dir(dir).ServerFiles()
	return TLSFiles(f), err
}

// ClientFilesFromDir returns the default client's files of a PKI directory,
// in either mode (see pki.Dir.ClientFiles).
func ClientFilesFromDir(dir string) (TLSFiles, error) {
	f, err := pki.Dir(dir).ClientFiles()
	return TLSFiles(f), err
}

// aeadSuites are the only TLS 1.2 cipher suites the server accepts: ECDHE key
// exchange with an AEAD cipher. TLS 1.3 suites are all AEAD and not
// configurable.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ParseTLSVersion parses "1.2" or "1.3".
func ParseTLSVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported minimum TLS version %q: use 1.2 or 1.3", s)
}

// ServerTLSOptions configures [NewServerTLS].
type ServerTLSOptions struct {
	MinVersion uint16       // tls.VersionTLS12 (default) or tls.VersionTLS13
	Logger     *slog.Logger // nil discards
	Now        func() time.Time
}

// ServerTLS holds the server's TLS material as an immutable snapshot behind
// an atomic pointer. Reload builds a new snapshot and swaps it in; a
// connection always sees one consistent set of certificate, roots and CRL.
type ServerTLS struct {
	files  TLSFiles
	opts   ServerTLSOptions
	log    *slog.Logger
	ticket [32]byte // session ticket key, stable across reloads
	snap   atomic.Pointer[tlsSnapshot]

	reloadMu sync.Mutex                // serialises Reload; never held on the handshake path
	failed   atomic.Pointer[fileStamp] // files of the last failed reload, not retried until they change
	lastLoud atomic.Int64
}

// tlsSnapshot is one loaded set of TLS material. It is never modified.
type tlsSnapshot struct {
	cert   tls.Certificate
	leaf   *x509.Certificate
	roots  *x509.CertPool
	crl    *pki.CRL // nil when no CRL is configured
	config *tls.Config
	stamp  fileStamp
}

// NewServerTLS loads the server's files and checks them, so that a bad file
// fails at start rather than at the first connection.
func NewServerTLS(files TLSFiles, opts ServerTLSOptions) (*ServerTLS, error) {
	if opts.MinVersion == 0 {
		opts.MinVersion = tls.VersionTLS12
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &ServerTLS{files: files, opts: opts, log: orDiscard(opts.Logger)}
	if _, err := rand.Read(s.ticket[:]); err != nil {
		return nil, fmt.Errorf("session ticket key: %w", err)
	}
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	s.snap.Store(snap)
	return s, nil
}

// Config returns the tls.Config to serve with. Every handshake picks up the
// current snapshot through GetConfigForClient, so reloads need no restart.
func (s *ServerTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: s.opts.MinVersion,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.snap.Load().config, nil
		},
	}
}

// Leaf returns the server certificate currently served.
func (s *ServerTLS) Leaf() *x509.Certificate { return s.snap.Load().leaf }

// Reload re-reads the files. On success the new material serves every new
// connection and Reload reports what it loaded; on failure the previous
// material stays in use and the error says why.
func (s *ServerTLS) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	stamp := stampFiles(s.paths())
	snap, err := s.load()
	if err != nil {
		s.failed.Store(&stamp)
		s.log.Error("tls reload failed, keeping the previous certificates", "err", err)
		return err
	}
	s.snap.Store(snap)
	return nil
}

// changed reports whether any file differs from the current snapshot.
func (s *ServerTLS) changed() bool {
	st := stampFiles(s.paths())
	if f := s.failed.Load(); f != nil && *f == st {
		return false
	}
	return st != s.snap.Load().stamp
}

func (s *ServerTLS) paths() []string {
	return []string{s.files.Cert, s.files.Key, s.files.CA, s.files.CRL}
}

// load builds a snapshot from the files.
func (s *ServerTLS) load() (*tlsSnapshot, error) {
	f := s.files
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("the server needs a certificate, a key and a CA bundle: run 'kvsctl pki init' or give --cert, --key and --ca")
	}
	stamp := stampFiles(s.paths())
	if err := pki.CheckKeyPerm(f.Key); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load server certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	leaf := cert.Leaf
	now := s.opts.Now()
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("server certificate %s expired on %s: renew it with 'kvsctl pki renew %s'", f.Cert, leaf.NotAfter.UTC().Format(time.RFC3339), f.Cert)
	}
	cas, err := pki.LoadCerts(f.CA)
	if err != nil {
		return nil, fmt.Errorf("load client CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	snap := &tlsSnapshot{cert: cert, leaf: leaf, roots: roots, stamp: stamp}
	if f.CRL != "" {
		// An expired CRL still loads (its signature must verify): the
		// server then refuses every client, loudly, until it is re-signed.
		data, err := os.ReadFile(f.CRL)
		if err != nil {
			return nil, fmt.Errorf("read CRL %s: %w", f.CRL, err)
		}
		rl, err := pki.ParseCRL(data)
		if err != nil {
			return nil, fmt.Errorf("read CRL %s: %w", f.CRL, err)
		}
		issuer := crlIssuer(rl, cas)
		if issuer == nil {
			return nil, fmt.Errorf("CRL %s was not issued by any CA in %s", f.CRL, f.CA)
		}
		if snap.crl, err = pki.NewCRL(rl, issuer); err != nil {
			return nil, fmt.Errorf("read CRL %s: %w", f.CRL, err)
		}
		if err := snap.crl.Check(now); err != nil {
			s.log.Error("the CRL is not current: every client will be refused until it is re-signed", "crl", f.CRL, "err", err)
		}
	}
	snap.config = &tls.Config{
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        roots,
		MinVersion:       s.opts.MinVersion,
		CipherSuites:     aeadSuites,
		NextProtos:       []string{"h2", "http/1.1"},
		VerifyConnection: s.verifyConnection(snap),
		Time:             s.opts.Now,
	}
	snap.config.SetSessionTicketKeys([][32]byte{s.ticket})
	attrs := []any{"cert", f.Cert, "serial", pki.SerialHex(leaf), "not_after", leaf.NotAfter.UTC(), "client_cas", len(cas)}
	if snap.crl != nil {
		attrs = append(attrs, "crl_number", snap.crl.List.Number, "crl_revoked", len(snap.crl.List.RevokedCertificateEntries), "crl_next_update", snap.crl.List.NextUpdate.UTC())
	}
	s.log.Info("tls material loaded", attrs...)
	return snap, nil
}

// crlIssuer finds the CA of the bundle that issued the CRL.
func crlIssuer(rl *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, c := range cas {
		if string(c.RawSubject) == string(rl.RawIssuer) && rl.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// ErrRevoked is wrapped by the handshake error of a revoked client.
var ErrRevoked = errors.New("kvs: certificate revoked")

// verifyConnection runs on every handshake, resumed ones included (unlike
// VerifyPeerCertificate). It re-verifies the chain of a resumed session
// against the current roots, and checks the CRL, failing closed when the CRL
// has expired.
func (s *ServerTLS) verifyConnection(snap *tlsSnapshot) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("kvs: no client certificate")
		}
		leaf := cs.PeerCertificates[0]
		if cs.DidResume {
			opts := x509.VerifyOptions{
				Roots: snap.roots, CurrentTime: s.opts.Now(),
				Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := leaf.Verify(opts); err != nil {
				return fmt.Errorf("kvs: resumed session no longer valid: %w", err)
			}
		}
		if snap.crl == nil {
			return nil
		}
		if err := snap.crl.Check(s.opts.Now()); err != nil {
			s.loud("refusing every client: the CRL is not current; run 'kvsctl pki crl' to re-sign it", err)
			return fmt.Errorf("kvs: cannot check revocation, failing closed: %w", err)
		}
		if snap.crl.Revoked(leaf.SerialNumber) {
			return fmt.Errorf("%w: serial %s (%s)", ErrRevoked, serialText(leaf.SerialNumber), leaf.Subject.CommonName)
		}
		return nil
	}
}

// checkPeer re-checks the client certificate of an established connection
// against the current CRL, for every request. VerifyConnection runs only in
// the handshake, and a keep-alive or HTTP/2 connection opened before a
// revocation (or before the CRL expired) would otherwise keep working for
// as long as the client keeps it busy.
func (s *ServerTLS) checkPeer(cs *tls.ConnectionState) error {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	snap := s.snap.Load()
	if snap.crl == nil {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if err := snap.crl.Check(s.opts.Now()); err != nil {
		return fmt.Errorf("kvs: cannot check revocation, failing closed: %w", err)
	}
	if snap.crl.Revoked(leaf.SerialNumber) {
		return fmt.Errorf("%w: serial %s (%s)", ErrRevoked, serialText(leaf.SerialNumber), leaf.Subject.CommonName)
	}
	return nil
}

// loud logs an error at most once every 10 seconds, so that a fail-closed
// condition is visible without flooding the log under load.
func (s *ServerTLS) loud(msg string, err error) {
	now := time.Now().UnixNano()
	last := s.lastLoud.Load()
	if now-last < int64(10*time.Second) || !s.lastLoud.CompareAndSwap(last, now) {
		return
	}
	s.log.Error(msg, "err", err)
}

func serialText(n *big.Int) string { return n.Text(16) }

// ClientOptions configures the client side of TLS and HTTP.
type ClientOptions struct {
	ServerName string // overrides the host name checked against the server certificate
	MinVersion uint16 // default TLS 1.2
	NoResume   bool   // disable TLS session resumption
}

// ClientConfig builds the client's tls.Config: the server's chain and host
// name are always verified against the CA bundle; there is no way to turn
// that off.
func (f TLSFiles) ClientConfig(o ClientOptions) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("the client needs a certificate, a key and a CA bundle: run 'kvsctl pki init' or give --cert, --key and --ca")
	}
	if err := pki.CheckKeyPerm(f.Key); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load client certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	cas, err := pki.LoadCerts(f.CA)
	if err != nil {
		return nil, fmt.Errorf("load CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	min := o.MinVersion
	if min == 0 {
		min = tls.VersionTLS12
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		ServerName:   o.ServerName,
		MinVersion:   min,
		CipherSuites: aeadSuites,
	}
	if !o.NoResume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return cfg, nil
}

// fileStamp identifies the state of a set of files (size and modification
// time of each), to notice changes by polling.
type fileStamp string

func stampFiles(paths []string) fileStamp {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", p)
		}
	}
	return fileStamp(b.String())
}

// WatchTLS polls the files every interval and reloads when they change, until
// ctx ends. A failed reload keeps the old material and is logged by Reload.
func (s *ServerTLS) WatchTLS(ctx context.Context, interval time.Duration) {
	watch(ctx, interval, s.changed, func() { _ = s.Reload() })
}

func watch(ctx context.Context, interval time.Duration, changed func() bool, reload func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if changed() {
				reload()
			}
		}
	}
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
