//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pki

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLockRefusesSymlink: certs/.lock is opened with O_CREATE; through a
// symbolic link that creates (or opens) a file anywhere the user can
// write. A .lock that is a symbolic link is refused and its target is
// neither created nor changed.
func TestLockRefusesSymlink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		exists bool // the link's target exists
		op     func(d Dir) error
	}{
		{"dangling link, UpdateCRL", false, func(d Dir) error { _, err := UpdateCRL(ctx, CRLOptions{Dir: d}); return err }},
		{"dangling link, Issue", false, func(d Dir) error {
			_, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "x", KeyType: ECDSAP256})
			return err
		}},
		{"link to a file, Revoke", true, func(d Dir) error {
			_, err := Revoke(ctx, RevokeOptions{Dir: d, Target: d.ClientCert()})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newPKI(t, false)
			target := filepath.Join(t.TempDir(), "victim")
			if tc.exists {
				if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			lock := d.Path(".lock")
			if err := os.Remove(lock); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			if err := os.Symlink(target, lock); err != nil {
				t.Fatal(err)
			}
			before := dirFiles(t, d)
			err := tc.op(d)
			if err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
				t.Errorf("error %v, want a refusal of the symbolic link", err)
			}
			data, rerr := os.ReadFile(target)
			switch {
			case !tc.exists && rerr == nil:
				t.Errorf("the lock created the link's target %s", target)
			case tc.exists && string(data) != "keep me":
				t.Errorf("the link's target changed: %q, %v", data, rerr)
			}
			delete(before, lock)
			after := dirFiles(t, d)
			delete(after, lock)
			if len(before) != len(after) {
				t.Errorf("the refused operation wrote files: %d before, %d after", len(before), len(after))
			}
		})
	}
}
