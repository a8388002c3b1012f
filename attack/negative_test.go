package attack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// The negative controls: the demo against deliberately weakened
// deployments, built here and nowhere else. Each weakening must turn
// exactly the scenarios that test it into SUCCEEDED, and fail the report;
// otherwise the scenario could not tell a sound deployment from a broken
// one.

// clientCertOptional asks for a client certificate but lets a client in
// without one (and drops the server's own no-certificate check in
// VerifyConnection, which would otherwise still refuse it).
func clientCertOptional(c *tls.Config) {
	c.ClientAuth = tls.VerifyClientCertIfGiven
	verify := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return verify(cs)
	}
}

// clientCertNotRequested never asks for a client certificate.
func clientCertNotRequested(c *tls.Config) {
	c.ClientAuth = tls.NoClientCert
	c.VerifyConnection = nil
}

// resumptionNotRechecked skips the server's checks on resumed sessions.
func resumptionNotRechecked(c *tls.Config) {
	verify := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.DidResume {
			return nil
		}
		return verify(cs)
	}
}

// oldProtocols allows TLS 1.0 and CBC/RSA-kex suites.
func oldProtocols(c *tls.Config) {
	c.MinVersion = tls.VersionTLS10
	c.CipherSuites = append(slices.Clone(c.CipherSuites), weakSuites...)
}

// noCRL serves without the CRL, opting out of the check that every CA has
// one.
func noCRL(c *server.Config) { c.Files.CRLs, c.NoCRL = nil, true }

// noPolicy serves without the policy.
func noPolicy(c *server.Config) { c.PolicyFile = "" }

// sansAsNames adds to the demo policy entries that give the real client's
// name, as an e-mail and a DNS SAN, the real client's rights: what a policy
// did that took every SAN for a name.
func sansAsNames(c *server.Config) {
	data, err := os.ReadFile(c.PolicyFile)
	if err != nil {
		panic(err)
	}
	extra := "  \"email:client\":\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n" +
		"  \"dns:client\":\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n"
	if err := os.WriteFile(c.PolicyFile, append(data, extra...), 0o600); err != nil {
		panic(err)
	}
}

// firstCRLOnly serves with the first CA's CRL only, the second CA let in
// without one: what a server did that read only the first CRL.
func firstCRLOnly(c *server.Config) { c.Files.CRLs, c.NoCRL = c.Files.CRLs[:1], true }

// crlNumbersForgotten serves each handshake with TLS material loaded anew
// from the files, so no CRL number is remembered between loads: what a
// server does that accepts any valid CRL.
func crlNumbersForgotten() weakening {
	var files pki.Files
	return weakening{
		server: func(c *server.Config) { files = c.Files },
		serve: func(ctx context.Context, srv *server.Server, ln net.Listener, onHandshake func(server.HandshakeEvent)) error {
			cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
			cfg.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
				st, err := server.LoadTLS(files, server.TLSOptions{})
				if err != nil {
					return nil, err
				}
				return st.Config().GetConfigForClient(hi)
			}
			hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
			stop := context.AfterFunc(ctx, func() { hs.Close() })
			defer stop()
			if err := hs.Serve(server.TLSListener(ln, cfg, 5*time.Second, onHandshake)); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
}

// weakTLS serves the demo server's handler with its TLS configuration
// altered by weaken for each handshake: the deployment a careless
// operator makes of the same handler.
func weakTLS(weaken func(*tls.Config)) weakening {
	return weakening{serve: func(ctx context.Context, srv *server.Server, ln net.Listener, onHandshake func(server.HandshakeEvent)) error {
		base := srv.TLS().Config()
		cfg := base.Clone()
		cfg.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := base.GetConfigForClient(hi)
			if err != nil {
				return nil, err
			}
			c = c.Clone()
			weaken(c)
			return c, nil
		}
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
		stop := context.AfterFunc(ctx, func() { hs.Close() })
		defer stop()
		err := hs.Serve(server.TLSListener(ln, cfg, 5*time.Second, onHandshake))
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}}
}

// hostNameUnchecked verifies the server's chain but not its name: what a
// hand-rolled VerifyPeerCertificate often does. Test code only.
func hostNameUnchecked(c *tls.Config) {
	roots := c.RootCAs
	c.InsecureSkipVerify = true
	c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no server certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			var err error
			if certs[i], err = x509.ParseCertificate(r); err != nil {
				return err
			}
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

// serverUnchecked trusts any server certificate. Test code only.
func serverUnchecked(c *tls.Config) { c.InsecureSkipVerify = true }

// tlsVerificationOnly leaves the client to crypto/tls alone, without the
// server's VerifyConnection: the chain and clientAuth are verified as Go
// does it, which takes a CA certificate without extended key usage (an
// intermediate) for a client, and no CRL is consulted.
func tlsVerificationOnly(c *tls.Config) { c.VerifyConnection = nil }

// leafCRLOnly checks revocation as a server does that looks up only the
// leaf in its issuer's CRL: the server's own check is handed each verified
// chain cut after the leaf's issuer, as if crypto/tls had verified that
// much (a handshake that is not resumed: the server re-verifies those
// itself).
func leafCRLOnly(c *tls.Config) {
	verify := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if !cs.DidResume && len(cs.VerifiedChains) > 0 {
			chains := make([][]*x509.Certificate, len(cs.VerifiedChains))
			for i, ch := range cs.VerifiedChains {
				chains[i] = ch[:min(2, len(ch))]
			}
			cs.VerifiedChains, cs.HandshakeComplete = chains, true
		}
		return verify(cs)
	}
}

// constraintsIgnored serves with a hand-rolled chain verifier instead of
// crypto/x509's: it follows signatures from the client's certificate,
// through the intermediates it sent and those of the server's bundle, to
// a root of the server's bundle, checking dates and that every issuer is a
// CA, but not name constraints. crypto/tls asks for a certificate without
// verifying it; the chain found is handed to the server's own check (usage,
// dates, revocation) as a verified chain, on handshakes that are not
// resumed. What a server does that verifies chains itself and forgets the
// constraints.
func constraintsIgnored() weakening {
	var files pki.Files
	w := weakTLS(func(c *tls.Config) {
		verify := c.VerifyConnection
		c.ClientAuth = tls.RequireAnyClientCert
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if cs.DidResume || len(cs.PeerCertificates) == 0 {
				return verify(cs)
			}
			chain, err := chainBySignature(cs.PeerCertificates, files, time.Now())
			if err != nil {
				return err
			}
			cs.VerifiedChains, cs.HandshakeComplete = [][]*x509.Certificate{chain}, true
			return verify(cs)
		}
	})
	w.server = func(c *server.Config) { files = c.Files }
	return w
}

// chainBySignature builds the chain of peer[0] up to a root of files.CA by
// signatures alone (see constraintsIgnored).
func chainBySignature(peer []*x509.Certificate, files pki.Files, now time.Time) ([]*x509.Certificate, error) {
	roots, err := pki.LoadCerts(files.CA)
	if err != nil {
		return nil, err
	}
	pool := slices.Clone(peer[1:])
	if files.Intermediates != "" {
		if inters, err := pki.LoadCerts(files.Intermediates); err == nil {
			pool = append(pool, inters...)
		}
	}
	issued := func(c, by *x509.Certificate) bool {
		return bytes.Equal(c.RawIssuer, by.RawSubject) && c.CheckSignatureFrom(by) == nil
	}
	chain := []*x509.Certificate{peer[0]}
	for len(chain) < 6 {
		cur := chain[len(chain)-1]
		if now.Before(cur.NotBefore) || now.After(cur.NotAfter) {
			return nil, x509.CertificateInvalidError{Cert: cur, Reason: x509.Expired}
		}
		if i := slices.IndexFunc(roots, func(r *x509.Certificate) bool { return issued(cur, r) }); i >= 0 {
			return append(chain, roots[i]), nil
		}
		i := slices.IndexFunc(pool, func(c *x509.Certificate) bool { return !slices.ContainsFunc(chain, c.Equal) && issued(cur, c) })
		if i < 0 {
			break
		}
		chain = append(chain, pool[i])
	}
	return nil, x509.UnknownAuthorityError{Cert: chain[len(chain)-1]}
}

func TestAttackNegativeControls(t *testing.T) {
	clientCertScenarios := []string{"self-signed-client", "rogue-ca", "no-client-cert", "expired-client",
		"not-yet-valid-client", "revoked-client", "revoked-resumed", "server-cert-as-client", "second-ca-revoked", "rolled-back-crl",
		"outside-constraints", "intermediate-as-client", "revoked-intermediate", "retired-root"}
	cases := []struct {
		name          string
		weak          weakening
		succeeded     []string
		controlFailed bool
	}{
		{"client certificate optional", weakTLS(clientCertOptional), []string{"no-client-cert"}, false},
		// The handler's own check answers 403 to a request without a
		// certificate, so the control fails too.
		{"client certificate not requested", weakTLS(clientCertNotRequested), clientCertScenarios, true},
		{"CRL not loaded", weakening{server: noCRL}, []string{"revoked-client", "revoked-resumed", "second-ca-revoked", "rolled-back-crl", "revoked-intermediate"}, false},
		{"resumed sessions not re-checked", weakTLS(resumptionNotRechecked), []string{"revoked-resumed"}, false},
		{"TLS 1.0 and CBC suites allowed", weakTLS(oldProtocols), []string{"tls10", "tls11", "tls12-cbc"}, false},
		{"no policy", weakening{server: noPolicy}, []string{"san-impersonation", "outside-policy"}, false},
		{"SANs taken for names", weakening{server: sansAsNames}, []string{"san-impersonation"}, false},
		// The second CA's CRLs are the intermediate's and the root's.
		{"only the first CRL", weakening{server: firstCRLOnly}, []string{"second-ca-revoked", "revoked-intermediate"}, false},
		{"CRL numbers forgotten", crlNumbersForgotten(), []string{"rolled-back-crl"}, false},
		{"host name not checked by the client", weakening{clientTLS: hostNameUnchecked}, []string{"hostname-mismatch"}, false},
		{"server certificate not checked by the client", weakening{clientTLS: serverUnchecked}, []string{"rogue-server", "hostname-mismatch"}, false},
		{"name constraints not enforced", constraintsIgnored(), []string{"outside-constraints"}, false},
		{"only the leaf's CRL checked", weakTLS(leafCRLOnly), []string{"revoked-intermediate"}, false},
		{"crypto/tls verification alone", weakTLS(tlsVerificationOnly),
			[]string{"revoked-client", "revoked-resumed", "second-ca-revoked", "rolled-back-crl", "intermediate-as-client", "revoked-intermediate"}, false},
		{"retired root kept in the bundle", weakening{keepRetired: true}, []string{"retired-root"}, false},
		// The online CA's: its files put back after the legitimate change.
		{"spent tokens forgotten by the CA", weakening{caForgets: []func(pki.Dir) string{pki.Dir.Tokens}}, []string{"token-replay"}, false},
		{"revocations forgotten by the CA", weakening{caForgets: []func(pki.Dir) string{pki.Dir.CRL, pki.Dir.Inventory}}, []string{"revoked-renewal"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := runDemo(t, tc.weak)
			var got []string
			for _, r := range rep.Results {
				if r.Outcome == Succeeded {
					got = append(got, r.Scenario)
					t.Logf("%s SUCCEEDED: %s\n\tserver saw: %s\n\tclient saw: %s", r.Scenario, r.Observed, r.ServerSaw, r.ClientSaw)
				}
			}
			if !slices.Equal(got, tc.succeeded) {
				t.Errorf("succeeded: %v, want exactly %v", got, tc.succeeded)
			}
			control := result(t, rep, "control")
			if (control.Outcome == Failed) != tc.controlFailed {
				t.Errorf("control: %s (%s: %s)", control.Outcome, control.Observed, control.ClientSaw)
			}
			if rep.OK {
				t.Error("report OK despite the weakened deployment")
			}
			for _, r := range rep.Results {
				if r.Outcome == Broken {
					t.Errorf("%s could not run: %s (%s)", r.Scenario, r.Observed, r.ClientSaw)
				}
			}
		})
	}
}

// TestAttackCARefusedForAnotherReason shows that a refusal by the online
// CA for a reason other than the one under test proves nothing: with one
// enrollment a minute per token, the replay is refused by the rate limit
// before the token is looked up, and the scenario is in error, not passed.
func TestAttackCARefusedForAnotherReason(t *testing.T) {
	rep := runDemo(t, weakening{ca: func(c *caserver.Config) { c.EnrollPerMinute = 1 }}, "token-replay")
	r := result(t, rep, "token-replay")
	t.Logf("observed: %s\nserver saw: %s\nclient saw: %s", r.Observed, r.ServerSaw, r.ClientSaw)
	if r.Outcome != Broken || !strings.Contains(r.Observed, `refused with 429 Too Many Requests, but not as "was used at"`) {
		t.Errorf("token-replay: %s (%s), want ERROR for a refusal by the rate limit", r.Outcome, r.Observed)
	}
	if !strings.Contains(r.ServerSaw, "replay: enroll rate-limited: too many enrollments") || rep.OK {
		t.Errorf("server saw %q, report OK=%v; want the rate-limited record and not OK", r.ServerSaw, rep.OK)
	}
}
