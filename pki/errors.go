package pki

import "fmt"

// kindError is an error with its own message that still matches a sentinel
// with errors.Is, so the message a user reads does not end in the sentinel's
// text ("no CA in certs: run 'kvsctl pki init'", not "...: pki: no CA").
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// errorOf returns an error with a formatted message that wraps kind.
func errorOf(kind error, format string, a ...any) error {
	return &kindError{msg: fmt.Sprintf(format, a...), kind: kind}
}
