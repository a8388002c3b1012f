package kvs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors a Store returns. Callers branch on them with errors.Is; the
// returned error usually wraps one of them together with a short cause.
var (
	// ErrNotFound means the key does not exist.
	ErrNotFound = errors.New("kvs: key not found")
	// ErrPrecondition means a write condition (Cond) did not hold: the
	// current version differs from Cond.IfVersion, or Cond.CreateOnly was
	// set and the key exists. Nothing was written.
	ErrPrecondition = errors.New("kvs: version precondition failed")
	// ErrUnavailable means the store could not serve the request: the
	// database is down or timed out, the disk is read-only or full, the
	// store is closed. Retrying later may succeed.
	ErrUnavailable = errors.New("kvs: store unavailable")
	// ErrInvalidKey means a key (or a List prefix or cursor) is malformed;
	// see ValidateKey.
	ErrInvalidKey = errors.New("kvs: invalid key")
	// ErrForbidden means the server's policy denies the request.
	ErrForbidden = errors.New("kvs: forbidden by policy")
)

// MaxPageSize is the largest page a List returns: a Store's List uses it
// when given a limit < 1, and the HTTP API accepts no larger limit.
const MaxPageSize = 1000

// Cond is a write precondition. The zero value means unconditional.
//
// IfVersion > 0 writes only if the key exists with exactly that version.
// CreateOnly writes only if the key does not exist. Setting both, or a
// negative IfVersion, is a condition no key can meet: Put returns
// ErrPrecondition.
type Cond struct {
	IfVersion  int64 // >0: write only if the current version equals this
	CreateOnly bool  // write only if the key does not exist
}

// Satisfiable reports whether some state of a key could meet c.
func (c Cond) Satisfiable() bool {
	return c.IfVersion >= 0 && !(c.IfVersion > 0 && c.CreateOnly)
}

// Unconditional reports whether c is the zero Cond.
func (c Cond) Unconditional() bool { return c == Cond{} }

// Entry is a stored value with its metadata.
type Entry struct {
	Key     string
	Value   []byte    // never nil; empty for an empty value
	Version int64     // the store revision of the Put that wrote Value
	Updated time.Time // time of that Put, UTC (microseconds in PostgreSQL)
}

// KeyInfo describes a key without its value, as returned by List.
type KeyInfo struct {
	Key     string    `json:"key"`
	Version int64     `json:"version"`
	Size    int       `json:"size"` // value length in bytes
	Updated time.Time `json:"updated"`
}

// Store is a key-value store with versioned, conditional writes.
//
// Versions are store-wide revisions: every successful Put gets a version
// greater than that of every Put that completed before it started, on any
// key, so a deleted and recreated key never gets an old version back and
// an If-Match on a stale version cannot succeed by accident (no ABA).
// A Put that replaces a value gets a version greater than the one it
// replaces, even when Puts of the key race, so a key's version only grows
// while the key exists (a Put racing a Delete may recreate the key with a
// lower version than the deleted value had).
// Versions are not contiguous. A version identifies one write of one key:
// the puts of one transaction (Txner) share the transaction's revision,
// every other write has a revision of its own.
//
// Keys must pass ValidateKey; methods return a wrapped ErrInvalidKey
// otherwise. Every method returns a wrapped ErrUnavailable when the
// backend cannot be reached, and the context's error (errors.Is
// context.Canceled or context.DeadlineExceeded) when ctx ends first; in
// both cases a write may or may not have happened, except that a write
// whose ctx is already done on entry never happens. A Store is safe for
// concurrent use.
//
// The stores in kvs/bolt and kvs/postgres implement it, and so does the
// HTTP client in kvs/client, which maps the server's answers back to these
// errors; kvs/kvstest checks all three.
type Store interface {
	// Get returns the entry for key, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)

	// Put stores value under key if c holds and returns the new version.
	// It returns ErrPrecondition when c does not hold (an IfVersion on a
	// missing key does not hold). A nil value is stored as empty.
	Put(ctx context.Context, key string, value []byte, c Cond) (int64, error)

	// Delete removes key if c holds. It returns ErrNotFound when the key
	// does not exist (whatever c says) and ErrPrecondition when it exists
	// but its version differs from c.IfVersion or c.CreateOnly is set.
	Delete(ctx context.Context, key string, c Cond) error

	// List returns, in byte order, at most limit keys that start with
	// prefix and sort strictly after the cursor after (empty: from the
	// start). A limit < 1 means MaxPageSize. next is the last key
	// returned when more keys remain, to be passed as after for the next
	// page, and "" on the last page.
	List(ctx context.Context, prefix, after string, limit int) (keys []KeyInfo, next string, err error)

	// Ping checks that the store can serve requests; it returns a wrapped
	// ErrUnavailable when it cannot.
	Ping(ctx context.Context) error

	// Close releases the store. Calls after Close return ErrUnavailable.
	// Closing twice returns nil.
	Close() error
}

// CtxErr wraps the caller's context error for op, or returns nil. Stores
// call it on entry, so that a write whose context is already done never
// happens.
func CtxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
