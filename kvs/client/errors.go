package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/kvsctl/kvsctl/kvs"
)

// Errors of the client, besides the kvs sentinels that a StatusError
// matches.
var (
	// ErrRejected means the server refused this client: a TLS alert during
	// the handshake (unknown CA, revoked, expired...) or a 403 from the
	// policy.
	ErrRejected = errors.New("kvs: refused by the server")
	// ErrUntrustedServer means this client refused the server: its
	// certificate does not chain to the CA bundle or does not name the
	// host. No request was sent.
	ErrUntrustedServer = errors.New("kvs: server certificate not trusted")
)

// StatusError is an error answer of the server.
type StatusError struct {
	Code    int
	Message string
	Oldest  int64 // on a 410 Gone, the oldest revision a watch may resume after
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
}

// Is lets errors.Is match a StatusError against the kvs sentinels (by the
// API's one status table) and ErrRejected (403).
func (e *StatusError) Is(target error) bool {
	if target == ErrRejected {
		return e.Code == http.StatusForbidden
	}
	return target != nil && kvs.Matches(e.Code, target)
}

// classifyTransport tells apart the server refusing us, us refusing the
// server, and plain network errors.
func classifyTransport(err error) error {
	var cve *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var uae x509.UnknownAuthorityError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &hostErr) || errors.As(err, &uae) || errors.As(err, &cie) {
		return fmt.Errorf("%w: %w", ErrUntrustedServer, err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return err
}
