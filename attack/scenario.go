package attack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Prefix is the reserved key prefix: every key an attacker (or the control)
// tries to write starts with it, so a run against a real server touches
// nothing else and can check and remove exactly what it wrote.
const Prefix = "kvsctl-attack/"

// Scenario is one attack, or the legitimate control.
type Scenario struct {
	Name        string // short, unique, used with --scenario
	Description string // one line
	Attacker    string // what the attacker does
	Expected    string // what a sound deployment does about it
	NeedsCAKey  bool   // the attacker material is signed by the real CA
	Control     bool   // the legitimate client; it must succeed

	// online marks the scenarios of the demo's online CA, which the demo
	// starts only when one of them runs.
	online bool
	run    func(ctx context.Context, e *env, key string) observation
}

// scenarios is the catalogue, in the order they run. The control comes
// first: when it fails, the refusals that follow prove nothing.
var scenarios = []Scenario{
	{
		Name:        "control",
		Description: "the legitimate client writes, reads back and deletes a key",
		Attacker:    "the real client with the real certificate: put, get, delete",
		Expected:    "accepted, round trip works",
		Control:     true,
		run:         runControl,
	},
	{
		Name:        "self-signed-client",
		Description: "the original demo: a self-signed RSA-2048 client certificate copying the real client's subject",
		Attacker:    "self-signed RSA-2048 cert with the real client's subject",
		Expected:    "refused at the handshake",
		run:         runSelfSignedClient,
	},
	{
		Name:        "rogue-ca",
		Description: "a client certificate from a rogue CA that copies the real CA's subject name and key id",
		Attacker:    "cert from a look-alike CA (same subject and key id)",
		Expected:    "refused at the handshake",
		run:         runRogueCA,
	},
	{
		Name:        "no-client-cert",
		Description: "a client that presents no certificate at all",
		Attacker:    "no client certificate",
		Expected:    "refused at the handshake",
		run:         runNoClientCert,
	},
	{
		Name:        "expired-client",
		Description: "a client certificate from the real CA that expired yesterday",
		Attacker:    "real-CA cert, expired yesterday",
		Expected:    "refused at the handshake",
		NeedsCAKey:  true,
		run:         runExpired,
	},
	{
		Name:        "not-yet-valid-client",
		Description: "a client certificate from the real CA that becomes valid tomorrow",
		Attacker:    "real-CA cert, valid from tomorrow",
		Expected:    "refused at the handshake",
		NeedsCAKey:  true,
		run:         runNotYetValid,
	},
	{
		Name:        "revoked-client",
		Description: "a client certificate from the real CA that is listed in the CRL",
		Attacker:    "real-CA cert, revoked and in the CRL",
		Expected:    "refused at the handshake",
		NeedsCAKey:  true,
		run:         runRevoked,
	},
	{
		Name:        "revoked-resumed",
		Description: "a client resumes a TLS session it established before its certificate was revoked",
		Attacker:    "resumes a pre-revocation TLS session",
		Expected:    "resumption refused",
		NeedsCAKey:  true,
		run:         runRevokedResumed,
	},
	{
		Name:        "server-cert-as-client",
		Description: "a certificate from the real CA for server use only (serverAuth) presented as a client certificate",
		Attacker:    "real-CA serverAuth-only cert as client cert",
		Expected:    "refused at the handshake",
		NeedsCAKey:  true,
		run:         runServerCertAsClient,
	},
	{
		Name:        "tls10",
		Description: "protocol downgrade: a TLS 1.0 ClientHello (with a valid client certificate)",
		Attacker:    "TLS 1.0 ClientHello, CBC suites",
		Expected:    "refused at the handshake",
		run:         runTLS10,
	},
	{
		Name:        "tls11",
		Description: "protocol downgrade: a TLS 1.1 ClientHello (with a valid client certificate)",
		Attacker:    "TLS 1.1 ClientHello, CBC suites",
		Expected:    "refused at the handshake",
		run:         runTLS11,
	},
	{
		Name:        "tls12-cbc",
		Description: "cipher downgrade: TLS 1.2 offering only CBC and RSA-key-exchange suites (with a valid client certificate)",
		Attacker:    "TLS 1.2 with only CBC/RSA-kex suites",
		Expected:    "refused at the handshake",
		run:         runTLS12CBC,
	},
	{
		Name:        "plaintext-http",
		Description: "plain HTTP (no TLS) to the TLS port",
		Attacker:    "plaintext HTTP PUT to the TLS port",
		Expected:    "refused, nothing stored",
		run:         runPlaintext,
	},
	{
		Name:        "rogue-server",
		Description: "server impersonation: the real client meets a server with a self-signed certificate for the same host name",
		Attacker:    "impostor server, self-signed cert for the real host name",
		Expected:    "client refuses, sends no request",
		run:         runRogueServer,
	},
	{
		Name:        "hostname-mismatch",
		Description: "the real client meets a server whose certificate is from the real CA but for another name",
		Attacker:    "server with a real-CA cert for another name",
		Expected:    "client refuses, sends no request",
		NeedsCAKey:  true,
		run:         runHostnameMismatch,
	},
	{
		Name:        "san-impersonation",
		Description: "a valid client of the real CA whose e-mail and DNS SANs spell the real client's identity",
		Attacker:    "real-CA cert, own CN, SANs naming the real client",
		Expected:    "403 forbidden: a SAN is not a common name",
		NeedsCAKey:  true,
		run:         runSANImpersonation,
	},
	{
		Name:        "second-ca-revoked",
		Description: "a client certificate that the second CA of the server's bundle issued and revoked in its own CRL",
		Attacker:    "cert of CA 2, revoked in CA 2's CRL",
		Expected:    "refused at the handshake",
		NeedsCAKey:  true, // the second CA's
		run:         runSecondCARevoked,
	},
	{
		Name:        "rolled-back-crl",
		Description: "a revoked client after its CRL was replaced by the previous, still valid CRL",
		Attacker:    "revoked cert, older CRL put back",
		Expected:    "older CRL refused, still revoked",
		NeedsCAKey:  true,
		run:         runRolledBackCRL,
	},
	{
		Name:        "outside-policy",
		Description: "authenticated but not authorized: a valid client of the real CA that the policy does not name",
		Attacker:    "valid real-CA cert, identity not in the policy",
		Expected:    "403 forbidden, nothing written",
		NeedsCAKey:  true,
		run:         runOutsidePolicy,
	},
	{
		Name:        "outside-constraints",
		Description: "a client certificate for a name outside the issuing CA's name constraints, forged with that CA's key past pki's own check",
		Attacker:    "leaf forged with the intermediate's key, SAN outside its constraints",
		Expected:    "refused at the handshake: name not permitted",
		NeedsCAKey:  true,
		run:         runOutsideConstraints,
	},
	{
		Name:        "intermediate-as-client",
		Description: "the issuing intermediate CA's own certificate, with its key, presented as a client certificate",
		Attacker:    "the intermediate CA's certificate and key as client cert",
		Expected:    "refused at the handshake: a CA is not a client",
		NeedsCAKey:  true,
		run:         runIntermediateAsClient,
	},
	{
		Name:        "revoked-intermediate",
		Description: "a valid client certificate whose intermediate CA its root revoked (the second CA of the server's bundle)",
		Attacker:    "leaf of an intermediate that is on its root's CRL",
		Expected:    "refused at the handshake: a CA of the chain is revoked",
		NeedsCAKey:  true, // the second CA's
		run:         runRevokedIntermediate,
	},
	{
		Name:        "retired-root",
		Description: "a client certificate of a root that was rotated out and then retired (the second CA of the server's bundle)",
		Attacker:    "leaf of the old generation after the root's retirement",
		Expected:    "refused at the handshake: unknown authority",
		NeedsCAKey:  true, // the second CA's
		run:         runRetiredRoot,
	},
	{
		Name:        "token-replay",
		Description: "a single-use enrollment token of the online CA, presented again with a new CSR after the real client enrolled with it",
		Attacker:    "spent enrollment token, new CSR",
		Expected:    "403 from the CA: the token was used",
		NeedsCAKey:  true, // the online CA's
		online:      true,
		run:         runTokenReplay,
	},
	{
		Name:        "revoked-renewal",
		Description: "a revoked client certificate asks the online CA, over mutual TLS, to renew it for a new key",
		Attacker:    "revoked cert renews itself at the CA",
		Expected:    "403 from the CA: revoked, no renewal",
		NeedsCAKey:  true, // the online CA's
		online:      true,
		run:         runRevokedRenewal,
	},
}

// Scenarios returns the catalogue of scenarios, in the order they run.
func Scenarios() []Scenario {
	return slices.Clone(scenarios)
}

// Lookup returns the scenario called name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// ErrUnknownScenario is wrapped by the error for a scenario name that does
// not exist.
var ErrUnknownScenario = errors.New("attack: unknown scenario")

// Select returns the named scenarios in catalogue order, or all of them when
// names is empty. An unknown name is an error that lists the known ones.
func Select(names []string) ([]Scenario, error) {
	if len(names) == 0 {
		return Scenarios(), nil
	}
	want := map[string]bool{}
	for _, n := range names {
		if _, ok := Lookup(n); !ok {
			known := make([]string, len(scenarios))
			for i, s := range scenarios {
				known[i] = s.Name
			}
			return nil, fmt.Errorf("%w %q: use one of %s", ErrUnknownScenario, n, strings.Join(known, ", "))
		}
		want[n] = true
	}
	var out []Scenario
	for _, s := range scenarios {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}
