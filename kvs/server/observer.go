package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// Observer receives the server's events as they happen, on the goroutine
// that serves the connection or request, so a callback must be quick and
// safe for concurrent use. The audit log, the metrics and kvsctl attack are
// observers of the same events; a nil callback is skipped.
type Observer struct {
	// Handshake is called once for every TLS handshake, accepted or
	// refused, resumed ones included.
	Handshake func(HandshakeEvent)
	// Request is called once for every HTTP request, after its answer.
	Request func(RequestEvent)
}

// HandshakeEvent is one TLS handshake that the server finished or refused.
type HandshakeEvent struct {
	Peer        string            // the client's address, host:port
	Version     uint16            // TLS version; 0 when refused before one was chosen
	CipherSuite uint16            // 0 when none was chosen
	Resumed     bool              // a resumed session
	Err         error             // why the server refused it; nil when accepted
	Reason      Reason            // Err reduced to a label; "" when accepted
	Client      *x509.Certificate // the client's certificate, when it sent one
	Duration    time.Duration     // from the first byte read to the verdict
}

// RequestEvent is one HTTP request the server answered.
type RequestEvent struct {
	Peer     string // the client's address, host:port
	Identity string // the policy identity that matched (typed, e.g. "dns:web"); the CN when no policy is in force
	CN       string // the subject common name of the client certificate
	Serial   string // the certificate's serial, hex
	Op       string // get, put, delete, list, health, metrics or other
	Key      string // the key, or the prefix of a list
	Status   int    // the HTTP status of the answer
	BytesIn  int64  // request body bytes
	BytesOut int    // response body bytes
	Duration time.Duration
}

// Reason is a refused handshake reduced to a small set of labels, for
// metrics and for readers that branch on it.
type Reason string

// The reasons a handshake is refused.
const (
	ReasonRevoked          Reason = "revoked"
	ReasonCRLUnavailable   Reason = "crl_unavailable"
	ReasonUnknownAuthority Reason = "unknown_authority"
	ReasonExpired          Reason = "expired_or_not_yet_valid"
	ReasonWrongUsage       Reason = "wrong_usage"
	// ReasonNameNotPermitted: a name of the certificate is outside the
	// name constraints of a CA of its chain.
	ReasonNameNotPermitted Reason = "name_not_permitted"
	ReasonNoCertificate    Reason = "no_certificate"
	ReasonProtocolVersion  Reason = "protocol_version"
	ReasonNoSharedCipher   Reason = "no_shared_cipher"
	ReasonNotTLS           Reason = "not_tls"
	ReasonPlaintextHTTP    Reason = "plaintext_http"
	ReasonClientRefused    Reason = "client_refused_server"
	ReasonEOF              Reason = "eof"
	ReasonTimeout          Reason = "timeout"
	ReasonOther            Reason = "other"
)

// Reasons lists every Reason, for metrics that want a series per label.
var Reasons = []Reason{ReasonRevoked, ReasonCRLUnavailable, ReasonUnknownAuthority, ReasonExpired,
	ReasonWrongUsage, ReasonNameNotPermitted, ReasonNoCertificate, ReasonProtocolVersion, ReasonNoSharedCipher, ReasonNotTLS,
	ReasonPlaintextHTTP, ReasonClientRefused, ReasonEOF, ReasonTimeout, ReasonOther}

// errPlaintextHTTP is the handshake error of a client that spoke plain
// HTTP to the TLS port.
var errPlaintextHTTP = errors.New("client sent an HTTP request to an HTTPS server")

// ReasonOf reduces a handshake error to its Reason. The errors of this
// package and of crypto/x509 are told apart by type; the few that
// crypto/tls returns without a type (no certificate, no shared version or
// cipher suite) by their fixed text.
func ReasonOf(err error) Reason {
	var (
		uae   x509.UnknownAuthorityError
		cie   x509.CertificateInvalidError
		rhe   tls.RecordHeaderError
		op    *net.OpError
		timeo interface{ Timeout() bool }
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRevoked):
		return ReasonRevoked
	case errors.Is(err, ErrCRLUnavailable):
		return ReasonCRLUnavailable
	case errors.Is(err, errPlaintextHTTP):
		return ReasonPlaintextHTTP
	case errors.Is(err, errNoClientCert):
		return ReasonNoCertificate
	case errors.As(err, &uae):
		return ReasonUnknownAuthority
	case errors.As(err, &cie):
		switch cie.Reason {
		case x509.Expired:
			return ReasonExpired
		case x509.IncompatibleUsage:
			return ReasonWrongUsage
		case x509.CANotAuthorizedForThisName:
			return ReasonNameNotPermitted
		}
		return ReasonOther
	case errors.As(err, &rhe):
		return ReasonNotTLS
	case errors.As(err, &op) && op.Op == "remote error":
		return ReasonClientRefused
	case errors.As(err, &timeo) && timeo.Timeout():
		return ReasonTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonEOF
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		return ReasonNoCertificate
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol version"):
		return ReasonProtocolVersion
	case strings.Contains(msg, "cipher suite"):
		return ReasonNoSharedCipher
	}
	return ReasonOther
}

// observers calls several observers in turn.
type observers []Observer

func (os observers) handshake(e HandshakeEvent) {
	for _, o := range os {
		if o.Handshake != nil {
			o.Handshake(e)
		}
	}
}

func (os observers) request(e RequestEvent) {
	for _, o := range os {
		if o.Request != nil {
			o.Request(e)
		}
	}
}
