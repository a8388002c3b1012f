package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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

// copyPKI copies a PKI directory, modes included, to stage a change
// made elsewhere.
func copyPKI(t *testing.T, from pki.Dir) pki.Dir {
	t.Helper()
	to := filepath.Join(t.TempDir(), "staged")
	err := filepath.WalkDir(string(from), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(string(from), path)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), fi.Mode().Perm())
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return pki.Dir(to)
}

// TestWatchWaitsForFilesToSettle: a root rotation writes ca.crt,
// intermediates.pem and crl.pem one after another, and a reload between
// two of them fails (a root without its CRL, an intermediate without its
// root). The rotation is made in a copy of the directory and its files are
// put in place in that order, a pause between each, under a watcher that
// polls every 10ms. The watcher waits for the files to settle and reloads
// once, without a failure. The control, a watcher that reloads as soon as
// it sees a change, does log a failed reload, so the test can tell.
func TestWatchWaitsForFilesToSettle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		settle settling
	}{
		{"settling", settling{step: 600 * time.Millisecond, max: 5 * time.Second}},
		{"no settling (control)", settling{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testPKI(t, false)
			staged := copyPKI(t, d)
			if _, err := pki.Rotate(context.Background(), pki.RotateOptions{Dir: staged, Root: true}); err != nil {
				t.Fatal(err)
			}
			files, err := d.ServerFiles()
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			s, err := LoadTLS(files, TLSOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				watch(ctx, 10*time.Millisecond, tc.settle, s)
			}()
			defer func() { cancel(); <-done }()
			for _, name := range []string{"ca.crt", "intermediates.pem", "crl.pem"} {
				data, err := os.ReadFile(staged.Path(name))
				if err != nil {
					t.Fatal(err)
				}
				if err := pki.WriteFileAtomic(d.Path(name), data, pki.CertMode, true); err != nil {
					t.Fatal(err)
				}
				time.Sleep(150 * time.Millisecond)
			}
			// Both roots and both intermediates, each with its CRL.
			waitFor(t, 10*time.Second, "the rotated material in force", func() bool { return len(s.snap.Load().crls.byIssuer) == 4 })
			failed := strings.Count(logs.String(), "tls reload failed")
			loaded := strings.Count(logs.String(), "tls material loaded")
			if tc.settle.step == 0 {
				if failed == 0 {
					t.Errorf("control: no reload of the half-written update failed, so the test cannot tell:\n%s", logs)
				}
				return
			}
			if failed != 0 || loaded != 2 {
				t.Errorf("%d failed reloads and %d loads, want none failed and the start plus one reload:\n%s", failed, loaded, logs)
			}
		})
	}
}

// TestSettlingGivesUp: files that never stop changing are reloaded after
// at most settling.max, not waited for forever.
func TestSettlingGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy")
	ctx, cancel := context.WithCancel(context.Background())
	writer := make(chan struct{})
	defer func() { cancel(); <-writer }()
	go func() {
		defer close(writer)
		for i := 0; ctx.Err() == nil; i++ {
			os.WriteFile(path, []byte(strings.Repeat("x", i%50)), 0o600)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	done := make(chan bool, 1)
	go func() {
		done <- settling{step: 20 * time.Millisecond, max: 200 * time.Millisecond}.wait(ctx, []string{path})
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Error("wait reported a cancelled context")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not give up on files that keep changing")
	}
	cancelled, stop := context.WithCancel(context.Background())
	stop()
	if (settling{step: time.Hour, max: time.Hour}).wait(cancelled, []string{path}) {
		t.Error("wait on a cancelled context returned true")
	}
}
