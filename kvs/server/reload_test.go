package server

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// TestReloadBrokenFilesKeepPreviousMaterial corrupts the CRL and then the
// server certificate of a running server. Each reload must fail, say why,
// and keep the previous snapshot: in particular a broken CRL must not drop
// revocation, so a client revoked before the breakage stays refused. The
// file watcher must not retry (and log) the same broken files on every tick.
func TestReloadBrokenFilesKeepPreviousMaterial(t *testing.T) {
	d := testPKI(t, false)
	ctx := context.Background()
	mallory, err := pki.Issue(ctx, pki.IssueOptions{Dir: d, Profile: pki.ProfileClient, Name: "mallory", KeyType: pki.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Revoke(context.Background(), pki.RevokeOptions{Dir: d, Target: mallory.CertFile}); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, d, nil, func(c *Config) { c.ReloadInterval = 20 * time.Millisecond })

	good := newTestClient(t, d, ts.addr, func(c *client.Config) { c.NewConn = true })
	revoked := newTestClient(t, d, ts.addr, func(c *client.Config) {
		c.NewConn = true
		c.Files.Cert, c.Files.Key = mallory.CertFile, mallory.KeyFile
	})
	check := func(stage string) {
		t.Helper()
		if _, err := good.Put(ctx, "reload/k", []byte(stage), kvs.Cond{}); err != nil {
			t.Errorf("%s: the legitimate client was refused: %v", stage, err)
		}
		if _, err := revoked.Get(ctx, "reload/k"); !errors.Is(err, client.ErrRejected) {
			t.Errorf("%s: the revoked client: err = %v, want client.ErrRejected", stage, err)
		}
	}
	check("before")

	for _, f := range []struct{ name, path string }{
		{"CRL", d.CRL()},
		{"server certificate", d.ServerCert()},
	} {
		if err := os.WriteFile(f.path, []byte("-----BEGIN GARBAGE-----\nnot PEM\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ts.srv.TLS().Reload(); err == nil {
			t.Fatalf("reload with a broken %s succeeded", f.name)
		}
		time.Sleep(150 * time.Millisecond) // several watcher ticks on the same broken files
		check("broken " + f.name)
	}
	logs := ts.log.String()
	// One failure per Reload call above, plus at most one from the watcher
	// per broken state: never one per tick.
	if n := strings.Count(logs, "tls reload failed, keeping the previous certificates"); n < 2 || n > 4 {
		t.Errorf("%d 'reload failed' log lines, want 2 to 4:\n%s", n, logs)
	}
}
