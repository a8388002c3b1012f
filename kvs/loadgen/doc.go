// Package loadgen is the load generator behind `kvsctl bench`: it drives a
// kvs server (or any server that speaks the same API over mutual TLS)
// through the kvs Go client, so it pays for TLS, HTTP and JSON exactly as
// a real client does.
//
// Run starts Config.Clients workers, each with a client.Client (and so
// connections) of its own, sharing one TLS session cache. Each sends GET,
// PUT or LIST requests, or a weighted mix, on keys drawn uniformly from a
// keyspace of Config.Keys keys named Key(0) ... Key(Keys-1) (decimal
// numbers from KeyBase, so pgbench can produce the same keys), for a
// duration or a number of requests, after an optional preload that writes
// every key once. With ClientConfig.NewConn each request opens a new
// connection, which measures TLS handshakes; with TLSOptions.NoResume
// those handshakes are full ones. The Result counts successful requests,
// errors by kind (ErrorKind), TLS handshakes and resumed handshakes, and
// latency quantiles from a fixed-size log-linear histogram (1.6%
// resolution, exact maximum).
//
// Two helpers complete the comparison run by scripts/bench.sh: Hold opens
// many idle connections to measure a server's memory per connection, and
// PgbenchScript replays the PostgreSQL store's own statements with
// pgbench. The ceiling the runs are compared with is server.ServeBare.
//
// The package imports the client, never a store or the server.
//
// The package holds no global state and prints nothing; progress arrives
// through Config.Progress.
package loadgen
