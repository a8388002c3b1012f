package pki

import (
	"errors"
	"fmt"
)

// kindError is an error with its own message that still matches a sentinel
// with errors.Is, so the message a user reads does not end in the sentinel's
// text ("no CA in certs: run 'kvsctl pki init'", not "...: pki: no CA").
type kindError struct {
	msg   string
	kinds []error
}

func (e *kindError) Error() string   { return e.msg }
func (e *kindError) Unwrap() []error { return e.kinds }

// errorOf returns an error with a formatted message that wraps kind.
func errorOf(kind error, format string, a ...any) error {
	return &kindError{msg: fmt.Sprintf(format, a...), kinds: []error{kind}}
}

// errorOfAll is errorOf for an error that matches several sentinels.
func errorOfAll(kinds []error, format string, a ...any) error {
	return &kindError{msg: fmt.Sprintf(format, a...), kinds: kinds}
}

// Errors callers branch on, besides those of the files that define them
// (ErrNoPKI, ErrNoCA, ErrCRLExpired, ...). Messages never name a command
// or flag of kvsctl: the CLI adds that advice from the sentinel.
var (
	// ErrSelfSignedPKI means a directory is a self-signed PKI where a CA
	// is needed. It also matches ErrNoCA.
	ErrSelfSignedPKI = errors.New("pki: self-signed PKI, no CA")
	// ErrCAExpired means the CA certificate has expired: only a new PKI
	// helps.
	ErrCAExpired = errors.New("pki: CA certificate expired")
	// ErrNeedPassphrase means a key is encrypted and no passphrase was
	// given.
	ErrNeedPassphrase = errors.New("pki: key is encrypted")
	// ErrUnknownCert means no certificate of the inventory or directory
	// has the serial or name asked for.
	ErrUnknownCert = errors.New("pki: no such certificate")
	// ErrNoKeyFile means a certificate has no key next to it (it was
	// signed from a CSR): a renewal can only keep the old key.
	ErrNoKeyFile = errors.New("pki: no key file")
	// ErrNeedName means a name could not be derived and must be given.
	ErrNeedName = errors.New("pki: a name is needed")
	// ErrCRLNotSigned means a revocation was recorded but the new CRL
	// could not be written: re-signing the CRL retries.
	ErrCRLNotSigned = errors.New("pki: CRL not re-signed")
	// ErrSANConflict means a client CSR asks for a SAN that is the common
	// name or a SAN of another current certificate: signing it would
	// give the new certificate that certificate's identity.
	ErrSANConflict = errors.New("pki: SAN matches another identity")
	// ErrNoCAKey means the key of a CA is not in the directory: it can
	// verify, not sign. It also matches ErrNoCA.
	ErrNoCAKey = errors.New("pki: CA key missing")
	// ErrLocked means another process holds the lock of the PKI
	// directory, and the command does not wait for it.
	ErrLocked = errors.New("pki: PKI directory locked")
	// ErrWeakKey means a public key is too weak, or of a kind kvsctl does
	// not accept, to certify or to trust (see [CheckPublicKey]).
	ErrWeakKey = errors.New("pki: weak or unsupported public key")
)
