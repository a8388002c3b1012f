package caclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// ErrExpired means a certificate expired before it could be renewed: an
// expired certificate cannot authenticate its own renewal, so the host
// must enroll again.
var ErrExpired = errors.New("caclient: certificate expired before it was renewed")

// Pair is a certificate file (the leaf, then its intermediate) and its key.
type Pair struct {
	Cert, Key string
}

// Agent renews certificate files before they expire: each when RenewAt of
// its lifetime has passed (two thirds by default), give or take a little
// jitter, with a new key, through the online CA; the key and certificate
// are replaced atomically, and Exec runs after each renewal. While the CA
// cannot be reached it retries with exponential backoff. The trust bundle
// in CAFile is refreshed from the CA's answers (so a root rotation reaches
// the host), and is what the CA's TLS certificate is checked against.
type Agent struct {
	CAURL   string
	CAFile  string
	Pairs   []Pair
	Exec    []string      // a command and its arguments, run after each renewal; nil for none
	RenewAt float64       // fraction of the lifetime; 0 means 2/3
	Jitter  float64       // fraction of the lifetime; 0 means 1/20
	MaxWait time.Duration // the longest backoff; 0 means a minute
	Logger  *slog.Logger
	Now     func() time.Time
	// Renewed, when set, is called after each renewal (tests).
	Renewed func(p Pair, old, renewed *x509.Certificate)

	caMu sync.Mutex // CAFile is shared by the pairs
}

// Run renews the pairs until ctx ends. It returns an error wrapping
// ErrExpired as soon as one certificate has expired unrenewed (the others
// stop too), and nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	if a.RenewAt <= 0 || a.RenewAt >= 1 {
		a.RenewAt = 2.0 / 3
	}
	if a.Jitter <= 0 {
		a.Jitter = 0.05
	}
	if a.MaxWait <= 0 {
		a.MaxWait = time.Minute
	}
	if len(a.Pairs) == 0 {
		return errors.New("no certificate to renew")
	}
	for _, p := range a.Pairs {
		if _, _, err := current(p); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(a.Pairs))
	for _, p := range a.Pairs {
		go func() { errc <- a.keep(ctx, p) }()
	}
	var first error
	for range a.Pairs {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// keep renews one pair, again and again.
func (a *Agent) keep(ctx context.Context, p Pair) error {
	wait := time.Second
	for {
		_, leaf, err := current(p)
		if err != nil {
			return err
		}
		start := issuedAt(p, leaf)
		life := leaf.NotAfter.Sub(start)
		jitter := time.Duration((rand.Float64()*2 - 1) * a.Jitter * float64(life))
		at := start.Add(time.Duration(a.RenewAt*float64(life)) + jitter)
		a.Logger.Info("renewal scheduled", "cert", p.Cert, "serial", pki.SerialHex(leaf), "at", at.UTC(), "not_after", leaf.NotAfter.UTC())
		if !sleep(ctx, at.Sub(a.Now())) {
			return nil
		}
		for {
			if now := a.Now(); !now.Before(leaf.NotAfter) {
				return fmt.Errorf("%w: %s (serial %s) expired at %s: enroll the host again ('kvsctl pki enroll')",
					ErrExpired, p.Cert, pki.SerialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			renewed, err := a.renew(ctx, p, leaf)
			if err == nil {
				a.Logger.Info("certificate renewed", "cert", p.Cert, "old_serial", pki.SerialHex(leaf), "serial", pki.SerialHex(renewed), "not_after", renewed.NotAfter.UTC())
				a.runExec(ctx, p)
				if a.Renewed != nil {
					a.Renewed(p, leaf, renewed)
				}
				wait = time.Second
				break
			}
			var refused *RefusedError
			if errors.As(err, &refused) && refused.Status != 429 && refused.Status < 500 {
				// The CA said no: retrying will not change its mind.
				return fmt.Errorf("renew %s: %w", p.Cert, err)
			}
			// Back off, but never past the certificate's end.
			d := min(wait, a.MaxWait, max(time.Second, leaf.NotAfter.Sub(a.Now())/2))
			a.Logger.Warn("renewal failed; retrying", "cert", p.Cert, "in", d.Round(time.Millisecond).String(), "err", err)
			if !sleep(ctx, d) {
				return nil
			}
			wait = min(2*wait, a.MaxWait)
		}
	}
}

// renew makes a new key of the old one's type and a CSR with the old
// subject, has the CA renew over mutual TLS with the current pair, and
// replaces the files.
func (a *Agent) renew(ctx context.Context, p Pair, leaf *x509.Certificate) (*x509.Certificate, error) {
	kt, err := pki.KeyTypeOf(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Cert, err)
	}
	key, csr, err := NewCSR(kt, &x509.CertificateRequest{RawSubject: leaf.RawSubject})
	if err != nil {
		return nil, err
	}
	roots, err := a.roots()
	if err != nil {
		return nil, err
	}
	cur, _, err := current(p) // the pair the CA knows us by
	if err != nil {
		return nil, err
	}
	c, err := New(a.CAURL, Options{Roots: roots, Certificate: func() (*tls.Certificate, error) { return &cur, nil }})
	if err != nil {
		return nil, err
	}
	ans, err := c.Renew(ctx, csr)
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCerts([]byte(ans.Certificate))
	if err != nil {
		return nil, fmt.Errorf("the CA's answer: %w", err)
	}
	if !pki.KeyMatches(certs[0], key) {
		return nil, errors.New("the CA's certificate is not for the key sent")
	}
	pemKey, err := pki.MarshalKey(key, nil)
	if err != nil {
		return nil, err
	}
	if err := replacePair(p, pemKey, []byte(ans.Certificate)); err != nil {
		return nil, err
	}
	a.updateBundle([]byte(ans.CA))
	return certs[0], nil
}

// roots is the trust bundle of CAFile.
func (a *Agent) roots() (*x509.CertPool, error) {
	a.caMu.Lock()
	defer a.caMu.Unlock()
	return pki.LoadPool(a.CAFile)
}

// updateBundle writes the CA's trust bundle to CAFile when it changed:
// the CA's answer came over a connection verified against the current
// bundle, so the new one is as trustworthy.
func (a *Agent) updateBundle(bundle []byte) {
	if len(bundle) == 0 {
		return
	}
	if _, err := pki.ParseCerts(bundle); err != nil {
		a.Logger.Warn("the CA sent a trust bundle that does not parse; keeping ours", "err", err)
		return
	}
	a.caMu.Lock()
	defer a.caMu.Unlock()
	if cur, err := os.ReadFile(a.CAFile); err == nil && bytes.Equal(cur, bundle) {
		return
	}
	if err := pki.WriteFileAtomic(a.CAFile, bundle, pki.CertMode, true); err != nil {
		a.Logger.Warn("writing the new trust bundle failed", "file", a.CAFile, "err", err)
		return
	}
	a.Logger.Info("trust bundle updated", "file", a.CAFile)
}

func (a *Agent) runExec(ctx context.Context, p Pair) {
	if len(a.Exec) == 0 {
		return
	}
	cmd := exec.CommandContext(ctx, a.Exec[0], a.Exec[1:]...)
	cmd.Env = append(os.Environ(), "KVS_RENEWED_CERT="+p.Cert, "KVS_RENEWED_KEY="+p.Key)
	out, err := cmd.CombinedOutput()
	if err != nil {
		a.Logger.Warn("the command after renewal failed", "cmd", a.Exec[0], "err", err, "output", string(bytes.TrimSpace(out)))
		return
	}
	a.Logger.Info("ran the command after renewal", "cmd", a.Exec[0])
}

// issuedAt is when the certificate's life began for this host: its
// NotBefore, or, when the file was written later (a CA backdates
// NotBefore for clock skew, and with short lifetimes that would eat a good
// part of the life), the file's modification time.
func issuedAt(p Pair, leaf *x509.Certificate) time.Time {
	start := leaf.NotBefore
	if fi, err := os.Stat(p.Cert); err == nil && fi.ModTime().After(start) && fi.ModTime().Before(leaf.NotAfter) {
		start = fi.ModTime()
	}
	return start
}

// prev is where the pair that a renewal replaces is kept until the new
// one is in place: two files cannot be replaced at once, and a crash in
// between must not leave the host without a pair to renew with.
func (p Pair) prev() Pair { return Pair{Cert: p.Cert + ".prev", Key: p.Key + ".prev"} }

// current loads the pair; when it does not load (a renewal was cut off
// between writing the key and the certificate), the previous pair, if it
// is still valid.
func current(p Pair) (tls.Certificate, *x509.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err == nil {
		return c, c.Leaf, nil
	}
	if prev, perr := tls.LoadX509KeyPair(p.prev().Cert, p.prev().Key); perr == nil && time.Now().Before(prev.Leaf.NotAfter) {
		return prev, prev.Leaf, nil
	}
	return tls.Certificate{}, nil, fmt.Errorf("load %s and %s: %w", p.Cert, p.Key, err)
}

// replacePair writes the new key and certificate over p, keeping the
// pair they replace as p.prev() until both are written.
func replacePair(p Pair, key, cert []byte) error {
	oldKey, err := os.ReadFile(p.Key)
	if err != nil {
		return fmt.Errorf("read %s: %w", p.Key, err)
	}
	oldCert, err := os.ReadFile(p.Cert)
	if err != nil {
		return fmt.Errorf("read %s: %w", p.Cert, err)
	}
	if _, err := tls.X509KeyPair(oldCert, oldKey); err == nil {
		// Only a pair that works is worth keeping (after a cut-off
		// renewal, the previous one is already kept).
		if err := pki.WriteFileAtomic(p.prev().Key, oldKey, pki.KeyMode, true); err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(p.prev().Cert, oldCert, pki.CertMode, true); err != nil {
			return err
		}
	}
	if err := pki.WriteFileAtomic(p.Key, key, pki.KeyMode, true); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(p.Cert, cert, pki.CertMode, true); err != nil {
		return err
	}
	os.Remove(p.prev().Key)
	os.Remove(p.prev().Cert)
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
