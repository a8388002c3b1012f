package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/attack"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

func attackCommand() *cli.Command {
	return &cli.Command{
		Name:  "attack",
		Usage: "show, scenario by scenario, that rogue clients, downgrades and impostor servers are refused",
		Description: "The original project's demonstration (a client with its own self-signed certificate,\n" +
			"refused by the server), widened to what a security reviewer would try. Each scenario\n" +
			"reports what the attacker did, what should happen, what did, and the reason seen on each\n" +
			"side. The exit status is 0 only when every attack was refused and the legitimate control\n" +
			"succeeded.\n\n" +
			"Examples:\n" +
			"  kvsctl attack demo\n" +
			"  kvsctl attack run --server kvs.example.com:7443 --dir certs\n" +
			"  kvsctl attack list",
		Subcommands: []*cli.Command{attackListCommand(), attackDemoCommand(), attackRunCommand()},
	}
}

func scenarioFlag() *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: "scenario", Usage: "run only scenario `NAME` (repeatable; see 'kvsctl attack list')"}
}

func attackListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the scenarios, one line each",
		UsageText: "kvsctl attack list [--json]",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0); err != nil {
				return err
			}
			list := attack.Scenarios()
			w := c.App.Writer
			if c.Bool("json") {
				type item struct {
					Name        string `json:"name"`
					Description string `json:"description"`
					Attacker    string `json:"attacker"`
					Expected    string `json:"expected"`
					NeedsCAKey  bool   `json:"needs_ca_key"`
					Control     bool   `json:"control"`
				}
				items := make([]item, len(list))
				for i, s := range list {
					items[i] = item{s.Name, s.Description, s.Attacker, s.Expected, s.NeedsCAKey, s.Control}
				}
				return printJSON(w, items)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, s := range list {
				ca := ""
				if s.NeedsCAKey {
					ca = " (needs the CA key)"
				}
				fmt.Fprintf(tw, "%s\t%s%s\n", s.Name, s.Description, ca)
			}
			return tw.Flush()
		},
	}
}

func attackDemoCommand() *cli.Command {
	return &cli.Command{
		Name:      "demo",
		Usage:     "run every scenario against a throwaway server, no set-up needed",
		UsageText: "kvsctl attack demo [--store postgres://...] [--scenario NAME]... [--json]",
		Description: "Makes a throwaway PKI in a temporary directory, starts a real kvs server on 127.0.0.1\n" +
			"with a policy that names the legitimate client only, runs the scenarios, checks that\n" +
			"the store holds nothing written by an attacker, and removes everything it made.\n" +
			"Progress goes to stderr, the table (or JSON) to stdout. Because the server runs in this\n" +
			"process, the table shows the server's own reason for each refusal.\n\n" +
			"The store is a temporary embedded file unless --store names a PostgreSQL database: the\n" +
			"demo then works in a schema of its own and drops it afterwards. KVS_STORE is not read,\n" +
			"so a deployment's environment never points the demo at its database by accident.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "store", Usage: "PostgreSQL URL to use instead of a temporary embedded store"},
			scenarioFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := attackArgs(c); err != nil {
				return err
			}
			rep, err := attack.Demo(c.Context, attack.DemoOptions{
				Store:     c.String("store"),
				Scenarios: c.StringSlice("scenario"),
				Progress:  progressPrinter(c.App.ErrWriter),
			})
			if err != nil {
				if errors.Is(err, attack.ErrUnknownScenario) {
					return usageError{err}
				}
				if rep == nil {
					return fmt.Errorf("attack demo: %w", err)
				}
			}
			return finishAttack(c, rep, err)
		},
	}
}

func attackRunCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run the scenarios against a running server",
		UsageText: "kvsctl attack run [--server HOST:PORT] [--dir DIR] [--scenario NAME]... [--json]",
		Description: "Attacks a running 'kvsctl serve' with the files of a PKI directory: its CA certificate\n" +
			"and client certificate, and its CA key for the scenarios that need one (expired,\n" +
			"not yet valid, revoked, wrong usage, host name mismatch, outside the policy); without\n" +
			"the key those are listed as skipped. The server's log is not visible from here, so the\n" +
			"server column reads n/a (remote), except for the impostor scenarios, whose server is\n" +
			"this process.\n\n" +
			"What it changes: it writes only keys under " + attack.Prefix + " and deletes them\n" +
			"again. With the CA key it issues two client certificates named kvsctl-attack-* into the\n" +
			"directory and revokes them (the CRL is re-signed; the server must reload it, as\n" +
			"'kvsctl serve' does when the file changes); their files are removed afterwards, their\n" +
			"inventory records and CRL entries stay as an audit trail.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", Value: client.DefaultServer, EnvVars: env("server"), Usage: "server address, host:port"},
			&cli.StringFlag{Name: "server-name", Usage: "name to check in the server's certificate (default: the host of --server)"},
			dirFlag(),
			passphraseFileFlag(),
			&cli.DurationFlag{Name: "revocation-wait", Value: 30 * time.Second, Usage: "how long to wait for the server to take up a new CRL"},
			scenarioFlag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := attackArgs(c); err != nil {
				return err
			}
			if c.Duration("revocation-wait") <= 0 {
				return usagef("--revocation-wait must be positive")
			}
			pass, err := passphrase(c)
			if err != nil {
				return err
			}
			rep, err := attack.Run(c.Context, attack.RunOptions{
				Server:         c.String("server"),
				ServerName:     c.String("server-name"),
				Dir:            pki.Dir(c.String("dir")),
				Passphrase:     pass,
				Scenarios:      c.StringSlice("scenario"),
				RevocationWait: c.Duration("revocation-wait"),
				Progress:       progressPrinter(c.App.ErrWriter),
			})
			if err != nil && rep == nil {
				return fmt.Errorf("attack run: %w", err)
			}
			return finishAttack(c, rep, err)
		},
	}
}

// attackArgs checks that demo and run got no arguments and scenarios that
// exist.
func attackArgs(c *cli.Context) error {
	if _, err := args(c, 0, 0); err != nil {
		return err
	}
	if _, err := attack.Select(c.StringSlice("scenario")); err != nil {
		return usageError{err}
	}
	return nil
}

// progressPrinter writes one line per set-up step and per finished
// scenario.
func progressPrinter(w io.Writer) func(attack.Progress) {
	return func(p attack.Progress) {
		switch {
		case p.Step != "":
			fmt.Fprintf(w, "attack: %s\n", p.Step)
		case p.Result != nil:
			fmt.Fprintf(w, "attack: [%2d/%d] %-22s %-9s %5.1fms\n", p.Index, p.Total, p.Scenario, p.Result.Outcome, float64(p.Result.Duration.Microseconds())/1000)
		}
	}
}

// finishAttack prints the report and turns a failed run into exit status 1.
func finishAttack(c *cli.Context, rep *attack.Report, runErr error) error {
	w := c.App.Writer
	if c.Bool("json") {
		if err := printJSON(w, rep); err != nil {
			return err
		}
	} else if err := printAttackReport(w, rep); err != nil {
		return err
	}
	if runErr != nil {
		return exitError{exitFailure, fmt.Errorf("attack %s interrupted: %w", rep.Mode, runErr)}
	}
	return attackVerdict(rep)
}

// attackVerdict is nil for a report where every attack was refused, the
// control passed and the store is clean, and an exit-status-1 error that
// names what went wrong otherwise.
func attackVerdict(rep *attack.Report) error {
	if rep.OK {
		return nil
	}
	var succeeded, other []string
	for _, r := range rep.Failures() {
		if r.Outcome == attack.Succeeded {
			succeeded = append(succeeded, r.Scenario)
		} else {
			other = append(other, r.Scenario+" "+string(r.Outcome))
		}
	}
	var parts []string
	if len(succeeded) > 0 {
		parts = append(parts, fmt.Sprintf("%d attack(s) SUCCEEDED: %s", len(succeeded), strings.Join(succeeded, ", ")))
	}
	if len(other) > 0 {
		parts = append(parts, strings.Join(other, ", "))
	}
	if len(rep.StoreCheck.Found) > 0 {
		parts = append(parts, fmt.Sprintf("attacker keys found in the store: %s", strings.Join(rep.StoreCheck.Found, ", ")))
	}
	return exitError{exitFailure, errors.New(strings.Join(parts, "; "))}
}

// printAttackReport writes the table: one row per scenario, aligned, in a
// form that is also a Markdown table.
func printAttackReport(w io.Writer, rep *attack.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(cells ...string) {
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(tw, "| %s\t|\n", strings.Join(cells, "\t| "))
	}
	row("scenario", "verdict", "attacker did", "expected", "observed", "server saw", "client saw")
	row("---", "---", "---", "---", "---", "---", "---")
	for _, r := range rep.Results {
		row(r.Scenario, string(r.Outcome), r.Attacker, r.Expected, r.Observed, r.ServerSaw, r.ClientSaw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s\n", attackSummary(rep))
	return nil
}

// attackSummary is the last line of the table output.
func attackSummary(rep *attack.Report) string {
	refused, skipped := rep.Count(attack.Refused), rep.Count(attack.Skipped)
	attacks := len(rep.Results) - skipped
	control := "no control run"
	for _, r := range rep.Results {
		if r.Scenario == "control" {
			control = "control " + string(r.Outcome)
			attacks--
		}
	}
	s := fmt.Sprintf("%s against %s: %d of %d attacks refused, %s", rep.Mode, rep.Server, refused, attacks, control)
	if skipped > 0 {
		s += fmt.Sprintf(", %d skipped", skipped)
	}
	s += "; store check: " + rep.StoreCheck.Note
	if rep.OK {
		return s + "; PASS"
	}
	return s + "; FAIL"
}
