package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// verifyConnection runs on every handshake, resumed ones included (unlike
// VerifyPeerCertificate): the peer's chain, its usage and revocation,
// against this snapshot.
func (s *TLS) verifyConnection(snap *tlsSnapshot) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		_, err := s.verifyPeer(snap, &cs, s.opts.Now())
		if err != nil && s.crlAlarm != nil && ReasonOf(err) == ReasonCRLUnavailable && s.crlAlarm.allow() {
			s.log.Error("refusing every client: the CRL is not current; re-sign it", "err", err)
		}
		return err
	}
}

// verifyPeer checks a client as of snap at now: its chain ends in a root
// of snap (verified again unless crypto/tls just did it against snap's
// roots, name constraints included), it is not a CA, it names clientAuth
// explicitly, it has not expired, and no certificate of the chain is
// revoked. It returns until when the answer
// holds: the first expiry of the chain or NextUpdate of its CRLs.
func (s *TLS) verifyPeer(snap *tlsSnapshot, cs *tls.ConnectionState, now time.Time) (time.Time, error) {
	if len(cs.PeerCertificates) == 0 {
		return time.Time{}, errNoClientCert
	}
	leaf := cs.PeerCertificates[0]
	chains := cs.VerifiedChains
	if cs.DidResume || len(chains) == 0 || !cs.HandshakeComplete || snap != s.snap.Load() {
		opts := x509.VerifyOptions{
			Roots: snap.roots, CurrentTime: now, Intermediates: x509.NewCertPool(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		for _, c := range snap.intermediates {
			opts.Intermediates.AddCert(c)
		}
		var err error
		if chains, err = leaf.Verify(opts); err != nil {
			if cs.DidResume {
				return time.Time{}, fmt.Errorf("kvs: resumed session no longer valid: %w", err)
			}
			return time.Time{}, fmt.Errorf("kvs: client certificate no longer valid: %w", err)
		}
	}
	if leaf.IsCA {
		// crypto/x509 takes a CA certificate without extended key usage
		// (what intermediates carry) as valid for any use, a client's
		// included: whoever holds a CA's key must not log in with the CA.
		return time.Time{}, wrongUsage(leaf, "a CA certificate (basic constraints CA:TRUE) is not a client certificate")
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return time.Time{}, wrongUsage(leaf, "a client certificate must name clientAuth in its extended key usage")
	}
	until := leaf.NotAfter
	for _, c := range chains[0] {
		if now.After(c.NotAfter) || now.Before(c.NotBefore) {
			return time.Time{}, x509.CertificateInvalidError{Cert: c, Reason: x509.Expired,
				Detail: fmt.Sprintf("%s is valid from %s to %s, not at %s", c.Subject.CommonName,
					c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
		}
		until = earlier(until, c.NotAfter)
	}
	crlUntil, err := snap.crls.checkChain(chains[0], now, s.opts.NoCRL)
	if err != nil {
		return time.Time{}, err
	}
	if !crlUntil.IsZero() {
		until = earlier(until, crlUntil)
	}
	return until, nil
}

// wrongUsage is the refusal of a certificate not meant for a client: an
// x509.CertificateInvalidError (IncompatibleUsage) with the reason in its
// message, which the error of crypto/x509 leaves out.
func wrongUsage(c *x509.Certificate, why string) error {
	return fmt.Errorf("kvs: %s (%s): %w", why, c.Subject.CommonName,
		x509.CertificateInvalidError{Cert: c, Reason: x509.IncompatibleUsage, Detail: why})
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// peerVerdict is the answer of verifyPeer for one connection and one
// snapshot generation, until a time.
type peerVerdict struct {
	gen   uint64
	until time.Time
	err   error
}

// peerCache holds the verdict of one connection; ConnContext puts it in
// the connection's context, so every request of a keep-alive or HTTP/2
// connection finds it.
type peerCache struct{ v atomic.Pointer[peerVerdict] }

type peerCacheKey struct{}

// withPeerCache is the server's ConnContext.
func withPeerCache(ctx context.Context, _ any) context.Context {
	return context.WithValue(ctx, peerCacheKey{}, &peerCache{})
}

// checkRequest re-checks the client of an established connection for every
// request: VerifyConnection runs only in the handshake, and a connection
// opened before a revocation, an expiry, a CRL's expiry or the removal of
// its CA from the bundle would otherwise keep working for as long as the
// client keeps it busy. The verdict is cached per connection and snapshot
// generation, until the first expiry that could change it, so the hot path
// is two atomic loads and a time comparison.
func (s *TLS) checkRequest(ctx context.Context, cs *tls.ConnectionState) error {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	snap, now := s.snap.Load(), s.opts.Now()
	pc, _ := ctx.Value(peerCacheKey{}).(*peerCache)
	if pc != nil {
		if v := pc.v.Load(); v != nil && v.gen == snap.gen && now.Before(v.until) {
			return v.err
		}
	}
	until, err := s.verifyPeer(snap, cs, now)
	if err != nil {
		until = time.Unix(1<<40, 0) // a refusal holds until the snapshot changes
	}
	if pc != nil {
		pc.v.Store(&peerVerdict{gen: snap.gen, until: until, err: err})
	}
	return err
}
