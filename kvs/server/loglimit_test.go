package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLogLimiter lets limit lines through per window and reports the rest
// once: at the end of the window, or at stop.
func TestLogLimiter(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))

	l := newLogLimiter(log, "held back", 3, time.Hour)
	allowed := 0
	for range 10 {
		if l.allow() {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("%d of 10 lines allowed, want 3", allowed)
	}
	if strings.Contains(buf.String(), "held back") {
		t.Fatal("the summary was logged before the window ended")
	}
	l.stop()
	if got := summaryCounts(t, buf.String(), "held back"); got != 7 {
		t.Errorf("summary counts %d lines, want 7:\n%s", got, buf.String())
	}
	if !l.allow() {
		t.Error("a line after stop was held back")
	}

	// The window's end reports by itself, and a new window lets lines
	// through again.
	var buf2 syncBuffer
	l = newLogLimiter(slog.New(slog.NewJSONHandler(&buf2, nil)), "held back", 2, 500*time.Millisecond)
	for range 5 {
		l.allow()
	}
	waitFor(t, 5*time.Second, "the end-of-window summary", func() bool {
		return summaryCounts(t, buf2.String(), "held back") == 3
	})
	if !l.allow() {
		t.Error("a line in a new window was held back")
	}
}

// summaryCounts adds up the count of every log line with message msg.
func summaryCounts(t *testing.T, logs, msg string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			Msg   string `json:"msg"`
			Count int    `json:"count"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec.Msg == msg {
			n += rec.Count
		}
	}
	return n
}

// TestRefusedHandshakeLogIsCapped makes 40 handshakes without a client
// certificate against a server that logs at most 5 refusals a second:
// fewer than 40 lines name a refusal, the summary lines account for the
// rest, and the metric counts all 40. Without the cap there are 40 lines.
func TestRefusedHandshakeLogIsCapped(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, func(c *Config) { c.refusalLogLimit = 5 })
	caPEM, err := os.ReadFile(d.CACert())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	const n = 40
	for range n {
		conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
		if err == nil {
			conn.Read(make([]byte, 1)) // TLS 1.3: the refusal arrives after the handshake
			conn.Close()
		}
	}
	waitFor(t, 10*time.Second, "40 refusals counted", func() bool {
		return refusalsCounted(t, ts.srv) == n
	})
	ts.srv.refusals.stop()
	logs := ts.log.String()
	lines := strings.Count(logs, `"msg":"tls handshake refused"`)
	held := summaryCounts(t, logs, "tls handshake refusals not logged")
	if lines >= n {
		t.Errorf("%d refusal lines for %d refusals: the cap did not hold", lines, n)
	}
	if lines+held != n {
		t.Errorf("%d lines + %d held back = %d, want %d", lines, held, lines+held, n)
	}
	if held > 0 && !strings.Contains(logs, `"metric":"kvs_tls_handshakes_refused_total"`) {
		t.Error("the summary does not point to the metric")
	}
}

// refusalsCounted is the sum of kvs_tls_handshakes_refused_total.
func refusalsCounted(t *testing.T, s *Server) float64 {
	t.Helper()
	families, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == "kvs_tls_handshakes_refused_total" {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
