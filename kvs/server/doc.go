// Package server is the mutual-TLS HTTP server of a kvs.Store: the
// handlers of the API (docs/api.md), the policy in force, the audit log,
// the Prometheus metrics, the TLS material with its reload, and Run, which
// owns a running server's life: SIGHUP and file watching, the profiling
// listener, graceful shutdown. kvsctl serve and kvsctl attack demo both run
// their server through Run.
//
// # Files
//
//	server.go      Config, New, Reload; routing and the per-request peer check
//	run.go         Run: reload on SIGHUP and file change, pprof, shutdown
//	listener.go    TLSListener: handshakes in their own goroutines, each reported as a typed event
//	observer.go    Observer, HandshakeEvent, RequestEvent, Reason
//	handlers.go    the API: GET/PUT/DELETE /v1/kv/{key}, GET /v1/kv, /healthz, /metrics
//	txn.go         POST /v1/txn and DELETE /v1/kv?prefix=: every part checked, policy included, before the store runs it
//	snapshot.go    GET /v1/snapshot: the store at one revision, streamed in the kvs/snapshot format (policy operation admin)
//	audit.go       the audit observer: one log line per request, never the value
//	metrics.go     the metrics observer
//	tls.go         TLS: certificate, client roots and CRL as one immutable snapshot
//	policyfile.go  the policy file, parsed by kvs/policy and reloaded
//	reload.go      file stamps and the polling watcher, which waits for a multi-file update to settle
//	loglimit.go    a rate limit for lines that a flood could repeat
//	bare.go        ServeBare: the ceiling kvsctl bench compares with
//
// # Guarantees
//
// The server requires a client certificate that chains to the CA bundle
// (within the name constraints of every CA of the chain), is not itself a
// CA and carries the clientAuth usage, with TLS 1.2 at least and AEAD
// suites only, over HTTP/2 and HTTP/1.1. In a hierarchy it takes the
// intermediates it accepts CRLs of from the intermediates bundle and its
// own chain, each of which must chain to a root of the bundle. Its TLS material is an immutable
// snapshot behind an atomic pointer, served through GetConfigForClient:
// Reload builds a new snapshot and swaps it in, and a broken file keeps
// the old one; the file watcher reloads an update of several files once
// they have all been written. Every handshake, resumed ones included, runs
// VerifyConnection, which checks the CRL (verified at load, its NextUpdate
// checked on every use: an expired CRL refuses every client, loudly) and
// re-verifies the chain of a resumed session against the current roots.
// Session ticket keys survive reloads, so a session resumed after a
// revocation reaches that check and is refused. Because a keep-alive or
// HTTP/2 connection can outlive a revocation, every request also re-checks
// the peer certificate against the current snapshot.
//
// Packages observe the server through types, never through log text: every
// handshake and every request is an event passed to the observers (the
// operational log, the audit log, the metrics, and Config.Observer, which
// kvsctl attack uses). Errors reach clients as {"error": "..."} with a
// status chosen in one place (statusOf) that never carries internal
// details.
//
// The package does not print: it logs to the *slog.Logger of its Config,
// nil meaning discard, and never logs a value, a key file or a password.
package server
