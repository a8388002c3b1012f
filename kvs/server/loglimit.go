package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// refusalLogLimit is how many refused handshakes the server logs one line
// each for, per refusalLogWindow. A flood of refusals (10,000 idle
// connections cut by the handshake timeout, a scanner) would otherwise
// write a line per connection; past the limit the refusals are counted,
// and one line per window says how many were not logged. The metric
// kvs_tls_handshakes_refused_total counts every refusal either way.
const (
	refusalLogLimit  = 100
	refusalLogWindow = time.Second
)

// logLimiter lets at most limit lines through per window and reports how
// many it held back, once, at the end of each window that held any back
// (unless its summary message is empty: then the rest are just dropped).
type logLimiter struct {
	log    *slog.Logger
	msg    string      // the summary line's message
	attrs  []slog.Attr // and its attributes, besides the count
	limit  int
	window time.Duration

	mu      sync.Mutex
	start   time.Time   // of the current window
	logged  int         // lines let through in the current window
	dropped int         // lines held back in the current window
	timer   *time.Timer // reports dropped at the end of the window
	stopped bool        // after stop, every line goes through
}

func newLogLimiter(log *slog.Logger, msg string, limit int, window time.Duration, attrs ...slog.Attr) *logLimiter {
	return &logLimiter{log: log, msg: msg, attrs: attrs, limit: limit, window: window}
}

// allow reports whether a line may be logged now; when it may not, the
// line is counted for the window's summary.
func (l *logLimiter) allow() bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return true
	}
	if now.Sub(l.start) >= l.window {
		l.start, l.logged = now, 0
	}
	if l.logged < l.limit {
		l.logged++
		return true
	}
	l.dropped++
	if l.timer == nil && l.msg != "" {
		l.timer = time.AfterFunc(l.start.Add(l.window).Sub(now), l.report)
	}
	return false
}

// report logs how many lines were held back, if any.
func (l *logLimiter) report() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	l.reportLocked()
}

// reportLocked logs the summary with l.mu held, so that stop cannot return
// before a summary being written is out. It happens at most once a window.
func (l *logLimiter) reportLocked() {
	if l.dropped == 0 || l.msg == "" {
		l.dropped = 0
		return
	}
	attrs := append([]slog.Attr{slog.Int("count", l.dropped), slog.Duration("within", l.window)}, l.attrs...)
	l.log.LogAttrs(context.Background(), slog.LevelWarn, l.msg, attrs...)
	l.dropped = 0
}

// stop reports what is held back now, instead of at the end of the window,
// and lets every later line through (there are few once the server has
// stopped accepting).
func (l *logLimiter) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop() // a report already waiting on l.mu then finds nothing
		l.timer = nil
	}
	l.stopped = true
	l.reportLocked()
}
