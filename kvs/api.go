package kvs

import (
	"errors"
	"net/http"
	"time"
)

// The HTTP API's paths (docs/api.md). A key is the rest of the escaped path
// after KeyPath, unescaped once.
const (
	KeyPath     = "/v1/kv/"   // GET, PUT, DELETE /v1/kv/{key}
	ListPath    = "/v1/kv"    // GET /v1/kv?prefix=P&after=K&limit=N
	WatchPath   = "/v1/watch" // GET /v1/watch?prefix=P|key=K&rev=N&values=false (server-sent events)
	HealthPath  = "/healthz"
	MetricsPath = "/metrics"
)

// DefaultPageSize is the page of GET /v1/kv without a limit; the largest
// limit accepted is MaxPageSize.
const DefaultPageSize = 100

// HeaderUpdated carries, on a GET of a key, the time of the write that
// stored the value (RFC 3339 with nanoseconds, UTC). ETag carries its
// version in quotes.
const HeaderUpdated = "Kvs-Updated"

// HeaderRevision carries, on a watch, the revision it starts after.
const HeaderRevision = "Kvs-Revision"

// HeaderIndex carries, on a long poll (GET /v1/kv?index=N&wait=D), the
// revision to pass as index next.
const HeaderIndex = "Kvs-Index"

// CompactedResponse is the body of a 410 Gone: the changes asked for are
// no longer kept; a watch may resume after Oldest (after listing again).
type CompactedResponse struct {
	Error  string `json:"error"`
	Oldest int64  `json:"oldest_revision"`
}

// ListResponse is the body of GET /v1/kv.
type ListResponse struct {
	Keys []KeyInfo `json:"keys"`
	Next string    `json:"next"` // the cursor of the next page; "" on the last
}

// PutResponse is the body of a successful PUT /v1/kv/{key}.
type PutResponse struct {
	Key     string `json:"key"`
	Version int64  `json:"version"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// errorStatus pairs each sentinel error with its HTTP status, in both
// directions: the server answers a wrapped sentinel with its status, and
// the client turns the status back into the sentinel.
var errorStatus = []struct {
	err    error
	status int
}{
	{ErrNotFound, http.StatusNotFound},
	{ErrPrecondition, http.StatusPreconditionFailed},
	{ErrInvalidKey, http.StatusBadRequest},
	{ErrForbidden, http.StatusForbidden},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrCompacted, http.StatusGone},
}

// StatusOf returns the HTTP status for an error that wraps one of the
// package's sentinels, and 0 for any other error.
func StatusOf(err error) int {
	for _, es := range errorStatus {
		if errors.Is(err, es.err) {
			return es.status
		}
	}
	return 0
}

// ErrorOf returns the sentinel error an HTTP status stands for, or nil.
func ErrorOf(status int) error {
	for _, es := range errorStatus {
		if es.status == status {
			return es.err
		}
	}
	return nil
}

// The lease endpoints (docs/api.md).
const (
	LeasePath = "/v1/lease" // POST /v1/lease; GET, DELETE /v1/lease/{id}; POST /v1/lease/{id}/keepalive
)

// LeaseGrantRequest is the body of POST /v1/lease.
type LeaseGrantRequest struct {
	TTL string `json:"ttl"` // a Go duration, like "30s"
}

// LeaseResponse describes a lease.
type LeaseResponse struct {
	ID        int64    `json:"id"`
	TTL       string   `json:"ttl"`
	Remaining string   `json:"remaining"`
	Owner     string   `json:"owner"`
	Keys      []string `json:"keys"`
}

// LeaseResponseOf is the wire form of l.
func LeaseResponseOf(l Lease) LeaseResponse {
	keys := l.Keys
	if keys == nil {
		keys = []string{}
	}
	return LeaseResponse{ID: l.ID, TTL: l.TTL.String(), Remaining: l.Remaining.Round(time.Millisecond).String(), Owner: l.Owner, Keys: keys}
}
