package kvs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// EventType says what a change did to its key.
type EventType string

// The types of change.
const (
	EventPut    EventType = "put"    // the key was written
	EventDelete EventType = "delete" // the key was deleted
	EventExpire EventType = "expire" // the key's TTL or lease ran out and the store deleted it
)

// Event is one change of one key, as a watch delivers it.
type Event struct {
	Type    EventType `json:"type"`
	Key     string    `json:"key"`
	Version int64     `json:"version"`         // the store revision of the change
	Value   []byte    `json:"value,omitempty"` // the value written (puts only; base64 in JSON)
}

// Errors of change logs and watches.
var (
	// ErrCompacted means the changes a watch asked for are no longer
	// kept (see Retention); a *CompactedError says from where they are.
	ErrCompacted = errors.New("kvs: revision compacted")
	// ErrFutureRevision means a watch asked to resume after a revision
	// the store has not reached.
	ErrFutureRevision = errors.New("kvs: revision in the future")
	// ErrWatchDropped means the server ended a watch because its reader
	// fell too far behind.
	ErrWatchDropped = errors.New("kvs: watch dropped by the server")
)

// CompactedError is ErrCompacted with the oldest revision a watch may still
// resume after.
type CompactedError struct {
	Requested int64 // the revision asked for
	Oldest    int64 // changes after Oldest are kept; a watch may resume after any revision >= Oldest
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("kvs: changes after revision %d are no longer kept: the oldest revision to resume after is %d", e.Requested, e.Oldest)
}

// Is makes errors.Is(err, ErrCompacted) hold.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// WatchFromNow, as the after of a watch, starts it at the store's current
// revision: it delivers only changes made later.
const WatchFromNow int64 = -1

// ChangeLog is implemented by stores that keep a log of their changes: every
// Put, Delete and expiry is recorded, with its revision, in the same
// transaction as the change itself. The log is the source of watches.
//
// The log's head is the revision up to which it is complete: every change
// with a revision at most head is readable, and no change with a lower
// revision can appear later (a write that drew a lower revision but has not
// committed yet holds the head back). So a reader that has read up to head
// misses nothing by continuing after it.
type ChangeLog interface {
	// Changes returns, in revision order, at most limit (< 1:
	// MaxPageSize) changes of keys starting with prefix whose revisions
	// are greater than after, and next, the revision to pass as after to
	// read on: the head when fewer than limit changes were returned, else
	// the revision of the last one. It returns a *CompactedError when
	// changes after after are no longer kept, and ErrFutureRevision when
	// after is beyond the head.
	Changes(ctx context.Context, prefix string, after int64, limit int) (events []Event, next int64, err error)

	// Head returns the log's head.
	Head(ctx context.Context) (int64, error)

	// WaitHead returns as soon as the head may be greater than after, or
	// the context's error when ctx ends first. What it returns is a hint:
	// a revision drawn but not yet committed counts; Changes says what is
	// settled.
	WaitHead(ctx context.Context, after int64) (int64, error)

	// Prune forgets the changes that r no longer keeps and returns the
	// revision up to which changes are forgotten (the Oldest of a
	// CompactedError).
	Prune(ctx context.Context, r Retention) (int64, error)
}

// Retention says how much history a change log keeps: the changes of the
// last Age, or the last Revisions changes; both zero keeps everything.
type Retention struct {
	Age       time.Duration
	Revisions int64
}

// ParseRetention reads a retention: a duration ("24h", "90m") or a number
// of changes ("100000").
func ParseRetention(s string) (Retention, error) {
	s = strings.TrimSpace(s)
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		if n < 1 {
			return Retention{}, fmt.Errorf("retention %q: want a positive number of changes or a duration", s)
		}
		return Retention{Revisions: n}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Retention{}, fmt.Errorf("retention %q: want a duration like 24h or a number of changes like 100000", s)
	}
	return Retention{Age: d}, nil
}

// String formats r the way ParseRetention reads it.
func (r Retention) String() string {
	switch {
	case r.Revisions > 0:
		return fmt.Sprint(r.Revisions)
	case r.Age > 0:
		return r.Age.String()
	}
	return "unlimited"
}

// Watcher is implemented by stores that can stream their changes: the
// stores in kvs/bolt and kvs/postgres (through PollWatch) and the HTTP
// client (server-sent events).
type Watcher interface {
	// Watch streams the changes of keys starting with prefix whose
	// revisions are greater than after (WatchFromNow: from the current
	// revision), in revision order, each once. It returns a
	// *CompactedError or ErrFutureRevision as Changes does; later errors
	// come from the stream's Next.
	Watch(ctx context.Context, prefix string, after int64) (EventStream, error)
}

// EventStream is an open watch.
type EventStream interface {
	// Next blocks until the next change and returns it, or returns an
	// error: the watch's context ended, the store failed, or
	// ErrWatchDropped.
	Next() (Event, error)
	// Close ends the watch. It is safe to call more than once.
	Close() error
}

// PollWatch is a Watch on a change log: its stream reads pages of changes
// and, when it has read up to the head, waits for the head to move.
func PollWatch(ctx context.Context, log ChangeLog, prefix string, after int64) (EventStream, error) {
	if err := CheckList(prefix, ""); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &pollStream{ctx: ctx, cancel: cancel, log: log, prefix: prefix}
	if after == WatchFromNow {
		h, err := log.Head(ctx)
		if err != nil {
			cancel()
			return nil, err
		}
		after = h
	}
	// Check the revision now, so that a bad one fails the Watch itself.
	evs, next, err := log.Changes(ctx, prefix, after, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	p.buf, p.cursor = evs, next
	return p, nil
}

type pollStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    ChangeLog
	prefix string
	cursor int64
	buf    []Event
}

func (p *pollStream) Next() (Event, error) {
	for len(p.buf) == 0 {
		if _, err := p.log.WaitHead(p.ctx, p.cursor); err != nil {
			return Event{}, err
		}
		evs, next, err := p.log.Changes(p.ctx, p.prefix, p.cursor, 0)
		if err != nil {
			return Event{}, err
		}
		p.buf, p.cursor = evs, next
	}
	e := p.buf[0]
	p.buf = p.buf[1:]
	return e, nil
}

func (p *pollStream) Close() error {
	p.cancel()
	return nil
}
