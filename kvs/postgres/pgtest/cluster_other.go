//go:build !unix

package pgtest

import "os/exec"

// runAs is never called here: only a Unix test runs as root, the one case
// where the cluster needs a user of its own.
func runAs(*exec.Cmd, uint32, uint32) {}
