// Package client is the Go client of the kvs HTTP API over mutual TLS.
//
// A Client implements kvs.Store, so a program written against the Store
// interface runs the same on an embedded store or across the network, and
// kvs/kvstest checks the client over a real server with the same suite as
// the stores. Answers of the server come back as the kvs sentinel errors
// (ErrNotFound, ErrPrecondition, ErrForbidden, ...) through StatusError;
// refusals at the TLS level are ErrRejected (the server refused this
// client) or ErrUntrustedServer (this client refused the server).
//
// The client always verifies the server's chain and host name against the
// CA bundle of its pki.Files; there is no option to skip that. It speaks
// HTTP/1.1 over a pool of keep-alive connections, or HTTP/2 when
// Config.HTTP2 asks for it and the server offers it (Config.HTTP2 says why
// HTTP/1.1 is the default).
//
// The package imports neither store, nor Prometheus, nor YAML: a program
// that only talks to a server pulls in only the client, the API types of
// kvs and the pki package for its certificates.
package client
