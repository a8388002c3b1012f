package main

import "github.com/urfave/cli/v2"

// attackCommand is a placeholder until the attack command lands.
func attackCommand() *cli.Command {
	return &cli.Command{Name: "attack", Hidden: true}
}
