package main

import "github.com/urfave/cli/v2"

// getCommand is a placeholder until the get command lands.
func getCommand() *cli.Command {
	return &cli.Command{Name: "get", Hidden: true}
}

// putCommand is a placeholder until the put command lands.
func putCommand() *cli.Command {
	return &cli.Command{Name: "put", Hidden: true}
}

// deleteCommand is a placeholder until the delete command lands.
func deleteCommand() *cli.Command {
	return &cli.Command{Name: "delete", Hidden: true}
}

// listCommand is a placeholder until the list command lands.
func listCommand() *cli.Command {
	return &cli.Command{Name: "list", Hidden: true}
}
