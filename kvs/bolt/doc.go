// Package bolt is the embedded kvs.Store: one bbolt file (go.etcd.io/bbolt).
//
// The file holds two buckets. "kv" maps each key to a record, a 16-byte
// header (the version and the update time) followed by the raw value;
// "meta" holds the file format and, as its bucket sequence, the store-wide
// revision. Open creates a missing parent directory 0700 and the file 0600.
// One process at a time: a second opener waits Options.LockTimeout and gets
// "locked by another process" (kvs.ErrUnavailable).
//
// Each write returns after its commit is fsynced. Writes that arrive while
// a commit is on disk share the next one (commit.go, a group committer);
// a lone write commits at once. A file that cannot be written is served
// read-only, with a warning logged: reads work and writes return
// kvs.ErrUnavailable. The package passes kvs/kvstest.
//
// A transaction (txn.go) is one write transaction of the group committer
// (a read transaction when neither branch writes): its puts share one
// revision drawn from the meta sequence. Snapshot (snapshot.go) reads the
// whole file in one read transaction; Restore writes a snapshot into a new
// file beside the target and renames it over the target once the
// snapshot's checksum has been verified.
package bolt
