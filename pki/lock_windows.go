package pki

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// lock takes an exclusive lock on the PKI directory's lock file so that two
// kvsctl processes never interleave updates of the inventory and the CRL.
func (d Dir) lock() (func(), error) { return d.lockFile(true) }

// tryLock is lock that fails at once, with an error wrapping ErrLocked,
// when another process holds the lock.
func (d Dir) tryLock() (func(), error) { return d.lockFile(false) }

func (d Dir) lockFile(wait bool) (func(), error) {
	f, err := os.OpenFile(d.Path(".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", string(d), err)
	}
	h := windows.Handle(f.Fd())
	ol := new(windows.Overlapped)
	flags := uint32(windows.LOCKFILE_EXCLUSIVE_LOCK)
	if !wait {
		flags |= windows.LOCKFILE_FAIL_IMMEDIATELY
	}
	if err := windows.LockFileEx(h, flags, 0, 1, 0, ol); err != nil {
		f.Close()
		if !wait {
			return nil, errorOf(ErrLocked, "another kvsctl command holds the lock of %s (%v): let it finish, then run this again", string(d), err)
		}
		return nil, fmt.Errorf("lock %s: %w", string(d), err)
	}
	return func() {
		_ = windows.UnlockFileEx(h, 0, 1, 0, ol)
		f.Close()
	}, nil
}
