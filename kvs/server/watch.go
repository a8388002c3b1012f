package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/policy"
)

// Defaults of the watch settings of a Config.
const (
	DefaultWatchHeartbeat    = 15 * time.Second
	DefaultWatchBuffer       = 256
	DefaultWatchWriteTimeout = 10 * time.Second
	DefaultWatchPrune        = 30 * time.Second
	// MaxWait is the longest wait of a long poll (GET /v1/kv?wait=).
	MaxWait = 10 * time.Minute
	// DefaultWait is the wait of a long poll that gives an index but no
	// wait.
	DefaultWait = 5 * time.Minute
)

// errNoChangeLog answers a watch on a store without a change log.
var errNoChangeLog = errors.New("this store keeps no change log: watches are not available")

// checkParams refuses query parameters outside allowed.
func checkParams(q url.Values, allowed ...string) error {
	for name := range q {
		found := false
		for _, a := range allowed {
			found = found || a == name
		}
		if !found {
			return badRequest{fmt.Sprintf("unknown parameter %q: this endpoint takes %s", name, strings.Join(allowed, ", "))}
		}
	}
	return nil
}

// parseRev reads a revision parameter: "" is def.
func parseRev(name, s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, badRequest{name + " must be a revision, a number >= 0"}
	}
	return v, nil
}

// watchError maps the errors of opening a watch: a compacted revision is
// 410 Gone with the oldest revision to resume after.
func (s *Server) watchError(w http.ResponseWriter, op string, err error) (int, int) {
	var ce *kvs.CompactedError
	switch {
	case errors.As(err, &ce):
		return http.StatusGone, writeJSON(w, http.StatusGone, kvs.CompactedResponse{
			Error:  fmt.Sprintf("revision %d is compacted: changes are kept after revision %d; list the keys again and watch from there", ce.Requested, ce.Oldest),
			Oldest: ce.Oldest,
		})
	case errors.Is(err, kvs.ErrFutureRevision):
		return s.fail(w, op, badRequest{strings.TrimPrefix(err.Error(), "kvs: ")})
	case errors.Is(err, errNoChangeLog):
		return http.StatusNotImplemented, writeError(w, http.StatusNotImplemented, err.Error())
	}
	return s.fail(w, op, err)
}

// handleWatch serves GET /v1/watch?prefix=P|key=K&rev=N&values=false as
// server-sent events.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	prefix, key := q.Get("prefix"), q.Get("key")
	target := prefix
	if key != "" {
		target = key
	}
	var identity string
	status, n := func() (int, int) {
		if err := checkParams(q, "prefix", "key", "rev", "values"); err != nil {
			return s.fail(w, "watch", err)
		}
		if q.Has("prefix") && q.Has("key") {
			return s.fail(w, "watch", badRequest{"give prefix or key, not both"})
		}
		if key != "" || q.Has("key") {
			if err := kvs.ValidateKey(key); err != nil {
				return s.fail(w, "watch", err)
			}
		} else if err := kvs.CheckList(prefix, ""); err != nil {
			return s.fail(w, "watch", err)
		}
		revText := q.Get("rev")
		if revText == "" {
			revText = r.Header.Get("Last-Event-ID") // an EventSource reconnecting
		}
		after, err := parseRev("rev", revText, kvs.WatchFromNow)
		if err != nil {
			return s.fail(w, "watch", err)
		}
		values := true
		switch v := q.Get("values"); v {
		case "", "true":
		case "false":
			values = false
		default:
			return s.fail(w, "watch", badRequest{"values must be true or false"})
		}
		if identity, err = s.authorize(r, policy.OpRead, target); err != nil {
			return s.fail(w, "watch", err)
		}
		if s.hub == nil {
			return s.watchError(w, "watch", errNoChangeLog)
		}
		s.hub.start(s.watchCtx)
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(s.watchCtx, cancel) // the server shuts down
		defer stop()
		sub, err := s.hub.watch(ctx, target, key != "", after)
		if err != nil {
			return s.watchError(w, "watch", err)
		}
		defer sub.close()
		return s.stream(w, r, sub, values)
	}()
	s.finish(r, "watch", target, identity, status, n, start)
}

// stream writes the changes of sub as server-sent events until the client
// goes, the server stops, or the watch is dropped.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sub *sub, values bool) (int, int) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // a stream outlives ReadTimeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(kvs.HeaderRevision, strconv.FormatInt(sub.last, 10))
	s.metrics.watchers.Inc()
	defer s.metrics.watchers.Dec()

	total := 0
	write := func(b []byte, flush bool) error {
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WatchWriteTimeout))
		n, err := w.Write(b)
		total += n
		if err == nil && flush {
			err = rc.Flush()
		}
		return err
	}
	w.WriteHeader(http.StatusOK)
	if err := write([]byte(": watching from revision "+strconv.FormatInt(sub.last, 10)+"\n\n"), true); err != nil {
		return http.StatusOK, total
	}
	tick := time.NewTicker(s.cfg.WatchHeartbeat)
	defer tick.Stop()
	buf := make([]byte, 0, 512)
	for {
		e, err := sub.next(tick.C)
		switch {
		case errors.Is(err, kvs.ErrWatchDropped):
			s.log.Warn("watch dropped: the client does not read fast enough", "peer", r.RemoteAddr, "prefix", sub.prefix,
				"buffer", s.cfg.WatchBuffer, "last_revision", sub.last)
			msg, _ := json.Marshal(kvs.ErrorResponse{Error: fmt.Sprintf(
				"watch dropped: the client fell more than %d changes behind; resume after revision %d", s.cfg.WatchBuffer, sub.last)})
			_ = write(append(append([]byte("event: error\ndata: "), msg...), "\n\n"...), true)
			return http.StatusOK, total
		case err != nil:
			return http.StatusOK, total // the client went or the server stops
		case e == nil:
			if err := write([]byte(": heartbeat\n\n"), true); err != nil {
				return http.StatusOK, total
			}
			continue
		}
		ev := *e
		if !values {
			ev.Value = nil
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return http.StatusOK, total
		}
		buf = append(buf[:0], "id: "...)
		buf = strconv.AppendInt(buf, ev.Version, 10)
		buf = append(buf, "\nevent: "...)
		buf = append(buf, ev.Type...)
		buf = append(buf, "\ndata: "...)
		buf = append(buf, data...)
		buf = append(buf, "\n\n"...)
		if err := write(buf, !sub.more()); err != nil {
			if sub.dropped() { // counted as a slow reader
				s.log.Warn("watch dropped: the client does not read fast enough", "peer", r.RemoteAddr, "prefix", sub.prefix,
					"buffer", s.cfg.WatchBuffer, "last_revision", sub.last)
				return http.StatusOK, total
			}
			s.metrics.watchDropped.WithLabelValues("write_timeout").Inc()
			s.log.Warn("watch dropped: writing to the client timed out or failed", "peer", r.RemoteAddr, "prefix", sub.prefix,
				"timeout", s.cfg.WatchWriteTimeout, "err", err)
			return http.StatusOK, total
		}
		s.metrics.watchEvents.Inc()
	}
}

// longPoll answers GET /v1/kv?prefix=P&index=N&wait=D: once a change under
// P after revision N is known, or when D has passed, it lists the keys as
// GET /v1/kv does, with the revision to wait after next in Kvs-Index.
// Without index it answers at once with the current index.
func (s *Server) longPoll(w http.ResponseWriter, r *http.Request, prefix, after string, limit int) (int, int) {
	q := r.URL.Query()
	index, err := parseRev("index", q.Get("index"), kvs.WatchFromNow)
	if err != nil {
		return s.fail(w, "list", err)
	}
	wait := DefaultWait
	if ws := q.Get("wait"); ws != "" {
		if wait, err = time.ParseDuration(ws); err != nil || wait <= 0 || wait > MaxWait {
			return s.fail(w, "list", badRequest{fmt.Sprintf("wait must be a duration from 1ms to %s, like 30s", MaxWait)})
		}
	}
	if s.hub == nil {
		return s.watchError(w, "list", errNoChangeLog)
	}
	s.hub.start(s.watchCtx)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.watchCtx, cancel)
	defer stop()
	sub, err := s.hub.watch(ctx, prefix, false, index)
	if err != nil {
		return s.watchError(w, "list", err)
	}
	defer sub.close()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(wait + s.cfg.WriteTimeout))
	if index != kvs.WatchFromNow {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		e, err := sub.next(timer.C)
		if err != nil && ctx.Err() != nil {
			return http.StatusServiceUnavailable, writeError(w, http.StatusServiceUnavailable, "request canceled")
		}
		if e != nil {
			for sub.more() { // take what else is ready, for the index
				if _, err := sub.next(nil); err != nil {
					break
				}
			}
		}
	}
	keys, next, err := s.cfg.Store.List(r.Context(), prefix, after, limit)
	if err != nil {
		return s.fail(w, "list", err)
	}
	if keys == nil {
		keys = []kvs.KeyInfo{}
	}
	w.Header().Set(kvs.HeaderIndex, strconv.FormatInt(sub.last, 10))
	return http.StatusOK, writeJSON(w, http.StatusOK, kvs.ListResponse{Keys: keys, Next: next})
}
