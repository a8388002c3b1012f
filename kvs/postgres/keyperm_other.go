//go:build !unix

package postgres

// checkKeyFile accepts every key file: permission bits mean nothing here
// (libpq does not check them on Windows either).
func checkKeyFile(string) error { return nil }
