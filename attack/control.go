package attack

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// runControl is the legitimate client doing a round trip. Without it the
// refusals would prove nothing: a server that refuses everyone refuses
// attackers too.
func runControl(ctx context.Context, e *env, key string) observation {
	c, err := e.realClient(e.addr, nil)
	if err != nil {
		return broken("load the real client: %v", err)
	}
	defer c.Close()
	o := observation{outcome: Failed}
	value := []byte("kvsctl attack control " + e.runID)
	v, err := c.Put(ctx, key, value, kvs.Cond{CreateOnly: true})
	if err != nil {
		o.observed, o.clientSaw = "put failed", errText(err)
		o.serverSaw = e.serverKey(ctx, key, 1)
		return o
	}
	got, err := c.Get(ctx, key)
	if err != nil || !bytes.Equal(got.Value, value) || got.Version != v {
		o.observed = "get did not return what was put"
		o.clientSaw = fmt.Sprintf("put version %d; get: %v", v, err)
		if err == nil {
			o.clientSaw = fmt.Sprintf("put version %d; get version %d, %d bytes", v, got.Version, len(got.Value))
		}
		o.serverSaw = e.serverKey(ctx, key, 2)
		return o
	}
	if err := c.Delete(ctx, key, kvs.Cond{IfVersion: v}); err != nil {
		o.observed, o.clientSaw = "delete failed", errText(err)
		o.serverSaw = e.serverKey(ctx, key, 3)
		return o
	}
	o.outcome = Passed
	o.observed = "accepted; put, get and delete worked"
	o.clientSaw = fmt.Sprintf("put version %d, got the same %d bytes back, deleted", v, len(value))
	o.serverSaw = e.serverKey(ctx, key, 3)
	return o
}

// serverKey describes the server's requests on key (n expected).
func (e *env) serverKey(ctx context.Context, key string, n int) string {
	if e.log == nil {
		return remoteSaw
	}
	return e.log.awaitKey(ctx, key, n, 2*time.Second)
}

// outsiderName is the identity of the outside-policy scenario.
const outsiderName = "kvsctl-attack-outsider"

// runOutsidePolicy is a client with a genuine certificate of the real CA
// whose identity the policy does not name.
func runOutsidePolicy(ctx context.Context, e *env, key string) observation {
	cert, err := signedByCA(e.ca, e.keyType, pki.ProfileClient, pkix.Name{CommonName: outsiderName}, nil, time.Time{}, time.Time{}, e.now())
	if err != nil {
		return broken("make the outsider's certificate: %v", err)
	}
	c, err := e.realClient(e.addr, &cert)
	if err != nil {
		return broken("load the client: %v", err)
	}
	defer c.Close()
	_, perr := c.Put(ctx, key, []byte("written by an identity outside the policy"), kvs.Cond{})
	o := observation{serverSaw: e.serverKey(ctx, key, 1)}
	var se *client.StatusError
	switch {
	case perr == nil:
		o.outcome, o.observed, o.wrote = Succeeded, "write accepted: the policy does not restrict this identity", true
		o.clientSaw = "PUT accepted"
	case errors.As(perr, &se) && se.Code == 403:
		o.outcome, o.observed, o.clientSaw = Refused, "handshake accepted, write refused with 403 by the policy", errText(perr)
	default:
		o.outcome, o.observed, o.clientSaw = Broken, "expected the handshake to pass and the policy to refuse", errText(perr)
	}
	return o
}
