package bolt

import (
	"bytes"
	"context"
	"errors"
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
	now := time.Now()
	res.Results = make([]kvs.OpResult, 0, len(ops))
	for _, op := range ops {
		r := kvs.OpResult{Kind: op.Kind, Key: op.Key}
		switch op.Kind {
		case kvs.OpPut:
			if err := putAtTx(tx, op.Key, op.Value, res.Revision, now); err != nil {
				return res, err
			}
			r.Version = res.Revision
		case kvs.OpDelete:
			switch err := deleteTx(tx, op.Key, kvs.Cond{}); {
			case err == nil:
				r.Deleted = 1
			case !errors.Is(err, kvs.ErrNotFound):
				return res, err
			}
		case kvs.OpDeletePrefix:
			n, err := deletePrefix(tx, []byte(op.Key))
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

// deletePrefix removes every key that starts with prefix, each through
// deleteTx, in key order.
func deletePrefix(tx *bbolt.Tx, prefix []byte) (int64, error) {
	var n int64
	c := tx.Bucket([]byte(boltBucketKV)).Cursor()
	// Seek again after each delete: the bucket changed under the cursor.
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := deleteTx(tx, string(k), kvs.Cond{}); err != nil {
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
