package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// fileStamp identifies the state of a set of files (size and modification
// time of each, or that it is missing), to notice changes by polling.
type fileStamp string

func stampFiles(paths []string) fileStamp {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", p)
		}
	}
	return fileStamp(b.String())
}

// reloader is something that reloads from files: the TLS material and the
// policy.
type reloader interface {
	// Reload re-reads the files; on error the previous state stays.
	Reload() error
	// changed reports whether the files differ from those last loaded (or
	// last failed to load: a broken file is not retried until it changes).
	changed() bool
}

// watch polls every interval and reloads what changed, until ctx ends.
func watch(ctx context.Context, interval time.Duration, rs ...reloader) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, r := range rs {
				if r.changed() {
					_ = r.Reload()
				}
			}
		}
	}
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
