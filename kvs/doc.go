// Package kvs is a key-value store served over mutual TLS: the HTTP
// server and its Go client, their TLS configuration, and the Store
// interface with its two implementations.
//
// # Storage
//
// A Store holds keys (1 to MaxKeyLen bytes of UTF-8 without NUL, see
// ValidateKey) and opaque byte values. Every write is versioned with a
// store-wide revision, so a version identifies one write of one key for
// the life of the store, and conditional writes (Cond: If-Match by
// version, or create-only) cannot be fooled by a key that was deleted and
// recreated. Keys list in byte order, in pages.
//
// OpenStore chooses the implementation from a URL:
//
//   - bolt:PATH — an embedded bbolt file (default bolt:data/kvs.db; the
//     directory is created 0700, the file 0600). One process at a time:
//     a second opener gets "locked by another process". Each write returns
//     after its commit is fsynced; concurrent writes share commits. A file
//     that cannot be written is served read-only.
//   - postgres://... or postgresql://... — PostgreSQL through a pgx pool.
//     The tables kv, kvs_schema_version and the sequence kv_revision live in
//     StoreOptions.Schema (default public) and are created by embedded,
//     numbered migrations (migrations/*.sql) applied under an advisory lock
//     when the store opens. Each operation is bounded by
//     StoreOptions.StatementTimeout, so a database that is down or hung
//     yields ErrUnavailable rather than a stuck request, and the pool
//     reconnects by itself when the database returns. Under load,
//     concurrent Gets, and concurrent unconditional Puts, go to the
//     database together as pipelined batches (one round trip, and for
//     Puts one commit); a Put is answered only once its batch committed.
//
// Store errors wrap ErrNotFound, ErrPrecondition, ErrInvalidKey or
// ErrUnavailable for callers to branch on, or the caller's context error
// when it ends first. No error includes a database password.
//
// The package kvs/kvstest is the conformance suite both implementations
// pass, against a temporary directory and a real PostgreSQL (tests read
// KVS_TEST_DATABASE).
//
// # Server
//
// Server (server.go, handlers.go) serves the HTTP API over HTTPS with HTTP/2
// and HTTP/1.1 and requires a client certificate that chains to the CA
// bundle and carries the clientAuth usage. ServerTLS (tls.go) holds the
// certificate, the client roots and the CRL as one immutable snapshot behind
// an atomic pointer: Reload (on SIGHUP, or when WatchTLS sees a file change)
// builds a new snapshot and swaps it in, and a broken file keeps the old one.
// Every handshake, resumed ones included, runs VerifyConnection, which checks
// the CRL (whose signature was verified at load and whose NextUpdate is
// checked on every use: an expired CRL refuses every client, loudly) and
// re-verifies the chain of a resumed session against the current roots.
// Session ticket keys survive reloads, so a session resumed after a
// revocation reaches that check and is refused. Because a keep-alive or
// HTTP/2 connection can outlive a revocation, every request also re-checks
// the peer certificate against the current CRL snapshot (an atomic load and
// a map lookup) and is answered 403 when it was revoked or the CRL expired.
//
// Identity is the verified certificate's subject CN and SANs; an optional
// Policy (policy.go) limits each identity to key prefixes and operations and
// denies identities it does not name. Each request produces one audit line
// (identity, serial, operation, key, status, sizes, duration, peer; never the
// value) and Prometheus metrics (metrics.go). Errors reach clients as
// {"error": "..."} with a status chosen in one place (statusOf) and never
// carry internal details.
//
// Client (client.go) speaks the API with the same TLS files. It always
// verifies the server's chain and host name; there is no option to skip it.
//
// The package does not print or log on its own: components that log take
// a *slog.Logger, nil meaning discard.
package kvs
