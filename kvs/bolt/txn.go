package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/kvsctl/kvsctl/kvs"
)

var (
	_ kvs.Txner         = (*Store)(nil)
	_ kvs.PrefixDeleter = (*Store)(nil)
)

// Txn implements kvs.Txner. The compares are evaluated and the branch
// applied in one bolt write transaction (a read transaction when neither
// branch writes); the branch's puts all get one revision, drawn once.
func (s *Store) Txn(ctx context.Context, t kvs.Txn) (kvs.TxnResult, error) {
	if err := kvs.ValidateTxn(t, 0); err != nil {
		return kvs.TxnResult{}, err
	}
	if err := kvs.NoLeases(t); err != nil {
		return kvs.TxnResult{}, err
	}
	if err := kvs.CtxErr(ctx, "bolt txn"); err != nil {
		return kvs.TxnResult{}, err
	}
	writes := false
	for _, op := range append(t.Success[:len(t.Success):len(t.Success)], t.Failure...) {
		writes = writes || op.Writes()
	}
	var (
		res      kvs.TxnResult
		canceled error
	)
	run := func(tx *bbolt.Tx) error {
		res, canceled = kvs.TxnResult{}, nil
		if err := ctx.Err(); err != nil {
			canceled = err
			return nil
		}
		var err error
		res, err = runTxn(tx, t, s.now())
		return err
	}
	var err error
	if writes {
		err = s.update(run)
	} else {
		err = s.db.View(run)
	}
	switch {
	case err != nil:
		return kvs.TxnResult{}, boltErr("bolt txn", err)
	case canceled != nil:
		return kvs.TxnResult{}, fmt.Errorf("bolt txn: %w", canceled)
	}
	return res, nil
}

// runTxn evaluates t's compares and applies its branch in tx, logging
// each change with the branch's revision (a key whose lease expired counts
// as missing).
func runTxn(tx *bbolt.Tx, t kvs.Txn, clock time.Time) (kvs.TxnResult, error) {
	kv := tx.Bucket([]byte(boltBucketKV))
	meta := tx.Bucket([]byte(boltBucketMeta))
	res := kvs.TxnResult{Succeeded: true}
	var n uint32 // the place of the next change within the revision
	logged := func(typ kvs.EventType, key string, value []byte) error {
		if err := bindTx(tx, key, 0, 0); err != nil {
			return err
		}
		n++
		return logChange(tx, uint64(res.Revision), n-1, typ, key, value, clock)
	}
	for _, c := range t.Compare {
		e, found, err := entryOf(tx, c.Key, clock)
		if err != nil {
			return res, err
		}
		if !c.Holds(e, found) {
			res.Succeeded = false
			break
		}
	}
	ops := t.Branch(res.Succeeded)
	res.Revision = int64(meta.Sequence())
	for _, op := range ops {
		if op.Writes() && tx.Writable() {
			seq, err := meta.NextSequence()
			if err != nil {
				return res, err
			}
			res.Revision = int64(seq)
			break
		}
	}
	now := uint64(clock.UnixNano())
	res.Results = make([]kvs.OpResult, 0, len(ops))
	for _, op := range ops {
		r := kvs.OpResult{Kind: op.Kind, Key: op.Key}
		switch op.Kind {
		case kvs.OpPut:
			rec := make([]byte, boltHeaderLen+len(op.Value))
			binary.BigEndian.PutUint64(rec[0:8], uint64(res.Revision))
			binary.BigEndian.PutUint64(rec[8:16], now)
			copy(rec[boltHeaderLen:], op.Value)
			if err := kv.Put([]byte(op.Key), rec); err != nil {
				return res, err
			}
			if err := logged(kvs.EventPut, op.Key, op.Value); err != nil {
				return res, err
			}
			r.Version = res.Revision
		case kvs.OpDelete:
			if kv.Get([]byte(op.Key)) != nil && !expired(tx, []byte(op.Key), clock) {
				if err := kv.Delete([]byte(op.Key)); err != nil {
					return res, err
				}
				if err := logged(kvs.EventDelete, op.Key, nil); err != nil {
					return res, err
				}
				r.Deleted = 1
			}
		case kvs.OpDeletePrefix:
			keys, err := deletePrefix(tx, []byte(op.Key), clock)
			if err != nil {
				return res, err
			}
			for _, k := range keys {
				if err := logged(kvs.EventDelete, k, nil); err != nil {
					return res, err
				}
			}
			r.Deleted = int64(len(keys))
		case kvs.OpGet:
			e, found, err := entryOf(tx, op.Key, clock)
			if err != nil {
				return res, err
			}
			r.Found, r.Value, r.Version, r.Updated = found, e.Value, e.Version, e.Updated
		}
		res.Results = append(res.Results, r)
	}
	return res, nil
}

// entryOf reads key from the kv bucket; the value is a copy. A key whose
// lease expired is missing.
func entryOf(tx *bbolt.Tx, key string, now time.Time) (kvs.Entry, bool, error) {
	rec := tx.Bucket([]byte(boltBucketKV)).Get([]byte(key))
	if rec == nil || expired(tx, []byte(key), now) {
		return kvs.Entry{}, false, nil
	}
	if len(rec) < boltHeaderLen {
		return kvs.Entry{}, false, fmt.Errorf("corrupt record of %q (%d bytes)", key, len(rec))
	}
	return kvs.Entry{
		Key:     key,
		Value:   bytes.Clone(rec[boltHeaderLen:]),
		Version: recVersion(rec),
		Updated: recUpdated(rec),
	}, true, nil
}

// deletePrefix removes every key that starts with prefix and returns the
// live ones.
func deletePrefix(tx *bbolt.Tx, prefix []byte, now time.Time) ([]string, error) {
	kv := tx.Bucket([]byte(boltBucketKV))
	var live, all []string
	c := kv.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		all = append(all, string(k))
		if !expired(tx, k, now) {
			live = append(live, string(k))
		}
	}
	for _, k := range all {
		if err := kv.Delete([]byte(k)); err != nil {
			return nil, err
		}
	}
	return live, nil // expired keys go too, without an event: their expiry is past
}

// DeletePrefix implements kvs.PrefixDeleter: a transaction of one
// delete_prefix.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) (int64, error) {
	res, err := s.Txn(ctx, kvs.Txn{Success: []kvs.Op{{Kind: kvs.OpDeletePrefix, Key: prefix}}})
	if err != nil {
		return 0, err
	}
	return res.Results[0].Deleted, nil
}
