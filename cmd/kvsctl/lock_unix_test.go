//go:build unix

package main

import (
	"os"
	"syscall"
	"testing"

	"github.com/kvsctl/kvsctl/pki"
)

// holdLock takes the lock of the PKI directory d, as a running kvsctl pki
// command does, until the test ends.
func holdLock(t *testing.T, d pki.Dir) {
	t.Helper()
	f, err := os.OpenFile(d.Path(".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}
