package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"

	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// The flags that several commands share, in one place. Each function
// returns a new flag so commands never share mutable flag state. A flag
// that a deployment sets reads the environment variable KVS_ + its name
// (env); serve and the client commands also read it from --config.

// env is the environment variable of a flag: KVS_ and its name in capitals
// with '_' for '-', plus any older names kept for compatibility.
func env(name string, also ...string) []string {
	return append([]string{"KVS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}, also...)
}

func dirFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "dir", Value: "certs", EnvVars: env("dir", "KVS_CERTS"), Usage: "PKI directory"}
}

func jsonFlag() *cli.BoolFlag {
	return &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON"}
}

func passphraseFileFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name: "passphrase-file", EnvVars: env("passphrase-file"),
		Usage: "file holding the CA key passphrase (or set KVS_CA_PASSPHRASE)",
	}
}

func configFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name: "config", EnvVars: env("config"),
		Usage: "YAML `FILE` of flag values (name: value); a flag or its environment variable wins over the file",
	}
}

// readSecretFile reads a passphrase or password from a file that only its
// owner can read, without the trailing newline.
func readSecretFile(path, what string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s file: %w", what, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s file %s is readable by group or others (mode %04o): run 'chmod 600 %s'", what, path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s file: %w", what, err)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return nil, fmt.Errorf("%s file %s is empty", what, path)
	}
	return []byte(s), nil
}

// passphrase reads the CA key passphrase from --passphrase-file or the
// KVS_CA_PASSPHRASE environment variable; nil when neither is set.
func passphrase(c *cli.Context) ([]byte, error) {
	if p := c.String("passphrase-file"); p != "" {
		return readSecretFile(p, "passphrase")
	}
	if s := os.Getenv("KVS_CA_PASSPHRASE"); s != "" {
		return []byte(s), nil
	}
	return nil, nil
}

// clientFlags are the flags of every command that talks to a server.
func clientFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "server", Value: client.DefaultServer, EnvVars: env("server"), Usage: "server address, host:port"},
		dirFlag(),
		&cli.StringFlag{Name: "cert", EnvVars: env("cert"), Usage: "client certificate (instead of --dir)"},
		&cli.StringFlag{Name: "key", EnvVars: env("key"), Usage: "client private key (instead of --dir)"},
		&cli.StringFlag{Name: "ca", EnvVars: env("ca"), Usage: "CA bundle (or, self-signed, the server's certificate) to verify the server with (instead of --dir)"},
		&cli.DurationFlag{Name: "timeout", Value: client.DefaultTimeout, EnvVars: env("timeout"), Usage: "bound on each request"},
		configFlag(),
	}, extra...)
}

// clientConfig reads the client flags into a client configuration. The
// server's certificate chain and host name are always verified: there is
// no flag to skip that.
func clientConfig(c *cli.Context) (client.Config, error) {
	var files pki.Files
	if c.String("cert") != "" || c.String("key") != "" || c.String("ca") != "" {
		files = pki.Files{Cert: c.String("cert"), Key: c.String("key"), CA: c.String("ca")}
		if files.Cert == "" || files.Key == "" || files.CA == "" {
			return client.Config{}, usagef("--cert, --key and --ca go together; or use --dir")
		}
	} else {
		var err error
		if files, err = pki.Dir(c.String("dir")).ClientFiles(); err != nil {
			return client.Config{}, err
		}
	}
	if c.Duration("timeout") < 0 {
		return client.Config{}, usagef("--timeout must not be negative")
	}
	return client.Config{Server: c.String("server"), Files: files, Timeout: c.Duration("timeout")}, nil
}

// newClient builds a client from the client flags.
func newClient(c *cli.Context) (*client.Client, error) {
	cfg, err := clientConfig(c)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// withConfig lets --config FILE (YAML) set any flag of cmd: every flag is
// wrapped to read the file, and cmd's Before loads it. The file counts
// only for flags not given on the command line or in the environment.
func withConfig(cmd *cli.Command) *cli.Command {
	for i, f := range cmd.Flags {
		cmd.Flags[i] = configurable(f)
	}
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		if path := c.String("config"); path != "" {
			if _, err := os.Stat(path); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return usagef("--config %s: no such file", path)
				}
				return fmt.Errorf("config file: %w", err)
			}
			if err := checkConfigKeys(path, cmd.Flags); err != nil {
				return err
			}
			src, err := altsrc.NewYamlSourceFromFile(path)
			if err != nil {
				return fmt.Errorf("config file %s: %w", path, err)
			}
			if err := altsrc.ApplyInputSourceValues(c, src, cmd.Flags); err != nil {
				return fmt.Errorf("config file %s: %w", path, err)
			}
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	return cmd
}

// configurable wraps a flag so that --config can set it.
func configurable(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *cli.StringFlag:
		if f.Name == "config" {
			return f
		}
		return altsrc.NewStringFlag(f)
	case *cli.BoolFlag:
		return altsrc.NewBoolFlag(f)
	case *cli.IntFlag:
		return altsrc.NewIntFlag(f)
	case *cli.Int64Flag:
		return altsrc.NewInt64Flag(f)
	case *cli.DurationFlag:
		return altsrc.NewDurationFlag(f)
	case *cli.StringSliceFlag:
		return altsrc.NewStringSliceFlag(f)
	case *cli.Float64Flag:
		return altsrc.NewFloat64Flag(f)
	}
	return f
}

// durationFlag is a duration flag with a default and an environment
// variable.
func durationFlag(name string, value time.Duration, usage string) *cli.DurationFlag {
	return &cli.DurationFlag{Name: name, Value: value, EnvVars: env(name), Usage: usage}
}

// checkConfigKeys refuses a config file that is not a YAML map, or that
// names a flag the command does not have: a typo must not be ignored.
func checkConfigKeys(path string, flags []cli.Flag) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("config file %s: not a YAML map of flag names to values: %w", path, err)
	}
	for k := range m {
		known := false
		for _, f := range flags {
			if slices.Contains(f.Names(), k) && k != "config" {
				known = true
			}
		}
		if !known {
			return usagef("config file %s: %q is not a flag of this command", path, k)
		}
	}
	return nil
}
