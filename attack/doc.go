// Package attack shows, scenario by scenario, that a kvs deployment refuses
// rogue clients and that its client refuses rogue servers: the
// demonstration the original project ended with (a client with its own
// self-signed certificate, refused by the server), widened to what a
// security reviewer would try. Each [Scenario] is one attack, or the
// legitimate control that must succeed for the refusals to mean anything.
//
// [Demo] is self-contained: it makes a throwaway PKI in a temporary
// directory (a root and an issuing intermediate with name constraints,
// localhost and the loopback addresses, as pki init makes them, and a
// second CA the server trusts too), serves a real kvs server on 127.0.0.1
// (bbolt by default, or a schema of its own in PostgreSQL), runs the
// scenarios, and removes everything. Because the server is in-process, each result carries the
// server's own reason for a refusal (its logged handshake error, matched to
// the attacker by local address) next to the error the client got. [Run]
// attacks a running server with the files of a PKI directory; it cannot
// see the server's log.
//
// # What a run touches
//
// Every attacker tries to write a key of its own under [Prefix]; after the
// scenarios the store is checked for those keys (directly in the demo, as
// the real client against a remote server, deleting any it finds). Run
// writes nothing else on the server. On disk, Run issues three client
// certificates (valid for a day) into the PKI directory for the revocation
// scenarios (they must be in the inventory to be revoked), revokes them,
// which re-signs the CRL, and removes their files afterwards; their
// inventory records and CRL entries stay as an audit trail. Every other
// piece of attacker material is made in memory and never written, and the
// other certificates signed by the real CA for an attack are valid for an
// hour at most. The scenarios that change a CA (a second CA's revoked
// certificate, its revoked intermediate, its root rotated and retired)
// run on the demo's second CA only, and are skipped by Run: an attack
// never revokes, rotates or retires a CA of the PKI under attack.
//
// The scenarios of the online CA (a spent enrollment token replayed, a
// revoked certificate renewing itself) need a CA that issues tokens and
// revokes certificates for them. The demo starts one (package caserver,
// as 'kvsctl pki serve' runs it) on 127.0.0.1, on a PKI directory of its
// own that the kvs server does not trust, when one of them is selected;
// Run skips them. They write nothing to the store. What the CA saw is the
// typed audit event it reports to its Observer for each request, matched
// to the attacker by address.
//
// # Verdicts
//
// A scenario that should be refused during the TLS handshake counts as
// succeeded when the server answers the attacker at the HTTP level at all,
// whatever the status: the TLS check under test let it through. An
// impersonation succeeds when the impostor receives any request. The
// outside-policy scenario succeeds when its write is accepted. A report is
// OK when every attack was refused (or skipped), the control passed and
// the store holds no attacker key. The hierarchy scenarios (a leaf forged
// outside the name constraints, the intermediate as a client, a leaf of a
// revoked intermediate, a client of a retired root) also check, in the
// demo, that the server refused for the reason under test, and report an
// ERROR otherwise: a refusal for another reason proves nothing about the
// check. Against a remote server they report the TLS alert. The online
// CA's scenarios succeed when the CA issues a certificate, and are
// refused only by a 403 whose error, and the CA's audit record of the
// request, give the reason under test (the token "was used at", the
// certificate "cannot renew itself"); any other answer is an ERROR.
//
// # Negative controls
//
// The tests of this package build deliberately weakened deployments
// (client certificate optional, CRL not loaded, TLS 1.0 allowed, name
// constraints not enforced, only the leaf's CRL checked, crypto/tls's
// verification alone, a retired root kept in the bundle, host name not
// checked by the client, an online CA whose tokens.json, or crl.pem and
// inventory.json, are put back as they were before the token was spent or
// the certificate revoked, and more), and assert that exactly the matching
// scenarios are reported as succeeded, so each check is shown able to
// fail. kvsctl cannot build them.
//
// The package never prints: progress goes to a callback and results come
// back as a [Report].
package attack
