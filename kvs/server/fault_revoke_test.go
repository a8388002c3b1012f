package server

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// TestFaultRevokedWhileConnected revokes the client's certificate while it
// holds an open HTTP/2 connection. The handshake check cannot see it (there
// is no new handshake), so the server must refuse the requests on the old
// connection too, once the new CRL is loaded; new connections are refused in
// the handshake.
func TestFaultRevokedWhileConnected(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, nil)
	kept := newTestClient(t, d, ts.addr, nil)
	ctx := t.Context()
	if _, err := kept.Put(ctx, "rev/k", []byte("v"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Revoke(context.Background(), pki.RevokeOptions{Dir: d, Target: d.ClientCert()}); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.TLS().Reload(); err != nil {
		t.Fatal(err)
	}
	_, err := kept.Get(ctx, "rev/k")
	var se *client.StatusError
	if !errors.Is(err, client.ErrRejected) || !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Errorf("request on a connection opened before the revocation: err = %v, want 403 (client.ErrRejected)", err)
	}
	if _, err := kept.Put(ctx, "rev/k", []byte("w"), kvs.Cond{}); !errors.Is(err, client.ErrRejected) {
		t.Errorf("write on a connection opened before the revocation: err = %v, want client.ErrRejected", err)
	}
	fresh := newTestClient(t, d, ts.addr, func(c *client.Config) { c.NewConn = true })
	if _, err := fresh.Get(ctx, "rev/k"); !errors.Is(err, client.ErrRejected) {
		t.Errorf("new connection after the revocation: err = %v, want client.ErrRejected", err)
	}
	if e, err := ts.store.Get(ctx, "rev/k"); err != nil || string(e.Value) != "v" {
		t.Errorf("the revoked client changed the store: %q, %v", e.Value, err)
	}
}
