package bolt

import (
	"encoding/binary"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/kvsctl/kvsctl/kvs"
)

// The write helpers below are the only code that changes the kv bucket.
// Each runs inside a read-write transaction it is given, so that a
// transaction of several writes is made of the same steps as a single Put
// or Delete, and everything a write must record along with the key
// happens in that same transaction. They return kvs.ErrPrecondition or
// kvs.ErrNotFound as outcomes: the caller decides whether that rolls the
// transaction back. The key must already be valid (kvs.ValidateKey).

// putTx stores value under key in tx if c holds, with the next store
// revision and the update time now, logs the change, and returns that
// revision. It
// returns kvs.ErrPrecondition, having written nothing, when c does not
// hold or cannot hold.
func putTx(tx *bbolt.Tx, key string, value []byte, c kvs.Cond, now time.Time, lease int64) (int64, error) {
	if !c.Satisfiable() {
		return 0, kvs.ErrPrecondition
	}
	var deadline int64
	if lease != 0 {
		r, ok := getLease(tx, lease, now)
		if !ok {
			return 0, kvs.ErrLeaseNotFound
		}
		deadline = r.deadline
	}
	kv := tx.Bucket([]byte(boltBucketKV))
	if c.IfVersion > 0 || c.CreateOnly {
		cur := kv.Get([]byte(key))
		if cur != nil && expired(tx, []byte(key), now) {
			cur = nil
		}
		if (c.CreateOnly && cur != nil) || (c.IfVersion > 0 && (cur == nil || recVersion(cur) != c.IfVersion)) {
			return 0, kvs.ErrPrecondition
		}
	}
	seq, err := tx.Bucket([]byte(boltBucketMeta)).NextSequence()
	if err != nil {
		return 0, err
	}
	rec := make([]byte, boltHeaderLen+len(value))
	copy(rec[boltHeaderLen:], value)
	binary.BigEndian.PutUint64(rec[0:8], seq)
	binary.BigEndian.PutUint64(rec[8:16], uint64(now.UnixNano()))
	if err := kv.Put([]byte(key), rec); err != nil {
		return 0, err
	}
	if err := logChange(tx, seq, 0, kvs.EventPut, key, value, now); err != nil {
		return 0, err
	}
	if err := bindTx(tx, key, lease, deadline); err != nil {
		return 0, err
	}
	return int64(seq), nil
}

// deleteTx removes key in tx if c holds, with a revision of its own for
// the change log. It returns kvs.ErrNotFound when
// the key does not exist and kvs.ErrPrecondition when it exists but c does
// not hold (CreateOnly, or another version than c.IfVersion).
func deleteTx(tx *bbolt.Tx, key string, c kvs.Cond, now time.Time) error {
	kv := tx.Bucket([]byte(boltBucketKV))
	cur := kv.Get([]byte(key))
	switch {
	case cur == nil || expired(tx, []byte(key), now):
		return kvs.ErrNotFound
	case c.CreateOnly || (c.IfVersion != 0 && recVersion(cur) != c.IfVersion):
		return kvs.ErrPrecondition
	}
	return removeTx(tx, key, kvs.EventDelete, now)
}

// removeTx deletes key, which exists, and logs the change as typ (a
// delete or an expiry) with a revision of its own.
func removeTx(tx *bbolt.Tx, key string, typ kvs.EventType, now time.Time) error {
	seq, err := tx.Bucket([]byte(boltBucketMeta)).NextSequence()
	if err != nil {
		return err
	}
	if err := bindTx(tx, key, 0, 0); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(boltBucketKV)).Delete([]byte(key)); err != nil {
		return err
	}
	return logChange(tx, seq, 0, typ, key, nil, now)
}
