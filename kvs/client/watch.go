package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

var _ kvs.Watcher = (*Client)(nil)

// WatchRequest says what to watch.
type WatchRequest struct {
	Prefix   string // the keys starting with Prefix...
	Key      string // ...or this one key, when set
	After    int64  // changes after this revision; kvs.WatchFromNow for only later ones
	NoValues bool   // leave the values out of the events
}

// reconnectPause is how long a watch waits before it reconnects after its
// stream broke.
const reconnectPause = 500 * time.Millisecond

// Watch implements kvs.Watcher over GET /v1/watch (server-sent events).
func (c *Client) Watch(ctx context.Context, prefix string, after int64) (kvs.EventStream, error) {
	return c.WatchWith(ctx, WatchRequest{Prefix: prefix, After: after})
}

// WatchWith opens a watch. When the stream breaks (the server restarts, the
// network fails) it reconnects by itself and resumes after the last
// revision it delivered, so nothing is missed or repeated; errors the
// server answers (403, 410 Gone as a *kvs.CompactedError, a bad request)
// and kvs.ErrWatchDropped end it.
func (c *Client) WatchWith(ctx context.Context, req WatchRequest) (*Watch, error) {
	if req.Key != "" {
		if err := kvs.ValidateKey(req.Key); err != nil {
			return nil, err
		}
	} else if err := kvs.CheckList(req.Prefix, ""); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watch{c: c, ctx: ctx, cancel: cancel, req: req, last: req.After}
	if err := w.connect(); err != nil {
		cancel()
		return nil, err
	}
	return w, nil
}

// Watch is an open watch of a Client.
type Watch struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	req    WatchRequest
	last   int64 // the revision delivered last, or where the watch started
	body   io.ReadCloser
	rd     *bufio.Reader
}

// Last returns the revision of the last change delivered, or the revision
// the watch started after: the After of a watch that resumes.
func (w *Watch) Last() int64 { return w.last }

func (w *Watch) connect() error {
	q := url.Values{}
	if w.req.Key != "" {
		q.Set("key", w.req.Key)
	} else {
		q.Set("prefix", w.req.Prefix)
	}
	if w.last != kvs.WatchFromNow {
		q.Set("rev", strconv.FormatInt(w.last, 10))
	}
	if w.req.NoValues {
		q.Set("values", "false")
	}
	resp, err := w.c.send(w.ctx, w.c.stream, http.MethodGet, w.c.url(kvs.WatchPath, q), nil, http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		return watchErr(err, w.last)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return fmt.Errorf("watch: the server answered %q, not an event stream", ct)
	}
	if w.last == kvs.WatchFromNow {
		rev, err := strconv.ParseInt(resp.Header.Get(kvs.HeaderRevision), 10, 64)
		if err != nil {
			resp.Body.Close()
			return errors.New("watch: the server did not say the revision the watch starts after")
		}
		w.last = rev
	}
	w.body, w.rd = resp.Body, bufio.NewReader(resp.Body)
	return nil
}

// watchErr turns the server's answers to a watch into the kvs errors.
func watchErr(err error, after int64) error {
	var se *StatusError
	if errors.As(err, &se) {
		switch {
		case se.Code == http.StatusGone:
			return &kvs.CompactedError{Requested: after, Oldest: se.Oldest}
		case se.Code == http.StatusBadRequest && strings.HasPrefix(se.Message, strings.TrimPrefix(kvs.ErrFutureRevision.Error(), "kvs: ")):
			return fmt.Errorf("%w: %w", kvs.ErrFutureRevision, err)
		}
	}
	return err
}

// Next returns the next change. It reconnects when the stream breaks.
func (w *Watch) Next() (kvs.Event, error) {
	for {
		if w.rd == nil {
			select {
			case <-w.ctx.Done():
				return kvs.Event{}, w.ctx.Err()
			case <-time.After(reconnectPause):
			}
			if err := w.connect(); err != nil {
				if w.ctx.Err() != nil {
					return kvs.Event{}, w.ctx.Err()
				}
				var se *StatusError
				if errors.As(err, &se) || errors.Is(err, kvs.ErrCompacted) || errors.Is(err, kvs.ErrFutureRevision) ||
					errors.Is(err, ErrRejected) || errors.Is(err, ErrUntrustedServer) {
					return kvs.Event{}, err
				}
				continue // the server is not back yet
			}
		}
		typ, data, err := w.read()
		if err != nil {
			w.body.Close()
			w.body, w.rd = nil, nil
			if w.ctx.Err() != nil {
				return kvs.Event{}, w.ctx.Err()
			}
			continue
		}
		switch typ {
		case "error":
			var e kvs.ErrorResponse
			_ = json.Unmarshal(data, &e)
			w.body.Close()
			w.body, w.rd = nil, nil
			return kvs.Event{}, fmt.Errorf("%w: %s", kvs.ErrWatchDropped, e.Error)
		case string(kvs.EventPut), string(kvs.EventDelete), string(kvs.EventExpire):
			var e kvs.Event
			if err := json.Unmarshal(data, &e); err != nil {
				return kvs.Event{}, fmt.Errorf("watch: bad event from the server: %w", err)
			}
			if e.Version < w.last {
				continue // never twice (a transaction's changes share one revision)
			}
			if e.Type == kvs.EventPut && e.Value == nil && !w.req.NoValues {
				e.Value = []byte{}
			}
			w.last = e.Version
			return e, nil
		}
	}
}

// read returns the next event of the stream (its type and data), skipping
// comments.
func (w *Watch) read() (string, []byte, error) {
	var typ string
	var data []byte
	for {
		line, err := w.rd.ReadBytes('\n')
		if err != nil {
			return "", nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if typ != "" || data != nil {
				return typ, data, nil
			}
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("event:")):
			typ = strings.TrimSpace(string(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}

// Close ends the watch.
func (w *Watch) Close() error {
	w.cancel()
	if w.body != nil {
		w.body.Close()
	}
	return nil
}
