package attack

import (
	"context"
	"crypto/tls"
	"strings"
)

// The protocol scenarios present the real client's certificate, so that
// the only thing wrong is the protocol: a server that accepted the version
// or the suites would let them in.

// downgrade offers only the given version and weak suites.
func downgrade(ctx context.Context, e *env, key string, version uint16) observation {
	cfg := e.attackerTLS(e.client)
	cfg.MinVersion, cfg.MaxVersion = version, version
	cfg.CipherSuites = weakSuites
	a := tryTLS(ctx, e.addr, cfg, key)
	o := e.judgeHandshake(ctx, a)
	if o.outcome == Succeeded {
		o.observed = "negotiated " + tls.VersionName(a.state.Version) + " " + tls.CipherSuiteName(a.state.CipherSuite) + "; " + strings.TrimPrefix(o.observed, "handshake accepted ("+tls.VersionName(a.state.Version)+"); ")
	}
	return o
}

// runTLS10 sends a TLS 1.0 ClientHello.
func runTLS10(ctx context.Context, e *env, key string) observation {
	return downgrade(ctx, e, key, tls.VersionTLS10)
}

// runTLS11 sends a TLS 1.1 ClientHello.
func runTLS11(ctx context.Context, e *env, key string) observation {
	return downgrade(ctx, e, key, tls.VersionTLS11)
}

// runTLS12CBC sends a TLS 1.2 ClientHello offering only CBC and
// RSA-key-exchange suites.
func runTLS12CBC(ctx context.Context, e *env, key string) observation {
	return downgrade(ctx, e, key, tls.VersionTLS12)
}

// runPlaintext sends the write as plain HTTP to the TLS port.
func runPlaintext(ctx context.Context, e *env, key string) observation {
	a := tryPlain(ctx, e.addr, key)
	o := observation{clientSaw: a.clientSaw(), serverSaw: e.serverSide(ctx, a)}
	switch {
	case a.dialErr != nil:
		o.outcome, o.observed = Broken, "could not connect to the server"
	case a.status/100 == 2:
		o.outcome, o.observed, o.wrote = Succeeded, "plaintext PUT answered "+statusText(a.status)+": written", true
	case a.status != 0:
		o.outcome, o.observed = Refused, "answered "+statusText(a.status)+" without TLS, nothing stored"
	default:
		o.outcome, o.observed = Refused, "connection closed, nothing stored"
	}
	return o
}
