//go:build !linux

package pki

import (
	"crypto/x509"
	"runtime"
)

// systemTrust names the system store of this platform: the login keychain
// on macOS, the ROOT store on Windows, both changed by truststore through
// the platform's own tools and APIs. kvsctl's tests run on Linux only.
type systemTrust struct {
	file string // always empty: the store is not a directory of files
}

func (systemTrust) describe() string {
	switch runtime.GOOS {
	case "darwin":
		return "the macOS keychain (security add-trusted-cert)"
	case "windows":
		return "the Windows ROOT certificate store"
	}
	return "the system trust store of " + runtime.GOOS
}

func systemStore(*x509.Certificate) (systemTrust, error) { return systemTrust{}, nil }
