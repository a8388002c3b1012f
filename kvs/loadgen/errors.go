package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

// errTxnCompare counts a benchmark transaction whose compare failed
// (precondition in the table): it wrote nothing.
var errTxnCompare = fmt.Errorf("txn compare failed: %w", kvs.ErrPrecondition)

// ErrorKind reduces a request error to a short label for the "errors by
// kind" table: not_found, precondition, rejected, unavailable, http_NNN,
// untrusted_server, timeout, conn_refused, conn_reset, no_ports, eof, tls
// or other.
func ErrorKind(err error) string {
	var se *client.StatusError
	var ne net.Error
	var re tls.RecordHeaderError
	switch {
	case errors.Is(err, kvs.ErrNotFound):
		return "not_found"
	case errors.Is(err, kvs.ErrPrecondition):
		return "precondition"
	case errors.Is(err, client.ErrRejected):
		return "rejected"
	case errors.Is(err, kvs.ErrUnavailable):
		return "unavailable"
	case errors.As(err, &se):
		return "http_" + strconv.Itoa(se.Code)
	case errors.Is(err, client.ErrUntrustedServer):
		return "untrusted_server"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "conn_reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_ports"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &re):
		return "tls"
	}
	return "other"
}
