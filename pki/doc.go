// Package pki is kvsctl's certificate toolkit: it creates a local certificate
// authority, issues and renews server and client certificates, signs external
// CSRs, maintains a signed certificate revocation list (CRL) and an inventory
// of everything the CA issued, exports PKCS#12 bundles and installs the CA into
// system trust stores. Everything is done natively with crypto/x509; nothing
// shells out to openssl.
//
// # Files on disk
//
// A PKI lives in one directory (by default certs/), laid out by [Dir]:
//
//	ca.crt, ca.key            the root CA (CA mode only)
//	server.crt, server.key    the server's certificate and key
//	client.crt, client.key    the default client's certificate and key
//	crl.pem                   the signed CRL (CA mode only)
//	inventory.json            every certificate the CA issued
//	issued/NAME.crt, .key     further leaves (pki issue, sign, renew)
//
// In self-signed mode ([InitOptions].SelfSigned) there is no CA: the server and
// the client each hold a self-signed certificate and each trusts exactly the
// other's, like the original `openssl req -x509` set-up. [Dir.Mode] tells the
// two layouts apart so that callers work unchanged in either mode.
//
// # Source files
//
//	keys.go       key types, generation, PKCS#8 (encrypted: PBES2, AES-256, PBKDF2-SHA-256)
//	ca.go         the CA: roots, intermediates, loading, the key check
//	leaf.go       leaf requests: lifetimes (TTL), templates, signing, self-signing
//	init.go       Init: a whole PKI in one step
//	issue.go      Issue: a new leaf from the CA
//	sign.go       SignCSR: external CSRs, subject and SANs only
//	san.go        SANs by type; a client CSR may not take another identity's name
//	renew.go      Renew: same subject, SANs and usage, new validity, in place
//	revoke.go     Revoke, UpdateCRL
//	crl.go        CRL signing, parsing, verified lookups
//	inventory.go  inventory.json and the directory lock
//	list.go       List: inventory with statuses, CRL freshness
//	inspect.go    Inspect: certificates, CSRs and CRLs described
//	verify.go     Verify: chain, validity, revocation, usage, hostname
//	export.go     Export: PKCS#12 bundles (go-pkcs12, Modern encryption)
//	trust.go      InstallTrust, UninstallTrust (smallstep/truststore)
//	files.go      atomic writes, PEM helpers
//
// # Guarantees
//
//   - Private keys are written 0600, certificates and CRLs 0644, the directory
//     0700. A key file that group or others can read is refused on load.
//   - Every file is written to a temporary file in the same directory and
//     renamed into place, so a crash leaves the old file or the new one.
//   - Operations that write several files check everything first and generate
//     everything in memory, so a failure leaves no half-written PKI behind.
//   - Existing files are never overwritten unless the caller asks to.
//   - Serial numbers are 128-bit random; CRL numbers only increase.
//   - A revocation cannot be undone by editing inventory.json, which is not
//     signed: every new CRL carries forward each entry of the current
//     crl.pem, after verifying it against the CA, with its signed time and
//     reason, and a crl.pem that does not verify stops the re-signing.
//   - A CSR never obtains an extension it asks for: only its subject and SANs
//     are copied into the certificate.
//   - Only RSA keys of 2048 bits or more with exponent 65537, ECDSA P-256,
//     P-384 and P-521 and Ed25519 keys are certified or trusted as a CA
//     ([CheckPublicKey]).
//   - A client CSR does not get a SAN that is the common name or a SAN of
//     another current certificate unless the caller allows it
//     ([SignOptions].AllowSAN), and every SAN of every type is recorded in
//     the inventory.
//   - Parsers of outside input (certificates, CRLs, CSRs, keys) return errors
//     and never panic; an encrypted key may not ask for more than 10,000,000
//     PBKDF2 iterations or 1 GiB of scrypt memory. Each has a fuzz target.
//   - Nothing here prints, logs or exits, and no error contains key material
//     or a passphrase.
package pki
