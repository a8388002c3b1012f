package attack

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// The scenarios of the security review: a SAN that spells another
// identity, a certificate revoked by the second CA of a bundle, and a CRL
// rolled back to an older, still valid one.

// runSANImpersonation is a genuine certificate of the real CA with a
// common name of its own and e-mail and DNS SANs that spell the real
// client's name: a policy that took every SAN for a name would give it the
// real client's rights.
//
// Only the SANs that a verifier accepts under the CA's name constraints are
// used: a CA constrained to other DNS names cannot issue the DNS SAN (a
// leaf forged with one is the outside-constraints scenario), and Go's
// verifier refuses, under a CA with any name constraints, an e-mail SAN
// that is not an address or that e-mail constraints do not cover.
func runSANImpersonation(ctx context.Context, e *env, key string) observation {
	name := e.client.Leaf.Subject.CommonName
	emails, hosts := []string{name}, []string{name}
	var left []string
	for _, c := range caChain(e.ca) {
		nc := pki.ConstraintsOf(c)
		if emails != nil && !nc.Empty() && (!strings.Contains(name, "@") || len(nc.Emails) > 0) {
			emails, left = nil, append(left, "email:"+name)
		}
	}
	if !permitted(e.ca, name) {
		hosts, left = nil, append(left, "DNS:"+name)
	}
	if emails == nil && hosts == nil {
		return observation{outcome: Skipped, observed: fmt.Sprintf("the name constraints of the CA permit neither an e-mail nor a DNS SAN that spells %q: no such certificate can be issued", name), serverSaw: "-", clientSaw: "-"}
	}
	k, err := pki.GenerateKey(e.keyType)
	if err != nil {
		return broken("generate a key: %v", err)
	}
	now := e.now()
	leaf, err := e.ca.Sign(pki.LeafRequest{
		Profile: pki.ProfileClient, Subject: pkix.Name{CommonName: e.identity("san")},
		Emails: emails, Hosts: hosts, PublicKey: k.Public(), NotAfter: now.Add(materialLifetime),
	}, now)
	if err != nil {
		return broken("make the certificate: %v", err)
	}
	var sans []string
	for _, a := range emails {
		sans = append(sans, "email:"+a)
	}
	for _, h := range hosts {
		sans = append(sans, "DNS:"+h)
	}
	note := ""
	if len(left) > 0 {
		note = " (without " + strings.Join(left, ", ") + ": not valid under the CA's name constraints)"
	}
	cert := tlsCert(k, leafChain(e.ca, leaf)...)
	c, err := e.realClient(e.addr, &cert)
	if err != nil {
		return broken("load the client: %v", err)
	}
	defer c.Close()
	_, perr := c.Put(ctx, key, []byte("written with a SAN that spells another identity"), kvs.Cond{})
	o := observation{serverSaw: e.serverKey(ctx, key, 1)}
	var se *client.StatusError
	switch {
	case perr == nil:
		o.outcome, o.wrote, o.clientSaw = Succeeded, true, "PUT accepted"
		o.observed = fmt.Sprintf("write accepted: the SANs %s got the rights of %q%s", strings.Join(sans, " and "), name, note)
	case errors.As(perr, &se) && se.Code == 403:
		o.outcome, o.clientSaw = Refused, errText(perr)
		o.observed = "handshake accepted, write refused with 403: the SANs are not the identity " + name + note
	default:
		o.outcome, o.observed, o.clientSaw = Broken, "expected the handshake to pass and the policy to refuse", errText(perr)
	}
	return o
}

// runSecondCARevoked presents a certificate that the second CA of the
// server's bundle issued and revoked: a server that read only the first
// CRL, or looked serials up without their issuer, would let it in.
func runSecondCARevoked(ctx context.Context, e *env, key string) observation {
	if e.second == "" {
		return observation{outcome: Skipped, observed: "needs a second CA in the server's bundle, with its key (the demo sets one up)", serverSaw: "-", clientSaw: "-"}
	}
	name := e.identity("ca2")
	iss, err := pki.Issue(ctx, pki.IssueOptions{Dir: e.second, Profile: pki.ProfileClient, Name: name, KeyType: e.keyType, Days: 1})
	if err != nil {
		return broken("issue from the second CA: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(iss.CertFile, iss.KeyFile)
	if err != nil {
		return broken("load %s: %v", iss.CertFile, err)
	}
	cfg := e.attackerTLS(cert)
	if _, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: e.second, Target: iss.CertFile, Reason: "keyCompromise"}); err != nil {
		return broken("revoke with the second CA: %v", err)
	}
	if err := e.reload(ctx, cfg); err != nil {
		o := e.judgeHandshake(ctx, tryTLS(ctx, e.addr, cfg, key))
		o.observed += " (" + err.Error() + ")"
		return o
	}
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, cfg, key))
}

// runRolledBackCRL revokes a certificate, then puts the previous CRL (an
// older one, still valid and properly signed) back in place of the new
// one, and presents the certificate: a server that took any valid CRL
// would un-revoke it. The newest CRL is put back afterwards.
func runRolledBackCRL(ctx context.Context, e *env, key string) observation {
	older, err := os.ReadFile(e.dir.CRL())
	if err != nil {
		return broken("read the CRL: %v", err)
	}
	cert, file, err := e.issueForRevocation(ctx, "rollback")
	if err != nil {
		return broken("%v", err)
	}
	cfg := e.attackerTLS(cert)
	if err := e.revoke(ctx, file, cfg); err != nil {
		return broken("the server did not take up the revocation: %v", err)
	}
	newer, err := os.ReadFile(e.dir.CRL())
	if err != nil {
		return broken("read the CRL: %v", err)
	}
	defer func() {
		_ = pki.WriteFileAtomic(e.dir.CRL(), newer, pki.CertMode, true)
		_ = e.reloadQuiet(ctx)
	}()
	if err := pki.WriteFileAtomic(e.dir.CRL(), older, pki.CertMode, true); err != nil {
		return broken("write the older CRL: %v", err)
	}
	note := e.reloadQuiet(ctx)
	o := e.judgeHandshake(ctx, tryTLS(ctx, e.addr, cfg, key))
	if o.outcome == Refused {
		o.observed = "the older CRL was refused, the revocation held: " + o.observed
	}
	if note != "" {
		o.observed += " (" + note + ")"
	}
	return o
}

// reloadQuiet has the server look at its files again after a change that
// it should refuse: the demo server reloads at once (its refusal is the
// note), a remote one is given a few seconds of its file watcher.
func (e *env) reloadQuiet(ctx context.Context) string {
	if e.log != nil {
		if err := e.reload(ctx, nil); err != nil {
			return "the server said: " + err.Error()
		}
		return ""
	}
	select {
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
	return ""
}
