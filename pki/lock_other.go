//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package pki

import (
	"errors"
	"fmt"
	"runtime"
)

// lock fails where kvsctl knows no file lock: updating a PKI directory
// without one could interleave two processes' writes of the inventory.
func (d Dir) lock() (func(), error) {
	return nil, fmt.Errorf("lock %s: %w", string(d), errors.New("no file locking on "+runtime.GOOS))
}

func (d Dir) tryLock() (func(), error) { return d.lock() }
