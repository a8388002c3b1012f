package kvs

import (
	"encoding/base64"
	"errors"
	"fmt"
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

	TxnPath      = "/v1/txn"      // POST: a transaction (TxnRequest, TxnResponse)
	SnapshotPath = "/v1/snapshot" // GET: the store's snapshot (kvs/snapshot format)
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
	{ErrInvalidTxn, http.StatusBadRequest},
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{ErrForbidden, http.StatusForbidden},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrCompacted, http.StatusGone},
}

// Matches reports whether an answer with status stands for target: every
// sentinel of that status matches (a 400 is ErrInvalidKey and
// ErrInvalidTxn alike).
func Matches(status int, target error) bool {
	for _, es := range errorStatus {
		if es.status == status && es.err == target {
			return true
		}
	}
	return false
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

// ErrorOf returns the sentinel error an HTTP status stands for, or nil;
// of two with the same status, the first (400: ErrInvalidKey).
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

// TxnRequest is the body of POST /v1/txn, and the file of kvsctl txn.
// Values are base64 (standard encoding, with padding).
type TxnRequest struct {
	Compare []TxnCompare `json:"compare"`
	Success []TxnOp      `json:"success"`
	Failure []TxnOp      `json:"failure"`
}

// TxnCompare is one compare of a TxnRequest: a key and exactly one of
// version, exists or value.
type TxnCompare struct {
	Key     string  `json:"key"`
	Version *int64  `json:"version,omitempty"`
	Exists  *bool   `json:"exists,omitempty"`
	Value   *string `json:"value,omitempty"`
}

// TxnOp is one operation of a TxnRequest: op is put, delete, get or
// delete_prefix; key names the key (prefix the prefix of delete_prefix).
type TxnOp struct {
	Op     string `json:"op"`
	Key    string `json:"key,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Value  string `json:"value,omitempty"` // put: base64
	Lease  int64  `json:"lease,omitempty"` // put: 0 for none
}

// TxnResponse is the body of a successful POST /v1/txn.
type TxnResponse struct {
	Succeeded bool          `json:"succeeded"`
	Branch    string        `json:"branch"` // "success" or "failure"
	Revision  int64         `json:"revision"`
	Results   []TxnOpResult `json:"results"`
}

// TxnOpResult is the outcome of one operation of the branch that ran.
type TxnOpResult struct {
	Op      string     `json:"op"`
	Key     string     `json:"key,omitempty"`
	Prefix  string     `json:"prefix,omitempty"`
	Version int64      `json:"version,omitempty"` // put: the new version; get: the entry's
	Found   *bool      `json:"found,omitempty"`   // get
	Value   *string    `json:"value,omitempty"`   // get of an existing key: base64
	Updated *time.Time `json:"updated,omitempty"` // get of an existing key
	Deleted *int64     `json:"deleted,omitempty"` // delete, delete_prefix
}

// DeletePrefixResponse is the body of a successful DELETE /v1/kv?prefix=P.
type DeletePrefixResponse struct {
	Prefix  string `json:"prefix"`
	Deleted int64  `json:"deleted"`
}

// Request returns the wire form of t.
func (t Txn) Request() TxnRequest {
	r := TxnRequest{Compare: []TxnCompare{}, Success: opsRequest(t.Success), Failure: opsRequest(t.Failure)}
	for _, c := range t.Compare {
		tc := TxnCompare{Key: c.Key}
		switch c.Kind {
		case CompareVersion:
			v := c.Version
			tc.Version = &v
		case CompareExists:
			b := c.Exists
			tc.Exists = &b
		case CompareValue:
			s := base64.StdEncoding.EncodeToString(c.Value)
			tc.Value = &s
		}
		r.Compare = append(r.Compare, tc)
	}
	return r
}

func opsRequest(ops []Op) []TxnOp {
	out := make([]TxnOp, 0, len(ops))
	for _, op := range ops {
		w := TxnOp{Op: string(op.Kind), Key: op.Key, Lease: op.Lease}
		switch op.Kind {
		case OpPut:
			w.Value = base64.StdEncoding.EncodeToString(op.Value)
		case OpDeletePrefix:
			w.Key, w.Prefix = "", op.Key
		}
		out = append(out, w)
	}
	return out
}

// Txn turns a request into a transaction; malformed parts (an unknown op,
// a compare with no or several conditions, bad base64) are a wrapped
// ErrInvalidTxn. It does not check keys or limits: see ValidateTxn.
func (r TxnRequest) Txn() (Txn, error) {
	t := Txn{Compare: make([]Compare, 0, len(r.Compare))}
	for i, tc := range r.Compare {
		c := Compare{Key: tc.Key}
		n := 0
		if tc.Version != nil {
			c.Kind, c.Version, n = CompareVersion, *tc.Version, n+1
		}
		if tc.Exists != nil {
			c.Kind, c.Exists, n = CompareExists, *tc.Exists, n+1
		}
		if tc.Value != nil {
			v, err := base64.StdEncoding.DecodeString(*tc.Value)
			if err != nil {
				return Txn{}, fmt.Errorf("%w: compare %d: value is not base64: %w", ErrInvalidTxn, i+1, err)
			}
			c.Kind, c.Value, n = CompareValue, v, n+1
		}
		if n != 1 {
			return Txn{}, fmt.Errorf("%w: compare %d: give exactly one of version, exists or value", ErrInvalidTxn, i+1)
		}
		t.Compare = append(t.Compare, c)
	}
	var err error
	if t.Success, err = opsOf("success", r.Success); err != nil {
		return Txn{}, err
	}
	if t.Failure, err = opsOf("failure", r.Failure); err != nil {
		return Txn{}, err
	}
	return t, nil
}

func opsOf(branch string, ws []TxnOp) ([]Op, error) {
	ops := make([]Op, 0, len(ws))
	for i, w := range ws {
		op := Op{Kind: OpKind(w.Op), Key: w.Key, Lease: w.Lease}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: %s operation %d: %s", ErrInvalidTxn, branch, i+1, fmt.Sprintf(format, a...))
		}
		switch op.Kind {
		case OpPut:
			v, err := base64.StdEncoding.DecodeString(w.Value)
			if err != nil {
				return nil, bad("value is not base64: %v", err)
			}
			op.Value = v
		case OpDelete, OpGet:
			if w.Value != "" {
				return nil, bad("%s takes no value", w.Op)
			}
		case OpDeletePrefix:
			if w.Key != "" || w.Value != "" {
				return nil, bad("delete_prefix takes a prefix, not a key or value")
			}
			op.Key = w.Prefix
		default:
			return nil, bad("unknown operation %q: want put, delete, get or delete_prefix", w.Op)
		}
		if w.Prefix != "" && op.Kind != OpDeletePrefix {
			return nil, bad("%s takes a key, not a prefix", w.Op)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Response returns the wire form of a transaction's result.
func (r TxnResult) Response() TxnResponse {
	out := TxnResponse{Succeeded: r.Succeeded, Branch: "failure", Revision: r.Revision, Results: make([]TxnOpResult, 0, len(r.Results))}
	if r.Succeeded {
		out.Branch = "success"
	}
	for _, res := range r.Results {
		w := TxnOpResult{Op: string(res.Kind), Key: res.Key}
		switch res.Kind {
		case OpPut:
			w.Version = res.Version
		case OpGet:
			found := res.Found
			w.Found = &found
			if found {
				v := base64.StdEncoding.EncodeToString(res.Value)
				u := res.Updated.UTC()
				w.Value, w.Updated, w.Version = &v, &u, res.Version
			}
		case OpDelete, OpDeletePrefix:
			d := res.Deleted
			w.Deleted = &d
			if res.Kind == OpDeletePrefix {
				w.Key, w.Prefix = "", res.Key
			}
		}
		out.Results = append(out.Results, w)
	}
	return out
}

// Result turns an answer back into a TxnResult.
func (r TxnResponse) Result() (TxnResult, error) {
	out := TxnResult{Succeeded: r.Succeeded, Revision: r.Revision, Results: make([]OpResult, 0, len(r.Results))}
	for i, w := range r.Results {
		res := OpResult{Kind: OpKind(w.Op), Key: w.Key, Version: w.Version}
		if res.Kind == OpDeletePrefix {
			res.Key = w.Prefix
		}
		if w.Found != nil {
			res.Found = *w.Found
		}
		if w.Value != nil {
			v, err := base64.StdEncoding.DecodeString(*w.Value)
			if err != nil {
				return TxnResult{}, fmt.Errorf("result %d: value is not base64: %w", i+1, err)
			}
			res.Value = v
		}
		if w.Updated != nil {
			res.Updated = w.Updated.UTC()
		}
		if w.Deleted != nil {
			res.Deleted = *w.Deleted
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}
