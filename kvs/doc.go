// Package kvs is the contract of kvsctl's key-value store: the Store
// interface with its Entry, KeyInfo and Cond types and sentinel errors, the
// key rules (ValidateKey), and the wire types of the HTTP API that the
// server and the client share (api.go). It imports nothing beyond the
// standard library.
//
// A Store holds keys (1 to MaxKeyLen bytes of UTF-8 without NUL, see
// ValidateKey) and opaque byte values. Every write is versioned with a
// store-wide revision, so a version identifies one write of one key for
// the life of the store, and conditional writes (Cond: If-Match by
// version, or create-only) cannot be fooled by a key that was deleted and
// recreated. Keys list in byte order, in pages. Stores may also run
// transactions (Txner: compares, then one of two lists of operations, at
// one revision; txn.go), delete a prefix (PrefixDeleter), and read
// everything at one revision (Snapshotter; the file format is kvs/snapshot's).
//
// The implementations live in packages of their own, one per dependency,
// so that a program imports only what it uses:
//
//	kvs/bolt       an embedded bbolt file
//	kvs/postgres   PostgreSQL through a pgx pool; several servers share one database
//	kvs/stores     Open(url): either of the two, chosen by URL
//	kvs/client     the HTTP client, itself a Store over mutual TLS
//	kvs/server     the mutual-TLS HTTP server of a Store
//	kvs/policy     who may do what: identities, prefixes, operations
//	kvs/kvstest    the conformance suite every Store passes
//	kvs/loadgen    the load generator behind kvsctl bench
//	kvs/snapshot   the store-independent snapshot format: writer, verifying reader
//
// Store errors wrap ErrNotFound, ErrPrecondition, ErrInvalidKey,
// ErrForbidden or ErrUnavailable for callers to branch on, or the
// caller's context error when it ends first. StatusOf and ErrorOf map them
// to HTTP statuses and back, in one table, for the server and the client.
// No error of a store includes a database password: RedactURL is the one
// function that shows a store URL.
package kvs
