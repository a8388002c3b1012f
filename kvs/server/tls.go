package server

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"slices"
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
	// NoCRL serves CAs that have no CRL without checking revocation for
	// their certificates: an explicit opt-out, logged at warn on every
	// load. A CRL that appears later (the paths are watched) is enforced.
	NoCRL bool
}

// TLS holds the server's TLS material as an immutable snapshot behind
// an atomic pointer. Reload builds a new snapshot and swaps it in; a
// connection always sees one consistent set of certificate, roots and CRLs.
type TLS struct {
	files  pki.Files
	opts   TLSOptions
	log    *slog.Logger
	ticket [32]byte // session ticket key, stable across reloads
	snap   atomic.Pointer[tlsSnapshot]
	gen    atomic.Uint64 // generation of the latest snapshot

	reloadMu sync.Mutex                // serialises Reload; never held on the handshake path
	failed   atomic.Pointer[fileStamp] // files of the last failed reload, not retried until they change
	crlAlarm *logLimiter               // "the CRL is not current": at most one line per 10 s
	// numbers is the highest CRL number loaded per issuer: a reload with
	// a lower one is a rollback and is refused. Guarded by reloadMu.
	numbers map[string]*big.Int
}

// tlsSnapshot is one loaded set of TLS material. It is never modified.
type tlsSnapshot struct {
	gen           uint64
	cert          tls.Certificate
	leaf          *x509.Certificate
	roots         *x509.CertPool
	intermediates []*x509.Certificate // CAs of the server's own chain file
	crls          crlSet
	config        *tls.Config
	stamp         fileStamp
}

// Errors of a handshake or request that the server refuses, and of its
// set-up.
var (
	// ErrRevoked is wrapped when the client's certificate, or a CA of its
	// chain, is revoked.
	ErrRevoked = errors.New("kvs: certificate revoked")
	// ErrCRLUnavailable is wrapped when revocation cannot be checked (a
	// CRL expired, or a CA of the chain has none): the server fails
	// closed.
	ErrCRLUnavailable = errors.New("kvs: cannot check revocation, failing closed")
	// ErrCertExpired is wrapped when the server's own certificate has
	// expired.
	ErrCertExpired = errors.New("expired")
	// ErrNoCRL means a CA the server trusts has no CRL and the
	// configuration does not opt out of revocation checks (NoCRL).
	ErrNoCRL = errors.New("kvs: no CRL")
	// ErrCRLRollback means a CRL is older (lower CRL number) than one
	// already loaded for its issuer.
	ErrCRLRollback = errors.New("kvs: CRL rollback")
	// errNoClientCert is a handshake without a client certificate.
	errNoClientCert = errors.New("kvs: no client certificate")
)

// LoadTLS loads the server's files and checks them, so that a bad file
// fails at start rather than at the first connection.
func LoadTLS(files pki.Files, opts TLSOptions) (*TLS, error) {
	if opts.MinVersion == 0 {
		opts.MinVersion = tls.VersionTLS12
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &TLS{files: files, opts: opts, log: orDiscard(opts.Logger), numbers: map[string]*big.Int{}}
	s.crlAlarm = newLogLimiter(s.log, "", 1, 10*time.Second)
	if _, err := rand.Read(s.ticket[:]); err != nil {
		return nil, fmt.Errorf("session ticket key: %w", err)
	}
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	s.commit(snap)
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

// Ready reports whether the material in force can serve: the server's
// certificate is current and every CRL is (an expired CRL refuses every
// client of its CA).
func (s *TLS) Ready() error {
	snap, now := s.snap.Load(), s.opts.Now()
	if now.After(snap.leaf.NotAfter) {
		return fmt.Errorf("server certificate %w on %s", ErrCertExpired, snap.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return snap.crls.check(now)
}

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
		s.log.Error("tls reload failed, keeping the previous certificates and CRLs", "err", err)
		return err
	}
	s.commit(snap)
	return nil
}

// commit makes snap the one in force and remembers its CRL numbers.
func (s *TLS) commit(snap *tlsSnapshot) {
	for key, c := range snap.crls.byIssuer {
		s.numbers[key] = c.List.Number
	}
	s.snap.Store(snap)
}

// changed reports whether any file differs from the current snapshot.
func (s *TLS) changed() bool {
	st := stampFiles(s.paths())
	if f := s.failed.Load(); f != nil && *f == st {
		return false
	}
	return st != s.snap.Load().stamp
}

// watched are the files of the material (see paths).
func (s *TLS) watched() []string { return s.paths() }

// paths are the files of the material, the CRLs included even when they
// do not exist yet: a CRL that appears is loaded.
func (s *TLS) paths() []string {
	return append([]string{s.files.Cert, s.files.Key, s.files.CA, s.files.Intermediates}, s.files.CRLs...)
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
	if err := pki.CheckPublicKey(leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("server certificate %s: %w", f.Cert, err)
	}
	cas, err := pki.LoadCerts(f.CA)
	if err != nil {
		return nil, fmt.Errorf("load client CA bundle: %w", err)
	}
	for _, c := range cas {
		if err := pki.CheckPublicKey(c.PublicKey); err != nil {
			return nil, fmt.Errorf("client CA bundle %s: %s: %w", f.CA, c.Subject, err)
		}
	}
	snap := &tlsSnapshot{gen: s.gen.Add(1), cert: cert, leaf: leaf, roots: x509.NewCertPool(), stamp: stamp}
	for _, c := range cas {
		snap.roots.AddCert(c)
	}
	snap.intermediates = s.ownIntermediates(cert, snap.roots, now)
	if snap.intermediates, err = s.loadIntermediates(snap.intermediates, snap.roots, now); err != nil {
		return nil, err
	}
	known := append(append([]*x509.Certificate(nil), cas...), snap.intermediates...)
	if snap.crls, err = loadCRLs(f.CRLs, known, s.opts.NoCRL); err != nil {
		return nil, err
	}
	if err := snap.crls.checkRollback(s.numbers); err != nil {
		return nil, err
	}
	if err := snap.crls.checkCoverage(known, s.opts.NoCRL); err != nil {
		return nil, fmt.Errorf("%w (CA bundle %s, CRLs %v)", err, f.CA, f.CRLs)
	}
	for _, c := range snap.crls.uncovered {
		s.log.Warn("revocation is not checked for this CA: it has no CRL and NoCRL is set", "ca", c.Subject.String())
	}
	if err := snap.crls.check(now); err != nil {
		s.log.Error("a CRL is not current: every client of its CA will be refused until it is re-signed", "err", err)
	}
	snap.config = &tls.Config{
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        snap.roots,
		MinVersion:       s.opts.MinVersion,
		CipherSuites:     pki.AEADSuites(),
		NextProtos:       []string{"h2", "http/1.1"},
		VerifyConnection: s.verifyConnection(snap),
		Time:             s.opts.Now,
	}
	snap.config.SetSessionTicketKeys([][32]byte{s.ticket})
	attrs := []any{"cert", f.Cert, "serial", pki.SerialHex(leaf), "not_after", leaf.NotAfter.UTC(), "client_cas", len(cas)}
	for _, c := range snap.crls.sorted() {
		attrs = append(attrs, slog.Group("crl", "issuer", c.issuer.Subject.String(), "number", c.List.Number,
			"revoked", len(c.List.RevokedCertificateEntries), "next_update", c.List.NextUpdate.UTC()))
	}
	s.log.Info("tls material loaded", attrs...)
	return snap, nil
}

// ownIntermediates are the CAs of the server's own certificate chain that
// chain to a root of the client CA bundle: the server accepts their CRLs,
// and requires them. A CA of its chain that does not chain to the bundle
// is left out, with a warning: clients cannot chain through it, and
// requiring its CRL would make every reload fail once its root is retired
// from the bundle, leaving the retired root trusted by the previous
// snapshot until a restart. The server's certificate comes from another
// PKI than its clients' then, or from a generation the bundle no longer
// has, and clients that trust the bundle alone will refuse it.
func (s *TLS) ownIntermediates(cert tls.Certificate, roots *x509.CertPool, now time.Time) []*x509.Certificate {
	var out []*x509.Certificate
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil || !c.IsCA {
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			s.log.Warn("a CA of the server's own certificate chain does not chain to the client CA bundle: left out, clients that trust only the bundle will refuse this server",
				"cert", s.files.Cert, "ca", c.Subject.String(), "bundle", s.files.CA, "err", err)
			continue
		}
		out = append(out, c)
	}
	return out
}

// loadIntermediates adds the CAs of the Intermediates bundle (when set) to
// have, the intermediates of the server's own chain: the server accepts
// the CRLs of all of them. Each must chain to a root of the CA bundle; one
// that has expired is left out (its leaves have too), one that does not
// chain is an error.
func (s *TLS) loadIntermediates(have []*x509.Certificate, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	f := s.files.Intermediates
	if f == "" {
		return have, nil
	}
	cas, err := pki.LoadCerts(f)
	if errors.Is(err, fs.ErrNotExist) {
		return have, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load intermediates: %w", err)
	}
	for _, c := range cas {
		if slices.ContainsFunc(have, c.Equal) {
			continue
		}
		if !c.IsCA {
			return nil, fmt.Errorf("intermediates %s: %s is not a CA certificate", f, c.Subject)
		}
		if err := pki.CheckPublicKey(c.PublicKey); err != nil {
			return nil, fmt.Errorf("intermediates %s: %s: %w", f, c.Subject, err)
		}
		if now.After(c.NotAfter) {
			s.log.Warn("an intermediate of the bundle has expired: left out", "file", f, "ca", c.Subject.String(), "not_after", c.NotAfter.UTC())
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, fmt.Errorf("intermediates %s: %s does not chain to the CA bundle %s: %w", f, c.Subject, s.files.CA, err)
		}
		have = append(have, c)
	}
	return have, nil
}

func serialText(n *big.Int) string { return n.Text(16) }
