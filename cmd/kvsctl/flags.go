package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shared flags. Each function returns a new flag so commands never share
// mutable flag state.

func dirFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name: "dir", Value: "certs", EnvVars: []string{"KVS_CERTS"},
		Usage: "PKI directory",
	}
}

func jsonFlag() *cli.BoolFlag {
	return &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON"}
}

func passphraseFileFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:  "passphrase-file",
		Usage: "file holding the CA key passphrase (or set KVS_CA_PASSPHRASE)",
	}
}

// passphrase reads the CA key passphrase from --passphrase-file or the
// KVS_CA_PASSPHRASE environment variable; nil when neither is set.
func passphrase(c *cli.Context) ([]byte, error) {
	if p := c.String("passphrase-file"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read passphrase file: %w", err)
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" {
			return nil, fmt.Errorf("passphrase file %s is empty", p)
		}
		return []byte(s), nil
	}
	if s := os.Getenv("KVS_CA_PASSPHRASE"); s != "" {
		return []byte(s), nil
	}
	return nil, nil
}
