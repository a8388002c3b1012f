package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// completionScripts are the shell functions that ask kvsctl itself for the
// words that may come next (urfave/cli's --generate-bash-completion), so
// they complete every command, subcommand and flag of this binary.
var completionScripts = map[string]string{
	"bash": `# kvsctl completion for bash: source <(kvsctl completion bash)
_kvsctl_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}" words
  if [[ "$cur" == -* ]]; then
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _kvsctl_complete kvsctl
`,
	"zsh": `#compdef kvsctl
# kvsctl completion for zsh: source <(kvsctl completion zsh)
_kvsctl() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n "${opts[1]}" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _kvsctl kvsctl
`,
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		UsageText: "kvsctl completion bash|zsh|fish",
		Description: "Prints a script that completes kvsctl's commands, subcommands and flags.\n\n" +
			"Examples:\n" +
			"  source <(kvsctl completion bash)            # or put it in ~/.bashrc\n" +
			"  kvsctl completion zsh > \"${fpath[1]}/_kvsctl\"\n" +
			"  kvsctl completion fish > ~/.config/fish/completions/kvsctl.fish",
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			if a[0] == "fish" {
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
				_, err = io.WriteString(c.App.Writer, s)
				return err
			}
			s, ok := completionScripts[a[0]]
			if !ok {
				return usagef("unknown shell %q: use bash, zsh or fish", a[0])
			}
			_, err = io.WriteString(c.App.Writer, s)
			return err
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Usage:     "print the manual page (roff)",
		UsageText: "kvsctl man > kvsctl.1 && man -l kvsctl.1",
		Description: "Prints kvsctl's manual page, built from the same text as --help: every command,\n" +
			"subcommand and flag. 'make man' writes it to docs/kvsctl.1.\n\n" +
			"Example:\n  kvsctl man | man -l -",
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			s, err := c.App.ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			_, err = io.WriteString(c.App.Writer, s)
			return err
		},
	}
}
