package kvs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors of transactions, besides the Store's.
var (
	// ErrInvalidTxn means a transaction is malformed: an unknown compare
	// or operation, a compare that says nothing, a lease a store cannot
	// keep. Nothing was applied.
	ErrInvalidTxn = errors.New("kvs: invalid transaction")
	// ErrTooLarge means a request exceeds a limit of the store or the
	// server: more operations than MaxTxnOps, a body or value over the
	// size limit. Nothing was applied.
	ErrTooLarge = errors.New("kvs: request too large")
)

// DefaultMaxTxnOps is the most compares, and the most operations in each
// branch, that a transaction may hold unless the server is configured
// otherwise (etcd's --max-txn-ops has the same default).
const DefaultMaxTxnOps = 128

// CompareKind is what a Compare checks.
type CompareKind string

// The kinds of compares.
const (
	// CompareVersion holds when the key's version equals Compare.Version;
	// a Version of 0 holds when the key does not exist.
	CompareVersion CompareKind = "version"
	// CompareExists holds when the key exists and Compare.Exists is true,
	// or does not exist and it is false.
	CompareExists CompareKind = "exists"
	// CompareValue holds when the key exists and its value equals
	// Compare.Value byte for byte.
	CompareValue CompareKind = "value"
)

// Compare is one condition of a transaction, about one key.
type Compare struct {
	Key     string
	Kind    CompareKind
	Version int64  // CompareVersion
	Exists  bool   // CompareExists
	Value   []byte // CompareValue
}

// Holds reports whether c holds for the key's current entry (found false:
// the key does not exist).
func (c Compare) Holds(e Entry, found bool) bool {
	switch c.Kind {
	case CompareVersion:
		if c.Version == 0 {
			return !found
		}
		return found && e.Version == c.Version
	case CompareExists:
		return found == c.Exists
	case CompareValue:
		return found && string(e.Value) == string(c.Value)
	}
	return false
}

// OpKind is what an Op does.
type OpKind string

// The operations of a transaction.
const (
	OpPut          OpKind = "put"           // store Value (and Lease) under Key
	OpDelete       OpKind = "delete"        // remove Key; a missing key is not an error
	OpGet          OpKind = "get"           // read Key as the branch left it so far
	OpDeletePrefix OpKind = "delete_prefix" // remove every key that starts with Key (the prefix, not empty)
)

// Op is one operation of a transaction branch. For OpDeletePrefix, Key is
// the prefix.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte // OpPut; nil is stored as empty
	Lease int64  // OpPut: the lease the key is attached to, 0 for none
}

// Writes reports whether op changes the store.
func (op Op) Writes() bool { return op.Kind != OpGet }

// Txn is a transaction: when every Compare holds, Success runs, otherwise
// Failure; either way atomically, at one revision. The operations of a
// branch run in order: a get sees the puts and deletes before it.
type Txn struct {
	Compare []Compare
	Success []Op
	Failure []Op
}

// Branch returns the operations that run when succeeded is as given.
func (t Txn) Branch(succeeded bool) []Op {
	if succeeded {
		return t.Success
	}
	return t.Failure
}

// OpResult is the outcome of one operation of the branch that ran.
type OpResult struct {
	Kind OpKind
	Key  string // the key, or the prefix of an OpDeletePrefix
	// Version is the new version of a put, and the version of a get's
	// entry (0 when the key does not exist).
	Version int64
	// Found reports, for a get, whether the key exists; Value and Updated
	// are its entry then.
	Found   bool
	Value   []byte
	Updated time.Time
	// Deleted is the number of keys a delete or delete_prefix removed.
	Deleted int64
}

// TxnResult is the outcome of a transaction.
type TxnResult struct {
	// Succeeded reports whether every compare held (Success ran).
	Succeeded bool
	// Revision is the revision of the branch's writes: every put of the
	// branch has this version. A branch without writes has the store's
	// revision at the time it ran.
	Revision int64
	Results  []OpResult // one per operation of the branch that ran, in order
}

// Txner is implemented by stores that run transactions: kvs/bolt,
// kvs/postgres and the HTTP client.
type Txner interface {
	// Txn validates t (ValidateTxn with DefaultMaxTxnOps for a store, the
	// server's limit for the client), evaluates every compare and applies
	// the branch they choose atomically, at one revision. A compare that
	// fails is not an error: the Failure branch runs and Succeeded is
	// false. It returns a wrapped ErrInvalidTxn, ErrInvalidKey or
	// ErrTooLarge for a malformed transaction, with nothing applied, and
	// ErrUnavailable or the context's error as Store methods do.
	Txn(ctx context.Context, t Txn) (TxnResult, error)
}

// PrefixDeleter is implemented by stores that delete every key under a
// prefix atomically (a transaction of one OpDeletePrefix).
type PrefixDeleter interface {
	// DeletePrefix removes every key that starts with prefix, which must
	// not be empty, and returns how many it removed.
	DeletePrefix(ctx context.Context, prefix string) (int64, error)
}

// ValidateTxn checks t against the key rules and the limit of maxOps
// compares and maxOps operations in each branch (maxOps < 1:
// DefaultMaxTxnOps). The server and every store call it before anything
// runs.
func ValidateTxn(t Txn, maxOps int) error {
	if maxOps < 1 {
		maxOps = DefaultMaxTxnOps
	}
	for _, part := range []struct {
		name string
		n    int
	}{{"compares", len(t.Compare)}, {"success operations", len(t.Success)}, {"failure operations", len(t.Failure)}} {
		if part.n > maxOps {
			return fmt.Errorf("%w: %d %s, the limit is %d", ErrTooLarge, part.n, part.name, maxOps)
		}
	}
	for i, c := range t.Compare {
		if err := ValidateKey(c.Key); err != nil {
			return fmt.Errorf("compare %d: %w", i+1, err)
		}
		switch c.Kind {
		case CompareVersion:
			if c.Version < 0 {
				return fmt.Errorf("%w: compare %d: version must not be negative", ErrInvalidTxn, i+1)
			}
		case CompareExists, CompareValue:
		default:
			return fmt.Errorf("%w: compare %d: unknown compare %q: want version, exists or value", ErrInvalidTxn, i+1, c.Kind)
		}
	}
	for _, b := range []struct {
		name string
		ops  []Op
	}{{"success", t.Success}, {"failure", t.Failure}} {
		for i, op := range b.ops {
			if err := validateOp(op); err != nil {
				return fmt.Errorf("%s operation %d: %w", b.name, i+1, err)
			}
		}
	}
	return nil
}

func validateOp(op Op) error {
	switch op.Kind {
	case OpPut, OpDelete, OpGet:
		if op.Lease != 0 && op.Kind != OpPut {
			return fmt.Errorf("%w: only put takes a lease", ErrInvalidTxn)
		}
		if op.Lease < 0 {
			return fmt.Errorf("%w: lease must not be negative", ErrInvalidTxn)
		}
		return ValidateKey(op.Key)
	case OpDeletePrefix:
		if op.Key == "" {
			return fmt.Errorf("%w: delete_prefix needs a prefix (deleting every key is not a prefix delete)", ErrInvalidTxn)
		}
		if op.Lease != 0 {
			return fmt.Errorf("%w: only put takes a lease", ErrInvalidTxn)
		}
		return CheckList(op.Key, "")
	}
	return fmt.Errorf("%w: unknown operation %q: want put, delete, get or delete_prefix", ErrInvalidTxn, op.Kind)
}
