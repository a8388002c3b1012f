package kvs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLeaseNotFound means the lease does not exist: it was never granted,
// it was revoked, or its TTL ran out. It matches ErrNotFound too.
var ErrLeaseNotFound error = leaseNotFound{}

type leaseNotFound struct{}

func (leaseNotFound) Error() string        { return "kvs: lease not found" }
func (leaseNotFound) Is(target error) bool { return target == ErrNotFound }

// ErrInvalidTTL means a TTL is outside MinTTL..MaxTTL.
var ErrInvalidTTL = errors.New("kvs: invalid TTL")

// The TTLs a lease may have.
const (
	MinTTL = time.Second
	MaxTTL = 30 * 24 * time.Hour
)

// CheckTTL returns a wrapped ErrInvalidTTL when ttl is outside MinTTL..MaxTTL.
func CheckTTL(ttl time.Duration) error {
	if ttl < MinTTL || ttl > MaxTTL {
		return fmt.Errorf("%w: %s: want from %s to %s", ErrInvalidTTL, ttl, MinTTL, MaxTTL)
	}
	return nil
}

// Lease is a time to live shared by keys: when it runs out, or is revoked,
// its keys are deleted together. Time comes from the store's one clock, so
// that servers with skewed clocks agree.
type Lease struct {
	ID        int64
	TTL       time.Duration // as granted; each keep-alive starts it again
	Remaining time.Duration // until the lease expires, at the store's clock
	Owner     string        // the identity that granted it (the server's policy identity)
	Keys      []string      // its live keys, in byte order (at most MaxPageSize)
}

// Leaser is implemented by stores with leases: the stores in kvs/bolt and
// kvs/postgres and the HTTP client.
//
// A key put with a lease is invisible to Get, List and conditions from the
// moment the lease expires, before any sweep; Sweep then deletes it,
// logging an EventExpire. A Put without a lease detaches a key from its
// lease. Revoke deletes the live keys of the lease (EventDelete each).
type Leaser interface {
	// Grant creates a lease of ttl for owner; ErrInvalidTTL when ttl is
	// outside MinTTL..MaxTTL.
	Grant(ctx context.Context, ttl time.Duration, owner string) (Lease, error)
	// KeepAlive starts the lease's TTL again; ErrLeaseNotFound when it
	// does not exist or already expired.
	KeepAlive(ctx context.Context, id int64) (Lease, error)
	// Revoke ends the lease and deletes its keys; ErrLeaseNotFound as
	// KeepAlive.
	Revoke(ctx context.Context, id int64) error
	// LeaseInfo returns the lease with its remaining TTL and keys.
	LeaseInfo(ctx context.Context, id int64) (Lease, error)
	// PutLease is Put with the key bound to lease id (0: none, as Put);
	// ErrLeaseNotFound when the lease does not exist or expired.
	PutLease(ctx context.Context, key string, value []byte, c Cond, lease int64) (int64, error)
	// Sweep deletes the keys and leases that have expired, at most a page
	// at a time, and returns how many keys it deleted. Stores shared by
	// several servers let one sweep at a time.
	Sweep(ctx context.Context) (int, error)
}
