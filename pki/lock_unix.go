//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pki

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lock takes an exclusive advisory lock on the PKI directory so that two
// kvsctl processes never interleave updates of the inventory and the CRL.
//
// The lock file is opened with O_NOFOLLOW: a .lock that is a symbolic link
// is refused rather than followed, which would create or open its target
// wherever it points. It must be a regular file.
func (d Dir) lock() (func(), error) { return d.lockFile(true) }

// tryLock is lock that fails at once, with an error wrapping ErrLocked,
// when another process holds the lock.
func (d Dir) tryLock() (func(), error) { return d.lockFile(false) }

func (d Dir) lockFile(wait bool) (func(), error) {
	path := d.Path(".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if fi, lerr := os.Lstat(path); errors.Is(err, syscall.ELOOP) || (lerr == nil && fi.Mode()&os.ModeSymlink != 0) {
			return nil, fmt.Errorf("lock %s: %s is a symbolic link: refusing to follow it (remove it; kvsctl creates the lock file itself)", string(d), path)
		}
		return nil, fmt.Errorf("lock %s: %w", string(d), err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
		}
		return nil, fmt.Errorf("lock %s: %w", string(d), err)
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errorOf(ErrLocked, "another kvsctl command holds the lock %s of %s: let it finish, then run this again", path, string(d))
		}
		return nil, fmt.Errorf("lock %s: %w", string(d), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
