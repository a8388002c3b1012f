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
	// watched are the files Reload reads.
	watched() []string
}

// How the watcher waits for an update of several files to be complete.
// 'pki ca rotate' and 'pki ca retire' write ca.crt, intermediates.pem and
// crl.pem one after another: a reload between two of them sees a new root
// without its CRL, or an intermediate whose root is gone, and fails. Once
// a change is seen, the files are stamped again every settleStep until two
// stamps in a row agree, for at most settleMax, and only then reloaded.
const (
	settleStep = 250 * time.Millisecond
	settleMax  = time.Second
)

// settling is the wait of the watcher after a change (see settleStep); the
// zero value reloads at once.
type settling struct {
	step, max time.Duration
}

// watch polls every interval and reloads what changed, once its files have
// settled, until ctx ends.
func watch(ctx context.Context, interval time.Duration, st settling, rs ...reloader) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, r := range rs {
				if !r.changed() {
					continue
				}
				if !st.wait(ctx, r.watched()) {
					return
				}
				_ = r.Reload()
			}
		}
	}
}

// wait returns once the files have not changed for one step, or max has
// passed since it was called; false when ctx ended first.
func (st settling) wait(ctx context.Context, paths []string) bool {
	if st.step <= 0 {
		return ctx.Err() == nil
	}
	deadline := time.Now().Add(st.max)
	prev := stampFiles(paths)
	t := time.NewTimer(st.step)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		cur := stampFiles(paths)
		if cur == prev || !time.Now().Before(deadline) {
			return true
		}
		prev = cur
		t.Reset(st.step)
	}
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
