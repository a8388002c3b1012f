package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/kvsctl/kvsctl/kvs"
)

// The bolt file holds two buckets. "kv" maps each key to a record: a
// 16-byte header (version as big-endian uint64, update time as big-endian
// Unix nanoseconds) followed by the raw value. "meta" holds the file format
// ("format" = boltFormat) and, as its bucket sequence, the store revision.
const (
	boltBucketKV   = "kv"
	boltBucketMeta = "meta"
	boltFormatKey  = "format"
	boltFormat     = "kvs1"
	boltHeaderLen  = 16
)

// Store is a kvs.Store kept in a bbolt file.
type Store struct {
	db       *bbolt.DB
	path     string
	readOnly bool
	commits  *committer // shares commits between concurrent writes
	changed  notifier   // wakes WaitHead after each commit
	now      func() time.Time
	closeErr error
	close    sync.Once
}

var _ kvs.Store = (*Store)(nil)

// DefaultLockTimeout is how long Open waits for another process's lock on
// the file when Options.LockTimeout is zero.
const DefaultLockTimeout = 5 * time.Second

// Options configures Open. The zero value is usable.
type Options struct {
	// LockTimeout bounds the wait for another process that holds the
	// file (0: DefaultLockTimeout). A deadline of ctx shortens it.
	LockTimeout time.Duration
	// ReadOnly opens the file for reading only: writes return
	// kvs.ErrUnavailable.
	ReadOnly bool
	// Logger receives degraded-mode notices; nil discards.
	Logger *slog.Logger
	// Clock is the store's one clock: update times, the change log's
	// times and lease deadlines come from it (nil: time.Now).
	Clock func() time.Time
}

// Open opens (creating if needed) the bolt store at path; a new parent
// directory is created 0700 and the file 0600. With Options.ReadOnly, or
// when the file exists but cannot be opened for writing (read-only disk or
// file, logged as a warning), the store serves reads only.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if err := kvs.CtxErr(ctx, "open bolt store"); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("open bolt store: no path given")
	}
	readOnly := opts.ReadOnly
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := opts.LockTimeout
	if wait <= 0 {
		wait = DefaultLockTimeout
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = max(time.Until(dl), time.Millisecond) // 0 would mean forever
	}
	if !readOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("open bolt store: create directory: %w: %w", kvs.ErrUnavailable, err)
		}
	}
	if err := checkPlace(path); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: wait, ReadOnly: readOnly})
	if err != nil && !readOnly && notWritable(err) {
		if _, statErr := os.Stat(path); statErr == nil {
			log.Warn("bolt store is not writable, serving reads only", "path", path, "err", err)
			readOnly = true
			db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: wait, ReadOnly: true})
		}
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open bolt store %s: database is locked by another process (waited %s): %w", path, wait, kvs.ErrUnavailable)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open bolt store %s: not a bolt database, or corrupt: %w", path, err)
	case err != nil:
		return nil, boltErr("open bolt store "+path, err)
	}
	s := &Store{db: db, path: path, readOnly: readOnly, commits: newCommitter(db), now: opts.Clock}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.init(); err != nil {
		s.commits.close()
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// checkPlace refuses a store whose directory or file is a symbolic link
// (writes would land elsewhere) or whose directory group or others can
// read, with the chmod that fixes it.
func checkPlace(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("open bolt store: %w: %w", kvs.ErrUnavailable, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("open bolt store %s: the directory %s is a symbolic link: refusing to follow it; give the real path", path, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if fi.Mode()&fs.ModeSticky != 0 {
			return fmt.Errorf("open bolt store %s: %s is a shared directory (mode %04o, sticky): put the store in a directory of its own", path, dir, perm)
		}
		return fmt.Errorf("open bolt store %s: the directory %s is accessible by group or others (mode %04o): run 'chmod 700 %s'", path, dir, perm, dir)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("open bolt store %s: the file is a symbolic link: refusing to follow it; give the real path", path)
	}
	return nil
}

// init creates the buckets in a new file and checks the format of an
// existing one.
func (s *Store) init() error {
	check := func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte(boltBucketMeta))
		if meta == nil {
			return nil
		}
		if f := meta.Get([]byte(boltFormatKey)); string(f) != boltFormat {
			return fmt.Errorf("open bolt store %s: unknown format %q (want %q)", s.path, f, boltFormat)
		}
		return nil
	}
	if s.readOnly {
		return s.db.View(check)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := check(tx); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists([]byte(boltBucketMeta))
		if err != nil {
			return err
		}
		if meta.Get([]byte(boltFormatKey)) == nil {
			if err := meta.Put([]byte(boltFormatKey), []byte(boltFormat)); err != nil {
				return err
			}
		}
		for _, b := range []string{boltBucketKV, boltBucketLeases, boltBucketTTL, boltBucketLeaseKeys} {
			if _, err = tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		if tx.Bucket([]byte(boltBucketChanges)) == nil {
			// A file from before the change log: its history is gone.
			if _, err := tx.CreateBucket([]byte(boltBucketChanges)); err != nil {
				return err
			}
			if seq := meta.Sequence(); seq > 0 {
				return meta.Put([]byte(boltCompactedKey), u64(seq))
			}
		}
		return nil
	})
	if err != nil {
		return boltErr("open bolt store "+s.path, err)
	}
	return nil
}

// Get implements Store.
func (s *Store) Get(ctx context.Context, key string) (kvs.Entry, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return kvs.Entry{}, err
	}
	if err := kvs.CtxErr(ctx, "bolt get"); err != nil {
		return kvs.Entry{}, err
	}
	var e kvs.Entry
	err := s.db.View(func(tx *bbolt.Tx) error {
		kv := tx.Bucket([]byte(boltBucketKV))
		if kv == nil {
			return kvs.ErrNotFound
		}
		rec := kv.Get([]byte(key))
		if rec == nil || expired(tx, []byte(key), s.now()) {
			return kvs.ErrNotFound
		}
		if len(rec) < boltHeaderLen {
			return fmt.Errorf("bolt get: corrupt record (%d bytes)", len(rec))
		}
		e = kvs.Entry{
			Key:     key,
			Value:   make([]byte, len(rec)-boltHeaderLen),
			Version: recVersion(rec),
			Updated: recUpdated(rec),
		}
		copy(e.Value, rec[boltHeaderLen:]) // rec is only valid inside the tx
		return nil
	})
	if errors.Is(err, kvs.ErrNotFound) {
		return kvs.Entry{}, kvs.ErrNotFound
	}
	if err != nil {
		return kvs.Entry{}, boltErr("bolt get", err)
	}
	return e, nil
}

// Put implements Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, c kvs.Cond) (int64, error) {
	return s.put(ctx, key, value, c, 0)
}

func (s *Store) put(ctx context.Context, key string, value []byte, c kvs.Cond, lease int64) (int64, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return 0, err
	}
	if err := kvs.CtxErr(ctx, "bolt put"); err != nil {
		return 0, err
	}
	if !c.Satisfiable() {
		return 0, kvs.ErrPrecondition
	}
	// The function may run more than once (bolt retries a batch without a
	// failed member), so it resets its results first. A failed condition
	// is an outcome, not an error: returning an error would roll back the
	// whole batch.
	var (
		version  int64
		failed   bool
		noLease  bool
		canceled error
	)
	err := s.update(func(tx *bbolt.Tx) error {
		version, failed, noLease, canceled = 0, false, false, nil
		if err := ctx.Err(); err != nil {
			canceled = err
			return nil
		}
		v, err := putTx(tx, key, value, c, s.now(), lease)
		if errors.Is(err, kvs.ErrPrecondition) {
			failed = true
			return nil
		}
		if errors.Is(err, kvs.ErrLeaseNotFound) {
			noLease = true
			return nil
		}
		version = v
		return err
	})
	switch {
	case err != nil:
		return 0, boltErr("bolt put", err)
	case canceled != nil:
		return 0, fmt.Errorf("bolt put: %w", canceled)
	case failed:
		return 0, kvs.ErrPrecondition
	case noLease:
		return 0, kvs.ErrLeaseNotFound
	}
	return version, nil
}

// Delete implements Store.
func (s *Store) Delete(ctx context.Context, key string, c kvs.Cond) error {
	if err := kvs.ValidateKey(key); err != nil {
		return err
	}
	if err := kvs.CtxErr(ctx, "bolt delete"); err != nil {
		return err
	}
	var (
		missing, failed bool
		canceled        error
	)
	err := s.update(func(tx *bbolt.Tx) error {
		missing, failed, canceled = false, false, nil
		if err := ctx.Err(); err != nil {
			canceled = err
			return nil
		}
		err := deleteTx(tx, key, c, s.now())
		switch {
		case errors.Is(err, kvs.ErrNotFound):
			missing = true
			return nil
		case errors.Is(err, kvs.ErrPrecondition):
			failed = true
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return boltErr("bolt delete", err)
	case canceled != nil:
		return fmt.Errorf("bolt delete: %w", canceled)
	case missing:
		return kvs.ErrNotFound
	case failed:
		return kvs.ErrPrecondition
	}
	return nil
}

// List implements Store.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) ([]kvs.KeyInfo, string, error) {
	if err := kvs.CheckList(prefix, after); err != nil {
		return nil, "", err
	}
	if err := kvs.CtxErr(ctx, "bolt list"); err != nil {
		return nil, "", err
	}
	if limit < 1 {
		limit = kvs.MaxPageSize
	}
	out := make([]kvs.KeyInfo, 0, min(limit, 256))
	more := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		out, more = out[:0], false
		kv := tx.Bucket([]byte(boltBucketKV))
		if kv == nil {
			return nil
		}
		p := []byte(prefix)
		now := s.now()
		c := kv.Cursor()
		var k, rec []byte
		if after >= prefix {
			k, rec = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, rec = c.Next()
			}
		} else {
			k, rec = c.Seek(p)
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, rec = c.Next() {
			if len(out) == limit {
				more = true
				break
			}
			if len(rec) < boltHeaderLen {
				return fmt.Errorf("bolt list: corrupt record (%d bytes)", len(rec))
			}
			if expired(tx, k, now) {
				continue
			}
			out = append(out, kvs.KeyInfo{
				Key:     string(k),
				Version: recVersion(rec),
				Size:    len(rec) - boltHeaderLen,
				Updated: recUpdated(rec),
			})
		}
		return nil
	})
	if err != nil {
		return nil, "", boltErr("bolt list", err)
	}
	next := ""
	if more {
		next = out[len(out)-1].Key
	}
	return out, next, nil
}

// Ping implements Store. A store opened read-only pings fine: it serves
// reads.
func (s *Store) Ping(ctx context.Context) error {
	if err := kvs.CtxErr(ctx, "bolt ping"); err != nil {
		return err
	}
	return boltErr("bolt ping", s.db.View(func(*bbolt.Tx) error { return nil }))
}

// Close implements Store.
func (s *Store) Close() error {
	s.close.Do(func() {
		s.commits.close()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close bolt store %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// update runs fn in a write transaction that is fsynced before it
// returns. Writes that arrive while a commit is on disk share the next one
// (see committer); a lone write commits at once. fn may run more than
// once.
func (s *Store) update(fn func(*bbolt.Tx) error) error {
	err := s.commits.update(fn)
	if err == nil {
		s.changed.notify()
	}
	return err
}

// putHeader writes a record's header: its version and update time.
func putHeader(rec []byte, version int64, updated time.Time) {
	binary.BigEndian.PutUint64(rec[0:8], uint64(version))
	binary.BigEndian.PutUint64(rec[8:16], uint64(updated.UnixNano()))
}

func recVersion(rec []byte) int64 { return int64(binary.BigEndian.Uint64(rec[0:8])) }

func recUpdated(rec []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(rec[8:16]))).UTC()
}

// boltErr wraps err from a bolt operation, marking failures of the disk or
// the database (read-only, full, closed, locked) as kvs.ErrUnavailable.
func boltErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, berrors.ErrDatabaseReadOnly):
		return fmt.Errorf("%s: %w: database opened read-only (file or disk not writable)", op, kvs.ErrUnavailable)
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("%s: %w: store closed", op, kvs.ErrUnavailable)
	case errors.Is(err, berrors.ErrTimeout),
		errors.Is(err, berrors.ErrMaxSizeReached),
		errors.As(err, &pathErr),
		notWritable(err),
		errors.Is(err, syscall.ENOSPC),
		errors.Is(err, syscall.EDQUOT),
		errors.Is(err, syscall.EIO):
		return fmt.Errorf("%s: %w: %w", op, kvs.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// notWritable reports whether err says a file cannot be written.
func notWritable(err error) bool {
	return errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
