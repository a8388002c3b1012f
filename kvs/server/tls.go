package server

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// TLSOptions configures [LoadTLS].
type TLSOptions struct {
	MinVersion uint16       // tls.VersionTLS12 (default) or tls.VersionTLS13
	Logger     *slog.Logger // nil discards
	Now        func() time.Time
}

// TLS holds the server's TLS material as an immutable snapshot behind
// an atomic pointer. Reload builds a new snapshot and swaps it in; a
// connection always sees one consistent set of certificate, roots and CRL.
type TLS struct {
	files  pki.Files
	opts   TLSOptions
	log    *slog.Logger
	ticket [32]byte // session ticket key, stable across reloads
	snap   atomic.Pointer[tlsSnapshot]

	reloadMu sync.Mutex                // serialises Reload; never held on the handshake path
	failed   atomic.Pointer[fileStamp] // files of the last failed reload, not retried until they change
	crlAlarm *logLimiter               // "the CRL is not current": at most one line per 10 s
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

// LoadTLS loads the server's files and checks them, so that a bad file
// fails at start rather than at the first connection.
func LoadTLS(files pki.Files, opts TLSOptions) (*TLS, error) {
	if opts.MinVersion == 0 {
		opts.MinVersion = tls.VersionTLS12
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &TLS{files: files, opts: opts, log: orDiscard(opts.Logger)}
	s.crlAlarm = newLogLimiter(s.log, "", 1, 10*time.Second)
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
func (s *TLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: s.opts.MinVersion,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.snap.Load().config, nil
		},
	}
}

// Leaf returns the server certificate currently served.
func (s *TLS) Leaf() *x509.Certificate { return s.snap.Load().leaf }

// Reload re-reads the files. On success the new material serves every new
// connection and Reload reports what it loaded; on failure the previous
// material stays in use and the error says why.
func (s *TLS) Reload() error {
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
func (s *TLS) changed() bool {
	st := stampFiles(s.paths())
	if f := s.failed.Load(); f != nil && *f == st {
		return false
	}
	return st != s.snap.Load().stamp
}

func (s *TLS) paths() []string {
	return []string{s.files.Cert, s.files.Key, s.files.CA, s.files.CRL}
}

// load builds a snapshot from the files.
func (s *TLS) load() (*tlsSnapshot, error) {
	f := s.files
	stamp := stampFiles(s.paths())
	if err := f.Check(); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load server certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	leaf := cert.Leaf
	now := s.opts.Now()
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("server certificate %s %w on %s", f.Cert, ErrCertExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
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
		CipherSuites:     pki.AEADSuites(),
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

// Errors of a handshake or request that the server refuses.
var (
	// ErrRevoked is wrapped when the client's certificate is revoked.
	ErrRevoked = errors.New("kvs: certificate revoked")
	// ErrCRLUnavailable is wrapped when revocation cannot be checked (the
	// CRL expired): the server fails closed.
	ErrCRLUnavailable = errors.New("kvs: cannot check revocation, failing closed")
	// ErrCertExpired is wrapped when the server's own certificate has
	// expired.
	ErrCertExpired = errors.New("expired")
	// errNoClientCert is a handshake without a client certificate.
	errNoClientCert = errors.New("kvs: no client certificate")
)

// verifyConnection runs on every handshake, resumed ones included (unlike
// VerifyPeerCertificate). It re-verifies the chain of a resumed session
// against the current roots, and checks the CRL, failing closed when the CRL
// has expired.
func (s *TLS) verifyConnection(snap *tlsSnapshot) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errNoClientCert
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
			if s.crlAlarm.allow() {
				s.log.Error("refusing every client: the CRL is not current; re-sign it", "err", err)
			}
			return fmt.Errorf("%w: %w", ErrCRLUnavailable, err)
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
func (s *TLS) checkPeer(cs *tls.ConnectionState) error {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	snap := s.snap.Load()
	if snap.crl == nil {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if err := snap.crl.Check(s.opts.Now()); err != nil {
		return fmt.Errorf("%w: %w", ErrCRLUnavailable, err)
	}
	if snap.crl.Revoked(leaf.SerialNumber) {
		return fmt.Errorf("%w: serial %s (%s)", ErrRevoked, serialText(leaf.SerialNumber), leaf.Subject.CommonName)
	}
	return nil
}

func serialText(n *big.Int) string { return n.Text(16) }
