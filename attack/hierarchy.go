package attack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
)

// The scenarios of a CA hierarchy: a leaf forged outside the issuing CA's
// name constraints, a leaf of a revoked intermediate, the intermediate
// itself as a client, and a client of a root retired after a rotation.
// The last two change a CA: they run on the demo's second CA only, never
// on the PKI under attack, and are skipped against a remote server. The
// first two make their material in memory, with the issuing CA's key.

// refusedFor refines the verdict of a handshake that the server should
// refuse for one reason: refused for that reason, the observation says
// why (because); refused for another, it proves nothing about the check
// under test, and the scenario is in error. Against a remote server, whose
// reason this process cannot see, only the TLS alert is known.
func (e *env) refusedFor(ctx context.Context, a attempt, o observation, want server.Reason, because string) observation {
	if o.outcome != Refused {
		return o
	}
	if e.log == nil {
		o.observed = fmt.Sprintf("refused at the handshake (%s); expected because %s; the server's own reason is not visible from here", alertText(a), because)
		return o
	}
	hs, ok := e.log.refusal(ctx, a.local, time.Second)
	switch {
	case !ok:
		o.outcome = Broken
		o.observed = "the handshake failed but the server recorded no refusal of it: the scenario cannot tell why"
	case hs.Reason != want:
		o.outcome = Broken
		o.observed = fmt.Sprintf("refused at the handshake, but as %s (%v), not as %s: the check under test was not reached", hs.Reason, hs.Err, want)
	default:
		o.observed = "refused at the handshake: " + because
	}
	return o
}

// alertText is the TLS alert the attacker got, or its error.
func alertText(a attempt) string {
	for _, err := range []error{a.handshake, a.readErr} {
		if isRemoteAlert(err) {
			return strings.TrimPrefix(err.Error(), "remote error: ")
		}
	}
	return a.clientSaw()
}

// runOutsideConstraints presents a client certificate for a name outside
// the name constraints of the issuing CA (or a CA above it), signed with
// the issuing CA's key through crypto/x509 directly, as whoever stole the
// key of a constrained intermediate could: pki would refuse to sign it,
// and the server must refuse it too.
func runOutsideConstraints(ctx context.Context, e *env, key string) observation {
	dns, ip, by := outsideName(e.ca)
	if by == nil {
		return observation{outcome: Skipped, observed: fmt.Sprintf("the issuing CA %s and the CAs above it have no DNS or IP name constraints: no name is outside them", e.ca.Cert.Subject.CommonName), serverSaw: "-", clientSaw: "-"}
	}
	kind, name := "DNS name", dns
	var dnsNames []string
	var ips []net.IP
	if dns != "" {
		dnsNames = []string{dns}
	} else {
		kind, name, ips = "IP address", ip.String(), []net.IP{ip}
	}
	cert, err := forgeLeaf(e.ca, e.keyType, pkix.Name{CommonName: e.identity("forged")}, dnsNames, ips, e.now())
	if err != nil {
		return broken("forge the certificate: %v", err)
	}
	a := tryTLS(ctx, e.addr, e.attackerTLS(cert), key)
	o := e.judgeHandshake(ctx, a)
	because := fmt.Sprintf("its %s %s is outside the name constraints of %s (%s)", kind, name, by.Subject.CommonName, strings.Join(pki.ConstraintsOf(by).Strings(), ", "))
	return e.refusedFor(ctx, a, o, server.ReasonNameNotPermitted, because)
}

// runIntermediateAsClient presents the issuing CA's own certificate (the
// intermediate of a hierarchy), with its key, as a client certificate:
// crypto/x509 takes a CA certificate without extended key usage as valid
// for client authentication.
func runIntermediateAsClient(ctx context.Context, e *env, key string) observation {
	what := "the issuing intermediate CA"
	if len(e.ca.Chain) == 0 {
		what = "the CA"
	}
	a := tryTLS(ctx, e.addr, e.attackerTLS(tlsCert(e.ca.Key, e.ca.Cert)), key)
	o := e.judgeHandshake(ctx, a)
	because := fmt.Sprintf("%s %s is a CA certificate, not a client certificate", what, e.ca.Cert.Subject.CommonName)
	return e.refusedFor(ctx, a, o, server.ReasonWrongUsage, because)
}

// secondSkip is the observation of a scenario that needs the demo's
// second CA, which it changes.
func secondSkip(what string) observation {
	return observation{outcome: Skipped, observed: "needs a second CA in the server's bundle whose " + what + " (the demo sets one up): it never does that to the PKI under attack", serverSaw: "-", clientSaw: "-"}
}

// issueSecond issues a client certificate from the second CA and checks
// that the server lets it in: a scenario whose certificate is refused
// already before the change it makes proves nothing.
func (e *env) issueSecond(ctx context.Context, what string) (*tls.Config, *pki.Issued, error) {
	iss, err := pki.Issue(ctx, pki.IssueOptions{Dir: e.second, Profile: pki.ProfileClient, Name: e.identity(what), KeyType: e.keyType, Days: 1})
	if err != nil {
		return nil, nil, fmt.Errorf("issue from the second CA: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(iss.CertFile, iss.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", iss.CertFile, err)
	}
	return e.attackerTLS(cert), iss, nil
}

// letIn reports whether the server lets cfg through the handshake (any
// HTTP answer), or why not.
func (e *env) letIn(ctx context.Context, cfg *tls.Config) (bool, string) {
	cfg = cfg.Clone()
	cfg.ClientSessionCache = nil
	a := tryTLS(ctx, e.addr, cfg, "")
	return a.accepted(), a.clientSaw()
}

// runRevokedIntermediate issues a client certificate from the second CA's
// intermediate, checks that it is let in, makes a new intermediate (so the
// second CA keeps issuing), has the root revoke the old one, and presents
// the certificate again: a server that checked only the leaf against its
// issuer's CRL would let it in.
func runRevokedIntermediate(ctx context.Context, e *env, key string) observation {
	if e.second == "" || !e.second.Hierarchy() {
		return secondSkip("intermediate it may revoke")
	}
	cfg, _, err := e.issueSecond(ctx, "inter")
	if err != nil {
		return broken("%v", err)
	}
	if ok, saw := e.letIn(ctx, cfg); !ok {
		return broken("the certificate was refused before its intermediate was revoked (%s): the scenario would prove nothing", saw)
	}
	inter, err := pki.LoadCert(e.second.IntermediateCert())
	if err != nil {
		return broken("%v", err)
	}
	if _, err := pki.Rotate(ctx, pki.RotateOptions{Dir: e.second}); err != nil {
		return broken("make a new intermediate of the second CA: %v", err)
	}
	rev, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: e.second, Target: pki.SerialHex(inter), Intermediate: true, Reason: "keyCompromise"})
	if err != nil {
		return broken("revoke the intermediate: %v", err)
	}
	note := ""
	if err := e.reload(ctx, cfg); err != nil {
		note = " (" + err.Error() + ")"
	}
	a := tryTLS(ctx, e.addr, cfg, key)
	o := e.judgeHandshake(ctx, a)
	because := fmt.Sprintf("its intermediate CA %s (serial %s) is on the CRL of the root %s", inter.Subject.CommonName, pki.SerialHex(inter), rev.Issuer.Subject.CommonName)
	o = e.refusedFor(ctx, a, o, server.ReasonRevoked, because)
	o.observed += note
	return o
}

// runRetiredRoot issues a client certificate from the second CA, makes a
// new root and intermediate (pki.Rotate with Root), checks that the
// certificate is still let in (both roots are in the bundle), retires the
// old root (pki.Retire) and presents the certificate again: a server that
// kept the old root would let it in.
func runRetiredRoot(ctx context.Context, e *env, key string) observation {
	if e.second == "" || !e.second.Hierarchy() {
		return secondSkip("root it may rotate and retire")
	}
	cfg, _, err := e.issueSecond(ctx, "oldroot")
	if err != nil {
		return broken("%v", err)
	}
	roots, err := pki.LoadCerts(e.second.CACert())
	if err != nil {
		return broken("%v", err)
	}
	var old *x509.Certificate
	if c, err := pki.LoadCert(e.second.IntermediateCert()); err == nil {
		for _, r := range roots {
			if c.CheckSignatureFrom(r) == nil {
				old = r
			}
		}
	}
	if old == nil {
		return broken("the second CA's intermediate has no root in %s", e.second.CACert())
	}
	if _, err := pki.Rotate(ctx, pki.RotateOptions{Dir: e.second, Root: true}); err != nil {
		return broken("rotate the second CA's root: %v", err)
	}
	if err := e.reload(ctx, nil); err != nil {
		return broken("the server did not take up the rotated bundle: %v", err)
	}
	if ok, saw := e.letIn(ctx, cfg); !ok {
		return broken("the old generation was refused after the rotation, before the retirement (%s): the scenario would prove nothing", saw)
	}
	if _, err := pki.Retire(ctx, pki.RetireOptions{Dir: e.second, Fingerprint: pki.Fingerprint(old.Raw)}); err != nil {
		return broken("retire the old root: %v", err)
	}
	note := ""
	if err := e.reload(ctx, cfg); err != nil {
		note = " (" + err.Error() + ")"
	}
	a := tryTLS(ctx, e.addr, cfg, key)
	o := e.judgeHandshake(ctx, a)
	because := fmt.Sprintf("its root %s was retired from the server's bundle (it was let in after the root rotation, before the retirement)", old.Subject.CommonName)
	o = e.refusedFor(ctx, a, o, server.ReasonUnknownAuthority, because)
	o.observed += note
	return o
}
