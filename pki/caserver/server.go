// Package caserver is the online CA of kvsctl ('kvsctl pki serve'): an
// HTTPS service on a PKI directory that enrolls new hosts with single-use
// tokens, renews certificates over mutual TLS, revokes them for admins,
// publishes the CRLs and the trust bundle, and keeps every CRL signed
// while it runs. Every change goes through package pki, under the same
// directory lock as the command line, so the CLI can work on the same
// directory at the same time.
package caserver

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kvsctl/kvsctl/kvs/policy"
	"github.com/kvsctl/kvsctl/pki"
)

// Defaults of a Config.
const (
	DefaultListen  = "127.0.0.1:7444"
	DefaultCertTTL = 24 * time.Hour
	// ownCertTTL is the lifetime of the service's own TLS certificate,
	// which it re-issues itself.
	ownCertTTL = 24 * time.Hour
)

// Config configures a Server.
type Config struct {
	Dir pki.Dir
	// Hosts are the names of the service's own TLS certificate (issued by
	// the issuing CA at start-up and renewed in memory); nil means
	// localhost, 127.0.0.1 and ::1 (those the name constraints permit).
	Hosts []string
	// Admins are the identities that may revoke (typed, as in a kvs
	// policy: a bare common name, dns:, email:, uri:).
	Admins []policy.Identity
	// CertTTL is the lifetime of the certificates it enrolls; renewals keep
	// the old lifetime. 0 means DefaultCertTTL; at least pki.MinServiceTTL.
	CertTTL time.Duration
	// CRLDays is the lifetime of the CRLs it signs; 0 means
	// pki.DefaultCRLDays. They are re-signed when half of it has passed.
	CRLDays int
	// CRLCheck is how often the CRLs are checked for re-signing; 0 means
	// a minute (or less for short CRLs).
	CRLCheck time.Duration
	// Rate limits per minute: enrollments per client address and per
	// token, renewals and revocations per identity. 0 means the default.
	EnrollPerMinute, RenewPerMinute int
	Logger                          *slog.Logger
	// Observer, when set, is told of every enrollment, renewal and
	// revocation, as the audit line says it (tests, and kvsctl attack).
	Observer func(AuditEvent)
	Now      func() time.Time
}

// AuditEvent is one enrollment, renewal or revocation: what, its outcome
// ("ok", "refused", "rate-limited"), who, on what serial, from where, and
// why it was refused.
type AuditEvent struct {
	Op, Outcome, Identity, Serial, Peer string
	Err                                 error
}

// Server is a running online CA.
type Server struct {
	cfg   Config
	log   *slog.Logger
	limit *limiter

	mu      sync.Mutex
	own     *tls.Certificate // the service's TLS certificate
	ownEnd  time.Time        // when to re-issue it
	roots   *x509.CertPool
	rootsAt string // stamp of ca.crt when roots was loaded
}

// New checks the directory (it must hold a CA whose issuing key is here)
// and the configuration, and issues the service's own certificate.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CertTTL == 0 {
		cfg.CertTTL = DefaultCertTTL
	}
	if cfg.CertTTL < pki.MinServiceTTL {
		return nil, fmt.Errorf("a certificate lifetime of %s is too short: use at least %s", cfg.CertTTL, pki.MinServiceTTL)
	}
	if cfg.CRLDays <= 0 {
		cfg.CRLDays = pki.DefaultCRLDays
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, limit: newLimiter(cfg.Now)}
	if _, err := pki.LoadCA(cfg.Dir, nil, cfg.Now()); err != nil {
		return nil, fmt.Errorf("the online CA needs the issuing CA's key, unencrypted: %w", err)
	}
	if err := s.reissueOwn(); err != nil {
		return nil, err
	}
	if _, err := s.clientRoots(); err != nil {
		return nil, err
	}
	return s, nil
}

// Fingerprints are the SHA-256 fingerprints of the roots of the trust
// bundle, which 'pki enroll --fingerprint' checks on first contact.
func (s *Server) Fingerprints() ([]string, error) {
	roots, err := pki.LoadCerts(s.cfg.Dir.CACert())
	if err != nil {
		return nil, err
	}
	out := make([]string, len(roots))
	for i, r := range roots {
		out[i] = pki.Fingerprint(r.Raw)
	}
	return out, nil
}

// TLSConfig is the service's TLS configuration: its own certificate, and
// client certificates verified (when given) against the current trust
// bundle, for any usage: a server's certificate renews itself over this
// connection as much as a client's does. Enrollment needs none; renewal
// and revocation do.
func (s *Server) TLSConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: pki.AEADSuites()}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, err := s.ownCert()
		if err != nil {
			return nil, err
		}
		roots, err := s.clientRoots()
		if err != nil {
			return nil, err
		}
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{*cert}
		// Requested, and verified below for any usage (Go's own check would
		// insist on clientAuth).
		c.ClientAuth = tls.RequestClientCert
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, err := verifyPeer(cs.PeerCertificates, roots, s.cfg.Now())
			return err
		}
		return c, nil
	}
	return base
}

// ownCert returns the service's certificate, re-issuing it when two
// thirds of its life have passed.
func (s *Server) ownCert() (*tls.Certificate, error) {
	s.mu.Lock()
	due := !s.cfg.Now().Before(s.ownEnd)
	s.mu.Unlock()
	if due {
		if err := s.reissueOwn(); err != nil {
			s.log.Error("re-issuing the service's own certificate failed; keeping the current one", "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own == nil {
		return nil, errors.New("the service has no certificate")
	}
	return s.own, nil
}

// reissueOwn has the issuing CA sign a certificate for the service, with a
// key kept in memory only.
func (s *Server) reissueOwn() error {
	now := s.cfg.Now()
	ca, err := pki.LoadCA(s.cfg.Dir, nil, now)
	if err != nil {
		return err
	}
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		return err
	}
	hosts := s.cfg.Hosts
	if len(hosts) == 0 {
		nc := pki.NameConstraints{}
		for _, c := range append([]*x509.Certificate{ca.Cert}, ca.Chain...) {
			if c := pki.ConstraintsOf(c); !c.Empty() {
				nc = c
			}
		}
		for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
			if nc.Permits(h) {
				hosts = append(hosts, h)
			}
		}
	}
	cert, err := ca.Sign(pki.LeafRequest{
		Profile: pki.ProfileServer, Subject: pkix.Name{CommonName: "kvsctl online CA"}, Hosts: hosts,
		TTL: ownCertTTL, PublicKey: key.Public(),
	}, now)
	if err != nil {
		return fmt.Errorf("issue the service's certificate: %w", err)
	}
	tc := &tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Cert.Raw}, PrivateKey: crypto.Signer(key), Leaf: cert}
	s.mu.Lock()
	s.own, s.ownEnd = tc, cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore)*2/3)
	s.mu.Unlock()
	s.log.Info("service certificate issued", "serial", pki.SerialHex(cert), "hosts", strings.Join(hosts, ","), "not_after", cert.NotAfter.UTC())
	return nil
}

// verifyPeer verifies a presented chain against roots, for any usage, and
// returns the leaf.
func verifyPeer(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("the client certificate: %w", err)
	}
	return certs[0], nil
}

// clientRoots is the trust bundle as it is on disk.
func (s *Server) clientRoots() (*x509.CertPool, error) {
	path := s.cfg.Dir.CACert()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read the trust bundle: %w", err)
	}
	stamp := fmt.Sprintf("%d:%d", fi.Size(), fi.ModTime().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.roots != nil && stamp == s.rootsAt {
		return s.roots, nil
	}
	pool, err := pki.LoadPool(path)
	if err != nil {
		if s.roots != nil {
			s.log.Error("the trust bundle does not load; keeping the previous one", "err", err)
			return s.roots, nil
		}
		return nil, err
	}
	s.roots, s.rootsAt = pool, stamp
	return pool, nil
}

// Serve answers the API on ln (TLS is added here) and, when crl is not
// nil, the public CRL and CA endpoints over plain HTTP on crl, and keeps
// the CRLs signed, until ctx ends; then it shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener, crl net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	api := &http.Server{Handler: s.Handler(), TLSConfig: s.TLSConfig(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	servers := []*http.Server{api}
	errc := make(chan error, 3)
	go func() { errc <- api.ServeTLS(ln, "", "") }()
	if crl != nil {
		pub := &http.Server{Handler: s.PublicHandler(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		servers = append(servers, pub)
		go func() { errc <- pub.Serve(crl) }()
	}
	kept := make(chan struct{})
	go func() { s.keepCRLs(ctx); close(kept) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shut, cancelShut := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShut()
	for _, srv := range servers {
		_ = srv.Shutdown(shut)
	}
	<-kept // no CRL is being written once Serve returns
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
