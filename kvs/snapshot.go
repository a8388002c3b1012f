package kvs

import (
	"context"
	"errors"
	"time"
)

// ErrNotEmpty means a restore was refused because the target store holds
// keys already; nothing was written.
var ErrNotEmpty = errors.New("kvs: target store is not empty")

// SnapshotHeader describes a snapshot: the store it was taken from and the
// revision it was taken at.
type SnapshotHeader struct {
	Store    string    // "bolt" or "postgres"
	Revision int64     // the store revision: every entry's version is at most this
	Time     time.Time // when the snapshot was taken, UTC
}

// SnapshotEntry is one key of a snapshot.
type SnapshotEntry struct {
	Key     string
	Value   []byte
	Version int64
	Lease   int64 // 0: none
	Updated time.Time
}

// Snapshotter is implemented by stores that read all of their keys at one
// revision: a bbolt read transaction, a PostgreSQL REPEATABLE READ
// transaction. kvs/bolt and kvs/postgres implement it.
type Snapshotter interface {
	// Snapshot calls begin once with the header, then each once for every
	// key, in byte order, all read at the header's revision; it stops at
	// the first error of a callback and returns it. An entry's Value is
	// valid only during the call. Writes go on meanwhile.
	Snapshot(ctx context.Context, begin func(SnapshotHeader) error, each func(SnapshotEntry) error) error
}

// SnapshotSource yields the entries of a snapshot in key order, for a
// restore: Next returns io.EOF after the last entry, and only once the
// whole snapshot is known to be intact (its checksum verified), so a
// restore that stops at any other error can leave its target untouched.
type SnapshotSource interface {
	Header() SnapshotHeader
	Next() (SnapshotEntry, error)
}
