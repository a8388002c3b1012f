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
		res, err = runTxn(tx, t)
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

// runTxn evaluates t's compares and applies its branch in tx.
func runTxn(tx *bbolt.Tx, t kvs.Txn) (kvs.TxnResult, error) {
	kv := tx.Bucket([]byte(boltBucketKV))
	meta := tx.Bucket([]byte(boltBucketMeta))
	res := kvs.TxnResult{Succeeded: true}
	for _, c := range t.Compare {
		e, found, err := entryOf(kv, c.Key)
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
	now := uint64(time.Now().UnixNano())
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
			r.Version = res.Revision
		case kvs.OpDelete:
			if kv.Get([]byte(op.Key)) != nil {
				if err := kv.Delete([]byte(op.Key)); err != nil {
					return res, err
				}
				r.Deleted = 1
			}
		case kvs.OpDeletePrefix:
			n, err := deletePrefix(kv, []byte(op.Key))
			if err != nil {
				return res, err
			}
			r.Deleted = n
		case kvs.OpGet:
			e, found, err := entryOf(kv, op.Key)
			if err != nil {
				return res, err
			}
			r.Found, r.Value, r.Version, r.Updated = found, e.Value, e.Version, e.Updated
		}
		res.Results = append(res.Results, r)
	}
	return res, nil
}

// entryOf reads key from the kv bucket; the value is a copy.
func entryOf(kv *bbolt.Bucket, key string) (kvs.Entry, bool, error) {
	rec := kv.Get([]byte(key))
	if rec == nil {
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

// deletePrefix removes every key that starts with prefix.
func deletePrefix(kv *bbolt.Bucket, prefix []byte) (int64, error) {
	var n int64
	c := kv.Cursor()
	// Seek again after each delete: a bolt cursor may skip the key after
	// one it deleted.
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
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
