package main

import "github.com/urfave/cli/v2"

// benchCommand is a placeholder until the bench command lands.
func benchCommand() *cli.Command {
	return &cli.Command{Name: "bench", Hidden: true}
}
