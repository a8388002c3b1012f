package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/urfave/cli/v2"
)

func newLogHandler(w io.Writer, format string, level slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// heldHandler holds log records back until release, then passes them and
// every later record through. serve uses it so that a start-up error is
// one line (and the warnings that explain it), not a list of what loaded
// fine before it.
type heldHandler struct {
	h     slog.Handler
	state *heldState
}

type heldState struct {
	released atomic.Bool // read without mu on every record once the server is up
	mu       sync.Mutex
	records  []heldRecord
}

type heldRecord struct {
	h   slog.Handler
	ctx context.Context
	r   slog.Record
}

func newHeldHandler(h slog.Handler) *heldHandler { return &heldHandler{h: h, state: &heldState{}} }

func (h *heldHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *heldHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.state.released.Load() {
		h.state.mu.Lock()
		if !h.state.released.Load() {
			h.state.records = append(h.state.records, heldRecord{h.h, ctx, r.Clone()})
			h.state.mu.Unlock()
			return nil
		}
		h.state.mu.Unlock()
	}
	return h.h.Handle(ctx, r)
}

func (h *heldHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &heldHandler{h.h.WithAttrs(as), h.state}
}

func (h *heldHandler) WithGroup(name string) slog.Handler {
	return &heldHandler{h.h.WithGroup(name), h.state}
}

// release writes the held records at min or above, in order, and lets every
// later record through.
func (h *heldHandler) release(min slog.Level) {
	h.state.mu.Lock()
	defer h.state.mu.Unlock()
	for _, hr := range h.state.records {
		if hr.r.Level >= min {
			_ = hr.h.Handle(hr.ctx, hr.r)
		}
	}
	h.state.records = nil
	h.state.released.Store(true)
}

// logFlags are --log-format and --log-level, for the long-running commands
// other than serve.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: env("log-format"), Usage: "log format: text or json"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: env("log-level"), Usage: "log level: debug, info, warn or error"},
	}
}

// loggerOf builds the logger that --log-format and --log-level ask for,
// writing to the command's stderr.
func loggerOf(c *cli.Context) (*slog.Logger, error) {
	format := c.String("log-format")
	if format != "text" && format != "json" {
		return nil, usagef("--log-format %q: use text or json", format)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(newLogHandler(c.App.ErrWriter, format, level)), nil
}
