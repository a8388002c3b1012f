package stores_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/kvs/stores"
)

// TestOpenDefaultURL checks that an empty URL means bolt:data/kvs.db
// and that the directory is created private.
func TestOpenDefaultURL(t *testing.T) {
	t.Chdir(t.TempDir())
	s, err := stores.Open(t.Context(), "", stores.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat("data")
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data/ mode %v, want 0700", perm)
	}
	fi, err = os.Stat(filepath.Join("data", "kvs.db"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("data/kvs.db mode %v, want 0600", perm)
	}
}

func TestOpenBadURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"bolt:", "want bolt:PATH"},
		{"bolt://data/kvs.db", "want bolt:PATH"},
		{"mysql://root:hunter2@db/kvs", `unsupported store URL scheme "mysql"`},
		{"data/kvs.db", `scheme "(none)"`},
		{"user:hunter2@host/db", `scheme "user"`},
	} {
		_, err := stores.Open(t.Context(), tc.url, stores.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) err = %v, want it to contain %q", tc.url, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) err = %v: shows the password", tc.url, err)
		}
		if !strings.Contains(err.Error(), "postgres://") && !strings.HasPrefix(tc.url, "bolt:") {
			t.Errorf("Open(%q) err = %v: does not list the accepted forms", tc.url, err)
		}
	}
}

// TestBoltStoreLocked checks that a second opener gets a clear error
// rather than waiting forever.
