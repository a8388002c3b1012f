package main

import "github.com/urfave/cli/v2"

// pkiCommand is a placeholder until the pki command lands.
func pkiCommand() *cli.Command {
	return &cli.Command{Name: "pki", Hidden: true}
}
