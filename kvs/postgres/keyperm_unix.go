//go:build unix

package postgres

import (
	"fmt"
	"os"
	"syscall"
)

// checkKeyFile refuses a client key file (sslkey) that others may read,
// with libpq's rule, so that a key psql refuses is refused here too: owned
// by the current user it must be 0600 or less; owned by root, 0640 or less
// (a group such as ssl-cert may read it). A key owned by another user is
// left to the file system. A missing file is left to pgx, which reports it.
func checkKeyFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	perm := fi.Mode().Perm()
	var bad os.FileMode
	switch {
	case int(st.Uid) == os.Geteuid():
		bad = perm & 0o077
	case st.Uid == 0:
		bad = perm & 0o037
	}
	if bad != 0 {
		return fmt.Errorf("sslkey %s is accessible by group or others (mode %04o): run 'chmod 600 %s'", path, perm, path)
	}
	return nil
}
