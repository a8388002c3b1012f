package main

import (
	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/pki"
)

// profile parses a server|client word as a usage error.
func pkiProfile(s string) (pki.Profile, error) {
	p, err := pki.ParseProfile(s)
	if err != nil {
		return "", usageError{err}
	}
	return p, nil
}

func pkiInitCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a CA with a server and a client certificate (or a self-signed pair)",
		UsageText: "kvsctl pki init [--self-signed] [--hosts H,...] [--client NAME] [--key-type T] [--passphrase-file F] [--crl-days N] [--force] [--dir DIR]",
		Description: "CA mode (default): a root CA (10 years, CA:TRUE critical, path length 0), a server\n" +
			"certificate for --hosts (default localhost, 127.0.0.1, ::1 and this host's name), a client\n" +
			"certificate (CN from --client), an empty signed CRL and the inventory.\n" +
			"--self-signed: the original set-up, a self-signed server and client certificate, each side\n" +
			"trusting exactly the other's. Refuses to replace an existing PKI without --force.\n\n" +
			"Example:\n  kvsctl pki init --hosts localhost,127.0.0.1,kvs.example.com --client alice",
		Flags: []cli.Flag{
			dirFlag(),
			&cli.BoolFlag{Name: "self-signed", Usage: "no CA: self-signed server and client certificates that pin each other"},
			pkiHostsFlag("server DNS names and IP addresses"),
			&cli.StringFlag{Name: "client", Value: "client", Usage: "common name of the client certificate"},
			pkiKeyTypeFlag(),
			passphraseFileFlag(),
			pkiCRLDaysFlag(),
			pkiForceFlag("replace an existing PKI"),
		},
		Action: pkiInit,
	}
}

// keyType parses --key-type as a usage error.
func pkiKeyType(c *cli.Context) (pki.KeyType, error) {
	t, err := pki.ParseKeyType(c.String("key-type"))
	if err != nil {
		return "", usageError{err}
	}
	return t, nil
}

func pkiInit(c *cli.Context) error {
	if _, err := args(c, 0, 0); err != nil {
		return err
	}
	kt, err := pkiKeyType(c)
	if err != nil {
		return err
	}
	pass, err := passphrase(c)
	if err != nil {
		return err
	}
	if c.Int("crl-days") < 1 {
		return usagef("--crl-days must be at least 1")
	}
	d := pki.Dir(c.String("dir"))
	res, err := pki.Init(c.Context, pki.InitOptions{
		Dir: d, SelfSigned: c.Bool("self-signed"), Hosts: c.StringSlice("hosts"),
		Client: c.String("client"), KeyType: kt, Passphrase: pass,
		Force: c.Bool("force"), CRLDays: c.Int("crl-days"),
	})
	if err != nil {
		return err
	}
	pkiPrintInit(c.App.Writer, d, kt, len(pass) > 0, res)
	return nil
}
