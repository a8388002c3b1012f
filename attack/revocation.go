package attack

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"

	"github.com/kvsctl/kvsctl/pki"
)

// The revocation scenarios issue a real client certificate into the
// inventory (it must be there to be revoked), revoke it, have the server
// take up the new CRL, and try again. Their identities are named in the
// demo's policy: revocation has to stop a client on its own, even one the
// policy still lets in.

// issueForRevocation issues a client certificate named after the run and
// loads it.
func (e *env) issueForRevocation(ctx context.Context, what string) (tls.Certificate, string, error) {
	name := e.identity(what)
	iss, err := pki.Issue(ctx, pki.IssueOptions{
		Dir: e.dir, Profile: pki.ProfileClient, Name: name, KeyType: e.keyType,
		Passphrase: e.passphrase, Days: 1,
	})
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("issue %s: %w", name, err)
	}
	e.removeIssued(name)
	cert, err := tls.LoadX509KeyPair(iss.CertFile, iss.KeyFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("load %s: %w", iss.CertFile, err)
	}
	return cert, iss.CertFile, nil
}

// revoke revokes the certificate in file and has the server take up the
// CRL.
func (e *env) revoke(ctx context.Context, file string, probe *tls.Config) error {
	if _, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: e.dir, Target: file, Reason: "keyCompromise", Passphrase: e.passphrase}); err != nil {
		return fmt.Errorf("revoke %s: %w", file, err)
	}
	return e.reload(ctx, probe)
}

// runRevoked presents a revoked certificate on a fresh connection.
func runRevoked(ctx context.Context, e *env, key string) observation {
	cert, file, err := e.issueForRevocation(ctx, "revoked")
	if err != nil {
		return broken("%v", err)
	}
	cfg := e.attackerTLS(cert)
	if err := e.revoke(ctx, file, cfg); err != nil {
		o := e.judgeHandshake(ctx, tryTLS(ctx, e.addr, cfg, key))
		o.observed += " (" + err.Error() + ")"
		return o
	}
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, cfg, key))
}

// sessionRecorder is a client session cache that counts the sessions it
// hands out, to prove that a resumption was attempted.
type sessionRecorder struct {
	tls.ClientSessionCache
	mu      sync.Mutex
	offered int
}

func (s *sessionRecorder) Get(key string) (*tls.ClientSessionState, bool) {
	st, ok := s.ClientSessionCache.Get(key)
	if ok {
		s.mu.Lock()
		s.offered++
		s.mu.Unlock()
	}
	return st, ok
}

func (s *sessionRecorder) reset() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.offered
	s.offered = 0
	return n
}

// runRevokedResumed establishes sessions (TLS 1.3 and TLS 1.2) while the
// certificate is good and checks that the server resumes them, has the
// certificate revoked, and then tries to resume each session. Both must be
// refused.
func runRevokedResumed(ctx context.Context, e *env, key string) observation {
	cert, file, err := e.issueForRevocation(ctx, "resumed")
	if err != nil {
		return broken("%v", err)
	}
	type session struct {
		version uint16
		cfg     *tls.Config
		cache   *sessionRecorder
		resumed bool
	}
	var sessions []*session
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		s := &session{version: v, cache: &sessionRecorder{ClientSessionCache: tls.NewLRUClientSessionCache(4)}}
		s.cfg = e.attackerTLS(cert)
		s.cfg.MinVersion, s.cfg.MaxVersion = v, v
		s.cfg.ClientSessionCache = s.cache
		first := tryTLS(ctx, e.addr, s.cfg, "")
		if !first.accepted() {
			return broken("could not establish a %s session before the revocation: %s", tls.VersionName(v), first.clientSaw())
		}
		second := tryTLS(ctx, e.addr, s.cfg, "")
		if !second.accepted() {
			return broken("could not reconnect with %s before the revocation: %s", tls.VersionName(v), second.clientSaw())
		}
		s.resumed = second.state.DidResume
		sessions = append(sessions, s)
	}
	var before []string
	for _, s := range sessions {
		if s.resumed {
			before = append(before, tls.VersionName(s.version))
		}
	}
	note := ""
	if err := e.revoke(ctx, file, e.attackerTLS(cert)); err != nil {
		note = " (" + err.Error() + ")"
	}
	if len(before) == 0 {
		// The server resumes no session: there is nothing to exploit.
		o := e.judgeHandshake(ctx, tryTLS(ctx, e.addr, sessions[0].cfg, key))
		o.observed = "the server does not resume sessions (nothing to exploit); " + o.observed + note
		return o
	}
	o := observation{outcome: Refused}
	var after, server, client []string
	for _, s := range sessions {
		if !s.resumed {
			continue
		}
		name := tls.VersionName(s.version)
		s.cache.reset()
		a := tryTLS(ctx, e.addr, s.cfg, key)
		offered := s.cache.reset() > 0
		j := e.judgeHandshake(ctx, a)
		server = append(server, j.serverSaw)
		client = append(client, name+": "+j.clientSaw)
		o.wrote = o.wrote || j.wrote
		switch {
		case j.outcome == Broken:
			o.outcome = Broken
			after = append(after, name+" "+j.observed)
		case j.outcome == Succeeded && a.state.DidResume:
			o.outcome = Succeeded
			after = append(after, name+" session RESUMED: "+j.observed)
		case j.outcome == Succeeded:
			o.outcome = Succeeded
			after = append(after, name+" full handshake accepted: "+j.observed)
		case offered:
			after = append(after, name+" resumption refused")
		default:
			after = append(after, name+" refused (no session left to offer)")
		}
	}
	o.observed = "sessions resumed before revocation (" + strings.Join(before, ", ") + "); after it: " + strings.Join(after, ", ") + note
	o.serverSaw = strings.Join(server, "; ")
	if e.log == nil {
		o.serverSaw = remoteSaw
	}
	o.clientSaw = strings.Join(client, "; ")
	return o
}
