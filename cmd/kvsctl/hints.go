package main

import (
	"errors"
	"io/fs"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caclient"
)

// hints pairs the sentinel errors of the libraries with what a user of
// this command line does about them. The libraries' messages say what went
// wrong without naming a command or flag; the advice lives here, in one
// place. The first match wins.
var hints = []struct {
	err  error
	hint string
}{
	{client.ErrUntrustedServer, "the server's certificate does not chain to the CA bundle or does not name the host in --server"},
	{kvs.ErrForbidden, "the server's policy does not allow this certificate to do that"},
	{client.ErrRejected, "the server did not accept this client certificate: is it issued by the server's CA, current and not revoked?"},
	{pki.ErrSelfSignedPKI, "this needs a CA: re-create the PKI in CA mode with 'kvsctl pki init --force'"},
	{pki.ErrNoPKI, "run 'kvsctl pki init', or point --dir (KVS_CERTS) at a PKI directory"},
	{pki.ErrRootOffline, "bring the root key back with 'kvsctl pki root import FILE', then take it offline again with 'kvsctl pki root export FILE'"},
	{pki.ErrNoCAKey, "copy the CA's key back into the PKI directory; without it this directory can only verify"},
	{pki.ErrIssuerRevoked, "make a new issuing intermediate with 'kvsctl pki ca rotate'"},
	{pki.ErrNameNotPermitted, "the CA may sign only names within its name constraints ('kvsctl pki inspect' shows them on intermediate.crt); other names need a CA with other constraints ('kvsctl pki ca rotate --permit-dns ...')"},
	{pki.ErrOutlivesIssuer, "ask for less with --ttl or --days, or rotate to a newer CA with 'kvsctl pki ca rotate'"},
	{pki.ErrLocked, "another 'kvsctl pki' command is running on this directory: wait for it, then run this again"},
	{pki.ErrUnknownRoot, "'kvsctl pki inspect certs/ca.crt' prints the fingerprint of every root"},
	{pki.ErrNoCA, "run 'kvsctl pki init', or give the CA with --ca FILE"},
	{caclient.ErrFingerprint, "the CA at --ca-url is not the one whose root has that fingerprint: check both against what 'kvsctl pki serve' printed"},
	{caclient.ErrUnreachable, "is 'kvsctl pki serve' running at --ca-url, and does its certificate name that host (pki serve --hosts)?"},
	{pki.ErrBadToken, "make a new token on the CA host: kvsctl pki token NAME --profile client|server"},
	{pki.ErrIncompleteFiles, "run 'kvsctl pki init', or give --cert, --key and --ca together"},
	{pki.ErrCAExpired, "create a new PKI with 'kvsctl pki init --force'"},
	{pki.ErrCRLExpired, "re-sign the CRL with 'kvsctl pki crl'"},
	{pki.ErrCRLNotSigned, "run 'kvsctl pki crl' to write the CRL"},
	{pki.ErrNeedPassphrase, "give the CA key's passphrase with --passphrase-file or KVS_CA_PASSPHRASE"},
	{pki.ErrWrongPassphrase, "check --passphrase-file or KVS_CA_PASSPHRASE"},
	{pki.ErrNoPassword, "give the bundle's password with --password-file or KVS_P12_PASSWORD"},
	{pki.ErrUnknownCert, "see 'kvsctl pki list' for the certificates the CA issued"},
	{pki.ErrNoKeyFile, "renew with --reuse-key, or sign a new CSR"},
	{pki.ErrNeedName, "give the certificate a name with --name"},
	{pki.ErrSANConflict, "the CSR asks for another certificate's identity; sign it with --allow-san only if it is meant to share it"},
	{pki.ErrUnconstrainedCA, "the CA can sign any name; pass --yes to trust it anyway, or create a constrained CA"},
	{pki.ErrNoRoots, "give the CA with --ca FILE (self-signed mode: the peer's certificate), or run 'kvsctl pki init'"},
	{server.ErrNoCRL, "write the CRL with 'kvsctl pki crl', give every CA's CRL with --crl, or serve without revocation checks with --no-crl"},
	{server.ErrCRLRollback, "the CRL file holds an older CRL than the one in force: put the newest back ('kvsctl pki crl' signs a new one)"},
	{server.ErrAddrInUse, "stop the other process, or pick another address with --listen"},
	{server.ErrCertExpired, "renew it with 'kvsctl pki renew FILE'"},
	{server.ErrPprofNotLoopback, "give --pprof a loopback address such as 127.0.0.1:6060"},
	{fs.ErrExist, "use --force to replace it"},
}

// hint returns the advice for err, or "".
func hint(err error) string {
	var he hintError
	if errors.As(err, &he) {
		return he.hint
	}
	for _, h := range hints {
		if errors.Is(err, h.err) {
			return h.hint
		}
	}
	return ""
}

// hintError attaches a hint of its own to an error, for advice that needs
// the command's context.
type hintError struct {
	err  error
	hint string
}

func (e hintError) Error() string { return e.err.Error() }
func (e hintError) Unwrap() error { return e.err }

// classify maps library errors to the documented exit codes: 3 key not
// found, 4 version precondition failed, 5 refused (the server refused this
// client's certificate or the policy denied the request, or this client
// refused the server's certificate), 1 anything else.
func classify(err error) int {
	switch {
	case errors.Is(err, kvs.ErrNotFound):
		return exitNotFound
	case errors.Is(err, kvs.ErrPrecondition):
		return exitPrecondition
	case errors.Is(err, client.ErrRejected), errors.Is(err, kvs.ErrForbidden), errors.Is(err, client.ErrUntrustedServer):
		return exitRejected
	}
	return exitFailure
}
