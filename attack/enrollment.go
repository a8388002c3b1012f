package attack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caclient"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// The scenarios of the online CA: a single-use enrollment token presented
// a second time, and a revoked certificate asking the CA to renew itself.
// Each starts with the legitimate operation (an enrollment by the real
// client, a revocation on the CA's directory) and then attacks what it
// left behind. They run on the demo's online CA, whose PKI is its own,
// and are skipped against a remote server: an attack never spends tokens
// of a real CA or revokes its certificates.

// onlineSkip is the observation of a scenario that needs the demo's
// online CA.
func onlineSkip() observation {
	return observation{outcome: Skipped, observed: "needs an online CA on a PKI of its own, to issue tokens and revoke certificates (the demo starts one): it never does that to a CA under attack", serverSaw: "-", clientSaw: "-"}
}

// newToken issues a single-use client token for name on the CA's
// directory, as 'kvsctl pki token' does.
func (c *onlineCA) newToken(ctx context.Context, name string, now time.Time) (string, error) {
	token, _, err := pki.NewToken(ctx, pki.TokenOptions{Dir: c.dir, Name: name, Profile: pki.ProfileClient, Now: now})
	if err != nil {
		return "", fmt.Errorf("issue a token for %s: %w", name, err)
	}
	return token, nil
}

// enroll redeems token for a certificate of a new key of type kt, as the
// real client does ('kvsctl pki enroll': the same request, without the
// fingerprint bootstrap, the CA's bundle being known here), and returns
// the CA's answer and the certificate with its key. It goes through post
// rather than caclient, whose idle HTTP/2 connection would hold up the
// CA's shutdown for a second.
func (c *onlineCA) enroll(ctx context.Context, token, name string, kt pki.KeyType) (*caserver.Certificate, tls.Certificate, error) {
	key, csr, err := caclient.NewCSR(kt, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}})
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	a := c.post(ctx, caserver.PathEnroll, nil, caserver.EnrollRequest{Token: token, CSR: string(csr), Profile: string(pki.ProfileClient)})
	if a.cert == nil {
		return nil, tls.Certificate{}, fmt.Errorf("enroll %s: %s", name, a.clientSaw())
	}
	chain, err := pki.ParseCerts([]byte(a.cert.Certificate))
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("the enrolled certificate: %w", err)
	}
	return a.cert, tlsCert(key, chain...), nil
}

// sawOK describes the CA's audit record of a successful op that produced
// serial.
func (c *onlineCA) sawOK(ctx context.Context, op, serial string) string {
	ev, ok := c.audit.await(ctx, func(ev caEvent) bool { return ev.Op == op && ev.Outcome == "ok" && ev.Serial == serial }, time.Second)
	if !ok {
		return op + ": nothing recorded"
	}
	return ev.String()
}

// rolledNote says in the observation which files a weakened CA put back.
func rolledNote(files, before string) string {
	if files == "" {
		return ""
	}
	return fmt.Sprintf(" (the CA's %s had been rolled back to before %s)", files, before)
}

// runTokenReplay has the real client enroll with a single-use token, and
// then presents the same token again with a CSR for a new key, as whoever
// copied the token from the enrolled host's shell history could: the CA
// must refuse it as spent.
func runTokenReplay(ctx context.Context, e *env, _ string) observation {
	c := e.online
	if c == nil {
		return onlineSkip()
	}
	name := e.identity("replay")
	token, err := c.newToken(ctx, name, e.now())
	if err != nil {
		return broken("%v", err)
	}
	rb, err := c.checkpoint()
	if err != nil {
		return broken("%v", err)
	}
	first, _, err := c.enroll(ctx, token, name, e.keyType)
	if err != nil {
		return broken("the legitimate enrollment failed, so the replay would prove nothing: %v", err)
	}
	rolled, err := rb.rollBack()
	if err != nil {
		return broken("%v", err)
	}
	_, csr, err := caclient.NewCSR(e.keyType, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}})
	if err != nil {
		return broken("make the replay's CSR: %v", err)
	}
	a := c.post(ctx, caserver.PathEnroll, nil, caserver.EnrollRequest{Token: token, CSR: string(csr)})
	because := fmt.Sprintf("the token was spent by the first enrollment (serial %s)", first.Serial)
	o := c.judge(ctx, a, "enroll", "was used at", because)
	if o.outcome == Succeeded {
		o.observed = fmt.Sprintf("the spent token was redeemed again: a second certificate for %s, serial %s (the first was %s)", name, a.cert.Serial, first.Serial)
	}
	o.observed += rolledNote(rolled, "the first enrollment")
	o.serverSaw = "first: " + c.sawOK(ctx, "enroll", first.Serial) + "; replay: " + o.serverSaw
	return o
}

// runRevokedRenewal has the real client enroll, revokes its certificate
// on the CA's directory (as 'kvsctl pki revoke' does), and then presents
// the revoked certificate over mutual TLS to the CA's renewal, with a CSR
// for a new key, as whoever stole the key before the revocation could: the
// CA must refuse to renew it.
func runRevokedRenewal(ctx context.Context, e *env, _ string) observation {
	c := e.online
	if c == nil {
		return onlineSkip()
	}
	name := e.identity("renew")
	token, err := c.newToken(ctx, name, e.now())
	if err != nil {
		return broken("%v", err)
	}
	got, cert, err := c.enroll(ctx, token, name, e.keyType)
	if err != nil {
		return broken("the legitimate enrollment failed: %v", err)
	}
	rb, err := c.checkpoint()
	if err != nil {
		return broken("%v", err)
	}
	rev, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: c.dir, Target: got.Serial, Reason: "keyCompromise", Now: e.now()})
	if err != nil {
		return broken("revoke %s: %v", got.Serial, err)
	}
	rolled, err := rb.rollBack()
	if err != nil {
		return broken("%v", err)
	}
	// The same subject, byte for byte, as a renewal must keep it.
	_, csr, err := caclient.NewCSR(e.keyType, &x509.CertificateRequest{RawSubject: cert.Leaf.RawSubject})
	if err != nil {
		return broken("make the renewal's CSR: %v", err)
	}
	a := c.post(ctx, caserver.PathRenew, &cert, caserver.RenewRequest{CSR: string(csr)})
	because := fmt.Sprintf("serial %s was revoked (%s) in the CRL of %s, number %s", got.Serial, rev.Record.Reason, rev.Issuer.Subject.CommonName, rev.CRL.Number)
	o := c.judge(ctx, a, "renew", "cannot renew itself", because)
	if o.outcome == Succeeded {
		o.observed = fmt.Sprintf("the revoked certificate was renewed: serial %s for %s, valid until %s (the revoked one was %s)", a.cert.Serial, name, a.cert.NotAfter.Format(time.RFC3339), got.Serial)
	}
	o.observed += rolledNote(rolled, "the revocation")
	o.serverSaw = fmt.Sprintf("%s; revoked on its directory (CRL number %s); %s", c.sawOK(ctx, "enroll", got.Serial), rev.CRL.Number, o.serverSaw)
	return o
}
