package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// TestFaultCRLExpiry lets the CRL expire while the server runs (by moving
// the server's clock past NextUpdate): new connections must be refused with
// a log line that says why and what to run, and requests on connections
// opened before the expiry with 403; re-signing the CRL (what
// 'kvsctl pki crl' does) must restore service through the file watcher,
// without a restart.
func TestFaultCRLExpiry(t *testing.T) {
	d := testPKI(t, false)
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := startServer(t, d, nil, func(c *Config) {
		c.TLS.Now, c.Logger, c.ReloadInterval = now, logger, 50*time.Millisecond
	})

	fresh := newTestClient(t, d, ts.addr, func(c *client.Config) { c.NewConn, c.HTTP1 = true, true })
	kept := newTestClient(t, d, ts.addr, nil) // one HTTP/2 connection, opened before the expiry
	ctx := t.Context()
	if _, err := fresh.Put(ctx, "crl/k", []byte("v"), kvs.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Get(ctx, "crl/k"); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(d.CRL())
	if err != nil {
		t.Fatal(err)
	}
	rl, err := pki.ParseCRL(data)
	if err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(time.Until(rl.NextUpdate) + time.Hour))

	_, err = fresh.Get(ctx, "crl/k")
	if !errors.Is(err, client.ErrRejected) {
		t.Fatalf("new connection with an expired CRL: err = %v, want client.ErrRejected", err)
	}
	// The refusal is logged by the server's connection goroutine, which
	// may finish after the client has seen the alert.
	for _, want := range []string{
		"refusing every client: the CRL is not current; re-sign it",
		"tls handshake refused",
		"failing closed",
		"CRL expired at",
	} {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(logs.String(), want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	}
	_, keptErr := kept.Get(ctx, "crl/k")
	if !errors.Is(keptErr, client.ErrRejected) {
		t.Errorf("request on a connection opened before the expiry: err = %v, want 403 (client.ErrRejected)", keptErr)
	}
	t.Logf("new connection refused: %v; the connection opened before the expiry: err = %v", err, keptErr)

	resigned := time.Now()
	if _, err := pki.UpdateCRL(context.Background(), pki.CRLOptions{Dir: d, Passphrase: nil, Days: 1, Now: now()}); err != nil {
		t.Fatalf("re-sign the CRL: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = fresh.Get(ctx, "crl/k")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not restored within 10s of re-signing the CRL: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	restored := time.Since(resigned)
	if _, err := fresh.Put(ctx, "crl/k", []byte("w"), kvs.Cond{}); err != nil {
		t.Errorf("Put after the CRL was re-signed: %v", err)
	}
	keptState := "kept working"
	if keptErr != nil {
		keptState = "refused too"
	}
	figure(t, "events", "CRL expired while serving",
		"new connections refused, logged \"refusing every client: the CRL is not current; re-sign it\"; a connection opened before the expiry "+keptState,
		"served again "+restored.Round(10*time.Millisecond).String()+" after the CRL was re-signed (file watcher, no restart)")
}
