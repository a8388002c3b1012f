package attack

import (
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/kvs/server"
)

var hexRun = regexp.MustCompile(`[0-9a-f]{8,}`)

// TestServerSideIgnoresLogText: what the demo reports of the server's side
// comes from the server's typed events, not from its log lines. The same
// scenarios run with the audit and operational logs rewritten (every
// attribute renamed, every message changed) and discarded: the "server
// saw" column must not change.
func TestServerSideIgnoresLogText(t *testing.T) {
	scramble := func(c *server.Config) {
		h := slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{
			Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				a.Key = "renamed_" + a.Key
				if a.Key == "renamed_msg" {
					a.Value = slog.StringValue("something else")
				}
				return a
			},
		})
		c.Logger, c.Audit = slog.New(h), slog.New(h)
	}
	names := []string{"control", "no-client-cert", "revoked-client", "outside-policy"}
	plain := runDemo(t, weakening{}, names...)
	scrambled := runDemo(t, weakening{server: scramble}, names...)
	for _, name := range names {
		a, b := result(t, plain, name), result(t, scrambled, name)
		if a.Outcome != b.Outcome {
			t.Errorf("%s: outcome %s with plain logs, %s with scrambled ones", name, a.Outcome, b.Outcome)
		}
		norm := func(s string) string { // run ids and serials differ between runs
			return hexRun.ReplaceAllString(s, "X")
		}
		if norm(a.ServerSaw) != norm(b.ServerSaw) || strings.Contains(b.ServerSaw, "nothing logged") {
			t.Errorf("%s: server saw %q with plain logs, %q with scrambled ones", name, a.ServerSaw, b.ServerSaw)
		}
	}
	if r := result(t, scrambled, "outside-policy"); !strings.Contains(r.ServerSaw, "by kvsctl-attack-outsider -> 403") {
		t.Errorf("outside-policy: server saw %q", r.ServerSaw)
	}
	if r := result(t, scrambled, "no-client-cert"); !strings.Contains(r.ServerSaw, "refused: ") {
		t.Errorf("no-client-cert: server saw %q", r.ServerSaw)
	}
}
