// Package postgres is the kvs.Store kept in PostgreSQL, through a pgx
// pool. Several servers on one database behave as one store: versions come
// from one sequence, and every condition is checked by the database in the
// statement that writes.
//
// The tables kv, kvs_schema_version and the sequence kv_revision live in
// Options.Schema (default public) and are created by embedded, numbered
// migrations (migrations/*.sql) applied under an advisory lock when the
// store opens, so servers starting together apply each migration once.
// Each operation is bounded by Options.StatementTimeout, so a database
// that is down or hung yields kvs.ErrUnavailable rather than a stuck
// request, and the pool reconnects by itself when the database returns.
//
// Under load, concurrent Gets, and concurrent unconditional Puts, go to
// the database together (batch.go): the Gets as one SELECT over their
// keys, the Puts as one pipelined batch with one commit; a Put is answered
// only once its batch committed. Statement returns the SQL of a Get and a
// Put, so that kvsctl bench can replay it with pgbench.
//
// TLS is pgx's, from the URL (sslmode, sslrootcert, sslcert, sslkey), with
// one change (tlsfiles.go): pgx reads the certificate files once, libpq for
// every connection, and the store does as libpq does. Before each new pool
// connection the files' size and modification time are compared with the
// last load; when they changed, the URL is parsed again by pgx and the new
// connection presents the new certificate chain and verifies the server
// against the new CA bundle, with pgx's sslmode rules unchanged (verify-full
// checks the chain and the host name). A set of files that does not load is
// logged once and the previous one stays in use. Connections already open
// keep their certificate until pgxpool retires them (pool_max_conn_lifetime,
// one hour by default). A client key that group or others may read is
// refused, as libpq refuses it. docs/postgres-tls.md shows the set-up with a
// kvsctl PKI.
//
// A transaction (txn.go) is one SERIALIZABLE transaction that locks the
// rows of the keys it compares or writes in key order (SELECT ... FOR
// UPDATE), draws one revision for its writes and sends its operations as
// one pipelined batch; a serialization failure or deadlock against another
// transaction, from any server, runs it again from the start. Snapshot
// (snapshot.go) is a REPEATABLE READ, READ ONLY transaction read through a
// cursor; Restore copies a snapshot in with COPY in one transaction that
// holds the table locked and commits only once the snapshot is verified.
//
// Errors never contain a database password (kvs.RedactURL). The package
// passes kvs/kvstest against a real PostgreSQL (KVS_TEST_DATABASE), and over
// TLS with certificate authentication against a private cluster
// (pgtest.TLSCluster).
package postgres
