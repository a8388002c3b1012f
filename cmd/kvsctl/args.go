package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// interleave rewrites a command line so that the flags of the command being
// run come before its arguments, followed by "--" and the arguments:
// urfave/cli v2 stops reading flags at the first argument, and kvsctl
// accepts them anywhere, as git and etcdctl users expect ('kvsctl get
// hello --dir X' is 'kvsctl get --dir X -- hello'). A "--" of the user's
// own ends the flags: what follows is arguments, even when it starts with
// a dash ('kvsctl put k -- -v'). A dash word that names no flag of the
// command stays among the flags, so urfave reports it as unknown.
func interleave(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args // shell completion reads the words as they were typed
	}
	out := []string{args[0]}
	cmds, flags := app.Commands, app.Flags
	var cur *cli.Command
	i := 1
	// Descend through command and subcommand names, and any flags given
	// before them (which belong to the level they are written at).
	for i < len(args) {
		a := args[i]
		if isFlagWord(a) {
			out = append(out, a)
			if f := lookupFlag(flags, a); f != nil && takesValue(f) && !strings.Contains(a, "=") && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
			i++
			continue
		}
		cmd := findCommand(cmds, a)
		if cmd == nil {
			break
		}
		out = append(out, a)
		cur, cmds, flags = cmd, cmd.Subcommands, cmd.Flags
		i++
		if len(cmds) == 0 {
			break
		}
	}
	if cur == nil || len(cur.Subcommands) > 0 && cur.Action == nil {
		// No command, or a group without a subcommand (help, a typo):
		// urfave answers those as they are.
		return args
	}
	var flagWords, positional []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !isFlagWord(a) {
			positional = append(positional, a)
			continue
		}
		flagWords = append(flagWords, a)
		if f := lookupFlag(flags, a); f != nil && takesValue(f) && !strings.Contains(a, "=") && i+1 < len(args) {
			flagWords = append(flagWords, args[i+1])
			i++
		}
	}
	out = append(out, flagWords...)
	if slices.ContainsFunc(flagWords, func(w string) bool { return w == "-h" || w == "--help" || w == "-help" }) {
		return out // help for the command, whatever arguments came with it
	}
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}

// isFlagWord reports whether a word of the command line is written as a
// flag: "-x", "--name" or "--name=value", but not "-" (stdin).
func isFlagWord(a string) bool { return len(a) > 1 && a[0] == '-' }

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name || slices.Contains(c.Aliases, name) {
			return c
		}
	}
	return nil
}

// lookupFlag finds the flag a word names ("-x", "--name", "--name=v"),
// including the help flag every command has.
func lookupFlag(flags []cli.Flag, word string) cli.Flag {
	name, _, _ := strings.Cut(strings.TrimLeft(word, "-"), "=")
	if name == "help" || name == "h" {
		return cli.HelpFlag
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// takesValue reports whether a flag reads the next word as its value.
func takesValue(f cli.Flag) bool {
	if tv, ok := f.(interface{ TakesValue() bool }); ok {
		return tv.TakesValue()
	}
	return true
}

// args returns the command's arguments, between min and max of them
// (max < 0: no limit), or a usage error that points at the command's help.
func args(c *cli.Context, min, max int) ([]string, error) {
	a := c.Args().Slice()
	switch {
	case len(a) < min:
		return nil, usagef("missing argument: usage: %s (see '%s --help')", c.Command.UsageText, commandName(c))
	case max >= 0 && len(a) > max:
		if max == 0 {
			return nil, usagef("%s takes no arguments, got %q (see '%s --help')", commandName(c), a[0], commandName(c))
		}
		return nil, usagef("unexpected argument %q (see '%s --help'); quote a key or value that has spaces", a[max], commandName(c))
	}
	return a, nil
}
