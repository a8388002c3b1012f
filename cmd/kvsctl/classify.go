package main

import (
	"errors"

	"github.com/kvsctl/kvsctl/kvs"
)

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
	case errors.Is(err, kvs.ErrRejected), errors.Is(err, kvs.ErrForbidden), errors.Is(err, kvs.ErrUntrustedServer):
		return exitRejected
	}
	return exitFailure
}
