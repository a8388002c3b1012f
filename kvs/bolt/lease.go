package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/kvsctl/kvsctl/kvs"
)

// Leases live in three buckets: "leases" maps a lease id (big-endian
// uint64, from the bucket's sequence) to its TTL and deadline (big-endian
// nanoseconds, Unix nanoseconds for the deadline) and its owner; "ttl" maps
// each key bound to a lease to the lease id and the deadline; "leasekeys"
// holds id+key for each such key, so a lease finds its keys. Deadlines come
// from the store's clock (Options.Clock). A key whose deadline has passed
// is missing for every read and condition, before Sweep deletes it.
const (
	boltBucketLeases    = "leases"
	boltBucketTTL       = "ttl"
	boltBucketLeaseKeys = "leasekeys"
)

var _ kvs.Leaser = (*Store)(nil)

func leaseBuckets(tx *bbolt.Tx) (leases, ttl, lk *bbolt.Bucket) {
	return tx.Bucket([]byte(boltBucketLeases)), tx.Bucket([]byte(boltBucketTTL)), tx.Bucket([]byte(boltBucketLeaseKeys))
}

// expired reports whether key is bound to a lease whose deadline is not
// after now.
func expired(tx *bbolt.Tx, key []byte, now time.Time) bool {
	ttl := tx.Bucket([]byte(boltBucketTTL))
	if ttl == nil {
		return false
	}
	v := ttl.Get(key)
	return len(v) == 16 && int64(binary.BigEndian.Uint64(v[8:16])) <= now.UnixNano()
}

type leaseRec struct {
	ttl      time.Duration
	deadline int64
	owner    string
}

func getLease(tx *bbolt.Tx, id int64, now time.Time) (leaseRec, bool) {
	leases, _, _ := leaseBuckets(tx)
	if leases == nil || id <= 0 {
		return leaseRec{}, false
	}
	v := leases.Get(u64(uint64(id)))
	if len(v) < 16 {
		return leaseRec{}, false
	}
	r := leaseRec{ttl: time.Duration(binary.BigEndian.Uint64(v[0:8])), deadline: int64(binary.BigEndian.Uint64(v[8:16])), owner: string(v[16:])}
	return r, r.deadline > now.UnixNano()
}

func putLeaseRec(tx *bbolt.Tx, id int64, r leaseRec) error {
	v := make([]byte, 16+len(r.owner))
	binary.BigEndian.PutUint64(v[0:8], uint64(r.ttl))
	binary.BigEndian.PutUint64(v[8:16], uint64(r.deadline))
	copy(v[16:], r.owner)
	return tx.Bucket([]byte(boltBucketLeases)).Put(u64(uint64(id)), v)
}

// bindTx binds key to lease id until deadline, or unbinds it (id 0).
func bindTx(tx *bbolt.Tx, key string, id, deadline int64) error {
	_, ttl, lk := leaseBuckets(tx)
	if old := ttl.Get([]byte(key)); len(old) == 16 {
		if err := lk.Delete(append(bytes.Clone(old[0:8]), key...)); err != nil {
			return err
		}
		if err := ttl.Delete([]byte(key)); err != nil {
			return err
		}
	}
	if id == 0 {
		return nil
	}
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v[0:8], uint64(id))
	binary.BigEndian.PutUint64(v[8:16], uint64(deadline))
	if err := ttl.Put([]byte(key), v); err != nil {
		return err
	}
	return lk.Put(append(u64(uint64(id)), key...), nil)
}

// leaseKeys returns the keys bound to id.
func leaseKeys(tx *bbolt.Tx, id int64, limit int) []string {
	_, _, lk := leaseBuckets(tx)
	var keys []string
	p := u64(uint64(id))
	c := lk.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if limit > 0 && len(keys) == limit {
			break
		}
		keys = append(keys, string(k[8:]))
	}
	return keys
}

// Grant implements kvs.Leaser.
func (s *Store) Grant(ctx context.Context, ttl time.Duration, owner string) (kvs.Lease, error) {
	if err := kvs.CheckTTL(ttl); err != nil {
		return kvs.Lease{}, err
	}
	if err := kvs.CtxErr(ctx, "bolt grant lease"); err != nil {
		return kvs.Lease{}, err
	}
	var l kvs.Lease
	err := s.update(func(tx *bbolt.Tx) error {
		seq, err := tx.Bucket([]byte(boltBucketLeases)).NextSequence()
		if err != nil {
			return err
		}
		l = kvs.Lease{ID: int64(seq), TTL: ttl, Remaining: ttl, Owner: owner}
		return putLeaseRec(tx, l.ID, leaseRec{ttl: ttl, deadline: s.now().Add(ttl).UnixNano(), owner: owner})
	})
	return l, boltErr("bolt grant lease", err)
}

// KeepAlive implements kvs.Leaser.
func (s *Store) KeepAlive(ctx context.Context, id int64) (kvs.Lease, error) {
	if err := kvs.CtxErr(ctx, "bolt keep lease alive"); err != nil {
		return kvs.Lease{}, err
	}
	var l kvs.Lease
	err := s.update(func(tx *bbolt.Tx) error {
		now := s.now()
		r, ok := getLease(tx, id, now)
		if !ok {
			return kvs.ErrLeaseNotFound
		}
		r.deadline = now.Add(r.ttl).UnixNano()
		if err := putLeaseRec(tx, id, r); err != nil {
			return err
		}
		keys := leaseKeys(tx, id, 0)
		for _, k := range keys {
			if err := bindTx(tx, k, id, r.deadline); err != nil {
				return err
			}
		}
		l = kvs.Lease{ID: id, TTL: r.ttl, Remaining: r.ttl, Owner: r.owner, Keys: first(keys)}
		return nil
	})
	if errors.Is(err, kvs.ErrLeaseNotFound) {
		return kvs.Lease{}, kvs.ErrLeaseNotFound
	}
	return l, boltErr("bolt keep lease alive", err)
}

func first(keys []string) []string {
	if len(keys) > kvs.MaxPageSize {
		return keys[:kvs.MaxPageSize]
	}
	return keys
}

// Revoke implements kvs.Leaser.
func (s *Store) Revoke(ctx context.Context, id int64) error {
	if err := kvs.CtxErr(ctx, "bolt revoke lease"); err != nil {
		return err
	}
	err := s.update(func(tx *bbolt.Tx) error {
		now := s.now()
		if _, ok := getLease(tx, id, now); !ok {
			return kvs.ErrLeaseNotFound
		}
		for _, k := range leaseKeys(tx, id, 0) {
			if err := bindTx(tx, k, 0, 0); err != nil {
				return err
			}
			if err := removeTx(tx, k, kvs.EventDelete, now); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(boltBucketLeases)).Delete(u64(uint64(id)))
	})
	if errors.Is(err, kvs.ErrLeaseNotFound) {
		return kvs.ErrLeaseNotFound
	}
	return boltErr("bolt revoke lease", err)
}

// LeaseInfo implements kvs.Leaser.
func (s *Store) LeaseInfo(ctx context.Context, id int64) (kvs.Lease, error) {
	if err := kvs.CtxErr(ctx, "bolt lease"); err != nil {
		return kvs.Lease{}, err
	}
	var l kvs.Lease
	err := s.db.View(func(tx *bbolt.Tx) error {
		now := s.now()
		r, ok := getLease(tx, id, now)
		if !ok {
			return kvs.ErrLeaseNotFound
		}
		l = kvs.Lease{ID: id, TTL: r.ttl, Remaining: time.Duration(r.deadline - now.UnixNano()), Owner: r.owner,
			Keys: leaseKeys(tx, id, kvs.MaxPageSize)}
		return nil
	})
	if errors.Is(err, kvs.ErrLeaseNotFound) {
		return kvs.Lease{}, kvs.ErrLeaseNotFound
	}
	return l, boltErr("bolt lease", err)
}

// PutLease implements kvs.Leaser.
func (s *Store) PutLease(ctx context.Context, key string, value []byte, c kvs.Cond, lease int64) (int64, error) {
	return s.put(ctx, key, value, c, lease)
}

// Sweep implements kvs.Leaser. bolt has one process: there is no other
// sweeper.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if err := kvs.CtxErr(ctx, "bolt sweep"); err != nil {
		return 0, err
	}
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		n = 0
		now := s.now()
		leases, ttl, _ := leaseBuckets(tx)
		var gone []string
		c := ttl.Cursor()
		for k, v := c.First(); k != nil && len(gone) < kvs.MaxPageSize; k, v = c.Next() {
			if len(v) == 16 && int64(binary.BigEndian.Uint64(v[8:16])) <= now.UnixNano() {
				gone = append(gone, string(k))
			}
		}
		for _, k := range gone {
			if err := bindTx(tx, k, 0, 0); err != nil {
				return err
			}
			if tx.Bucket([]byte(boltBucketKV)).Get([]byte(k)) != nil {
				if err := removeTx(tx, k, kvs.EventExpire, now); err != nil {
					return err
				}
				n++
			}
		}
		var dead [][]byte
		lc := leases.Cursor()
		for k, v := lc.First(); k != nil; k, v = lc.Next() {
			if len(v) >= 16 && int64(binary.BigEndian.Uint64(v[8:16])) <= now.UnixNano() && len(leaseKeys(tx, int64(binary.BigEndian.Uint64(k)), 1)) == 0 {
				dead = append(dead, bytes.Clone(k))
			}
		}
		for _, k := range dead {
			if err := leases.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, boltErr("bolt sweep", fmt.Errorf("%w", err))
	}
	return n, nil
}
