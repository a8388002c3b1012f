package attack

import (
	"context"
	"crypto/x509/pkix"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// The client-certificate scenarios: each presents a certificate the server
// must refuse during the handshake, then (if let in) tries to write its key.

// runSelfSignedClient is the original project's demonstration: a client
// with its own self-signed RSA-2048 certificate, copying the real client's
// subject so that only the signature tells them apart.
func runSelfSignedClient(ctx context.Context, e *env, key string) observation {
	cert, err := selfSigned(pki.RSA2048, pki.ProfileClient, e.client.Leaf.Subject, nil, e.now())
	if err != nil {
		return broken("make the self-signed certificate: %v", err)
	}
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, e.attackerTLS(cert), key))
}

// runRogueCA presents a certificate from a CA that copies the real one's
// name and key id.
func runRogueCA(ctx context.Context, e *env, key string) observation {
	cert, err := lookAlikeCA(e.anchor, e.keyType, e.client.Leaf.Subject, e.now())
	if err != nil {
		return broken("make the look-alike CA: %v", err)
	}
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, e.attackerTLS(cert), key))
}

// runNoClientCert presents no certificate.
func runNoClientCert(ctx context.Context, e *env, key string) observation {
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, e.attackerTLS(), key))
}

// runExpired presents a certificate of the real CA, for the real client's
// identity, that expired yesterday.
func runExpired(ctx context.Context, e *env, key string) observation {
	now := e.now()
	cert, err := signedByCA(e.ca, e.keyType, pki.ProfileClient, e.client.Leaf.Subject, nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour), now)
	if err != nil {
		return broken("make the expired certificate: %v", err)
	}
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, e.attackerTLS(cert), key))
}

// runNotYetValid presents a certificate of the real CA, for the real
// client's identity, valid from tomorrow.
func runNotYetValid(ctx context.Context, e *env, key string) observation {
	now := e.now()
	cert, err := signedByCA(e.ca, e.keyType, pki.ProfileClient, e.client.Leaf.Subject, nil, now.Add(24*time.Hour), now.Add(48*time.Hour), now)
	if err != nil {
		return broken("make the not-yet-valid certificate: %v", err)
	}
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, e.attackerTLS(cert), key))
}

// runServerCertAsClient presents a serverAuth-only certificate of the real
// CA that carries the real client's name.
func runServerCertAsClient(ctx context.Context, e *env, key string) observation {
	subject := pkix.Name{CommonName: e.client.Leaf.Subject.CommonName}
	cert, err := signedByCA(e.ca, e.keyType, pki.ProfileServer, subject, []string{permittedHost(e.ca, "kvsctl-attack")}, time.Time{}, time.Time{}, e.now())
	if err != nil {
		return broken("make the server certificate: %v", err)
	}
	return e.judgeHandshake(ctx, tryTLS(ctx, e.addr, e.attackerTLS(cert), key))
}
