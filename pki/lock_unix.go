//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pki

import (
	"fmt"
	"os"
	"syscall"
)

// lock takes an exclusive advisory lock on the PKI directory so that two
// kvsctl processes never interleave updates of the inventory and the CRL.
func (d Dir) lock() (func(), error) {
	f, err := os.OpenFile(d.Path(".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", string(d), err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", string(d), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
