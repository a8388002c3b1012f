package main

import "github.com/urfave/cli/v2"

// serveCommand is a placeholder until the serve command lands.
func serveCommand() *cli.Command {
	return &cli.Command{Name: "serve", Hidden: true}
}
