package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/kvsctl/kvsctl/kvs"
)

var _ kvs.Snapshotter = (*Store)(nil)

// Snapshot implements kvs.Snapshotter with one bolt read transaction:
// writes go on (they do not wait for it), and the revision is the store's
// when it began.
func (s *Store) Snapshot(ctx context.Context, begin func(kvs.SnapshotHeader) error, each func(kvs.SnapshotEntry) error) error {
	if err := kvs.CtxErr(ctx, "bolt snapshot"); err != nil {
		return err
	}
	var cbErr error // an error of a callback, returned as it is
	err := s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte(boltBucketMeta))
		kv := tx.Bucket([]byte(boltBucketKV))
		h := kvs.SnapshotHeader{Store: "bolt", Time: time.Now().UTC()}
		now := s.now()
		if meta != nil {
			h.Revision = int64(meta.Sequence())
		}
		if cbErr = begin(h); cbErr != nil {
			return cbErr
		}
		if kv == nil {
			return nil
		}
		c := kv.Cursor()
		for i, k, rec := 0, []byte(nil), []byte(nil); ; i++ {
			if i == 0 {
				k, rec = c.First()
			} else {
				k, rec = c.Next()
			}
			if k == nil {
				return nil
			}
			if i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					cbErr = fmt.Errorf("bolt snapshot: %w", err)
					return cbErr
				}
			}
			if len(rec) < boltHeaderLen {
				return fmt.Errorf("corrupt record of %q (%d bytes)", k, len(rec))
			}
			if expired(tx, k, now) {
				continue // its lease ran out: it is gone for every reader
			}
			e := kvs.SnapshotEntry{Key: string(k), Value: rec[boltHeaderLen:], Version: recVersion(rec), Updated: recUpdated(rec)}
			if cbErr = each(e); cbErr != nil {
				return cbErr
			}
		}
	})
	if cbErr != nil {
		return cbErr
	}
	return boltErr("bolt snapshot", err)
}

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// Force replaces a store that holds keys (without it Restore
	// returns kvs.ErrNotEmpty).
	Force bool
	// BatchSize is how many keys each write transaction of the new file
	// takes (0: 10000).
	BatchSize int
	// Progress, when set, is called after each batch with the keys
	// restored so far.
	Progress func(keys int64)
}

// Restore writes the snapshot src into a new bolt file at path, offline:
// no process may have the file open. Keys keep their versions and times
// and the store's revision becomes the snapshot's, so versions clients
// hold stay valid. The new file is written beside path and renamed over
// it only once src has been read to its verified end: on any error the
// file at path is left as it was. A file at path that holds keys is
// refused with kvs.ErrNotEmpty unless opts.Force is set. It returns the
// number of keys restored.
func Restore(ctx context.Context, path string, src kvs.SnapshotSource, opts RestoreOptions) (int64, error) {
	if err := kvs.CtxErr(ctx, "restore bolt store"); err != nil {
		return 0, err
	}
	if path == "" {
		return 0, errors.New("restore bolt store: no path given")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, fmt.Errorf("restore bolt store: create directory: %w", err)
	}
	if err := checkPlace(path); err != nil {
		return 0, err
	}
	if err := checkTarget(path, opts.Force); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return 0, fmt.Errorf("restore bolt store: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmpPath)
		}
	}()
	n, err := restoreInto(ctx, tmpPath, src, opts)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return 0, fmt.Errorf("restore bolt store: %w", err)
	}
	ok = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // the rename is durable
		d.Close()
	}
	return n, nil
}

// checkTarget refuses a file at path that another process holds or that
// holds keys (unless force).
func checkTarget(path string, force bool) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 100 * time.Millisecond, ReadOnly: true})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("restore bolt store %s: the file is in use by another process (a running server?): restore works offline: %w", path, kvs.ErrUnavailable)
	case err != nil && force:
		return nil // not a bolt file, or corrupt: replaced
	case err != nil:
		return fmt.Errorf("restore bolt store %s: the file exists and is not a bolt store: %w", path, err)
	}
	defer db.Close()
	keys := 0
	_ = db.View(func(tx *bbolt.Tx) error {
		if kv := tx.Bucket([]byte(boltBucketKV)); kv != nil {
			keys = kv.Stats().KeyN
		}
		return nil
	})
	if keys > 0 && !force {
		return fmt.Errorf("restore bolt store %s: it holds %d keys: %w", path, keys, kvs.ErrNotEmpty)
	}
	return nil
}

// restoreInto writes src into a new bolt file at path.
func restoreInto(ctx context.Context, path string, src kvs.SnapshotSource, opts RestoreOptions) (int64, error) {
	batch := opts.BatchSize
	if batch <= 0 {
		batch = 10000
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true})
	if err != nil {
		return 0, boltErr("restore bolt store", err)
	}
	closed := false
	defer func() {
		if !closed {
			db.Close()
		}
	}()
	h := src.Header()
	var n int64
	done := false
	for !done {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("restore bolt store: %w", err)
		}
		err := db.Update(func(tx *bbolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists([]byte(boltBucketMeta))
			if err != nil {
				return err
			}
			if err := meta.Put([]byte(boltFormatKey), []byte(boltFormat)); err != nil {
				return err
			}
			kv, err := tx.CreateBucketIfNotExists([]byte(boltBucketKV))
			if err != nil {
				return err
			}
			kv.FillPercent = 1.0 // keys arrive in order
			for i := 0; i < batch; i++ {
				e, err := src.Next()
				if errors.Is(err, io.EOF) {
					done = true
					return meta.SetSequence(uint64(h.Revision))
				}
				if err != nil {
					return err
				}
				if e.Lease != 0 {
					return fmt.Errorf("key %q has a lease: %w: this store keeps no leases", e.Key, kvs.ErrInvalidTxn)
				}
				rec := make([]byte, boltHeaderLen+len(e.Value))
				putHeader(rec, e.Version, e.Updated)
				copy(rec[boltHeaderLen:], e.Value)
				if err := kv.Put([]byte(e.Key), rec); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("restore bolt store: %w", err)
		}
		if opts.Progress != nil {
			opts.Progress(n)
		}
	}
	if err := db.Sync(); err != nil {
		return n, boltErr("restore bolt store", err)
	}
	closed = true
	if err := db.Close(); err != nil {
		return n, boltErr("restore bolt store", err)
	}
	return n, nil
}
