package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// The hub serves every watch of a server from one reader of the store's
// change log, whatever the number of watchers: it follows the head
// (ChangeLog.WaitHead, then Changes from its last revision), keeps the
// latest hubRing changes in memory and hands each change to the watchers
// whose prefix covers it. A watcher that resumes from an older revision
// first reads the log itself, page by page, until it reaches what the ring
// holds, and then joins; joining happens under the hub's lock, so that
// nothing falls between the log and the ring. Each watcher has a buffer of
// Config.WatchBuffer changes; one whose reader does not keep up is dropped
// (its stream ends with ErrWatchDropped), so the server never buffers
// without limit. Several servers on one database each have their hub, all
// reading the same log, so a change made through one reaches the watchers
// of every other.
const (
	hubRing       = 8192
	hubPage       = kvs.MaxPageSize
	hubRetryPause = 500 * time.Millisecond
	// hubMinInterval spaces the reads of the log: on PostgreSQL each
	// settles the head under a lock that makes new writes wait for the
	// ones in flight, so under a stream of writes one read every few
	// milliseconds takes many changes at once (kvsctl's PUT throughput
	// with 100 watchers: see docs/performance.md, Watch).
	hubMinInterval = 5 * time.Millisecond
)

type hub struct {
	log     kvs.ChangeLog
	logger  *slog.Logger
	buffer  int
	dropped func() // counts a dropped watcher

	mu      sync.Mutex
	started bool
	ready   chan struct{} // closed once head and floor are known
	err     error         // why the reader could not start
	subs    map[*sub]struct{}
	ring    []*kvs.Event // the latest changes, oldest first
	floor   int64        // the ring holds every change with a revision in (floor, head]
	head    int64
}

func newHub(log kvs.ChangeLog, logger *slog.Logger, buffer int, dropped func()) *hub {
	return &hub{log: log, logger: logger, buffer: buffer, dropped: dropped, subs: map[*sub]struct{}{}, ready: make(chan struct{})}
}

// start runs the reader until ctx ends, once.
func (h *hub) start(ctx context.Context) {
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return
	}
	h.started = true
	h.mu.Unlock()
	go h.run(ctx)
}

func (h *hub) run(ctx context.Context) {
	var head int64
	for {
		var err error
		if head, err = h.log.Head(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			h.mu.Lock()
			h.err = err
			h.mu.Unlock()
			close(h.ready)
			return
		}
		h.logger.Warn("watch: cannot read the head of the change log; retrying", "err", err)
		sleep(ctx, hubRetryPause)
	}
	h.mu.Lock()
	h.head, h.floor = head, head
	h.mu.Unlock()
	close(h.ready)
	var lastRead time.Time
	for ctx.Err() == nil {
		if _, err := h.log.WaitHead(ctx, head); err != nil {
			if ctx.Err() == nil {
				h.logger.Warn("watch: waiting for changes failed; retrying", "err", err)
				sleep(ctx, hubRetryPause)
			}
			continue
		}
		sleep(ctx, hubMinInterval-time.Since(lastRead))
		for ctx.Err() == nil {
			lastRead = time.Now()
			evs, next, err := h.log.Changes(ctx, "", head, hubPage)
			if err != nil {
				if ctx.Err() == nil {
					h.logger.Warn("watch: reading the change log failed; retrying", "err", err, "after", head)
					if errors.Is(err, kvs.ErrCompacted) {
						// Pruned before this server read it: the watchers
						// cannot be told what they missed.
						h.failAll(err)
						var ce *kvs.CompactedError
						if errors.As(err, &ce) {
							head = ce.Oldest
						}
					}
					sleep(ctx, hubRetryPause)
				}
				break
			}
			h.publish(evs, next)
			head = next
			if len(evs) < hubPage {
				break
			}
		}
	}
	h.failAll(ctx.Err())
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// publish appends a page of changes to the ring and hands them out.
func (h *hub) publish(evs []kvs.Event, next int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range evs {
		e := &evs[i]
		h.ring = append(h.ring, e)
		for s := range h.subs {
			if !s.matches(e.Key) {
				continue
			}
			select {
			case s.ch <- e:
			default:
				h.drop(s, kvs.ErrWatchDropped)
			}
		}
	}
	h.head = max(h.head, next)
	if over := len(h.ring) - hubRing; over > 0 {
		h.floor = h.ring[over-1].Version
		clear(h.ring[:over])
		h.ring = append(h.ring[:0], h.ring[over:]...)
	}
}

// drop ends s with err; h.mu is held.
func (h *hub) drop(s *sub, err error) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	s.err = err
	close(s.gone)
	if errors.Is(err, kvs.ErrWatchDropped) && h.dropped != nil {
		h.dropped()
	}
}

func (h *hub) failAll(err error) {
	if err == nil {
		err = context.Canceled
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		h.drop(s, err)
	}
}

// headNow waits until the reader knows the head and returns it.
func (h *hub) headNow(ctx context.Context) (int64, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.head, h.err
}

// watch opens a watch of prefix (of the one key prefix when exact) after
// revision after (kvs.WatchFromNow: the hub's head). It checks the
// revision against the log first, so that a compacted or future revision
// fails here.
func (h *hub) watch(ctx context.Context, prefix string, exact bool, after int64) (*sub, error) {
	if after == kvs.WatchFromNow {
		head, err := h.headNow(ctx)
		if err != nil {
			return nil, err
		}
		after = head
	} else if _, _, err := h.log.Changes(ctx, prefix, after, 1); err != nil {
		return nil, err
	}
	return &sub{h: h, ctx: ctx, prefix: prefix, exact: exact, cursor: after, skip: after, last: after,
		ch: make(chan *kvs.Event, h.buffer), gone: make(chan struct{})}, nil
}

// sub is one watch.
type sub struct {
	h      *hub
	ctx    context.Context
	prefix string
	exact  bool
	cursor int64 // the revision read up to while catching up (pages end on a revision's last change)
	skip   int64 // revisions up to this were delivered from the log: skip them in the ring and live
	last   int64 // the revision delivered last

	pending  []*kvs.Event // read from the log or copied from the ring, before ch
	attached bool
	ch       chan *kvs.Event
	gone     chan struct{} // closed when the hub dropped the watch; err says why
	err      error
}

func (s *sub) matches(key string) bool {
	if s.exact {
		return key == s.prefix
	}
	return strings.HasPrefix(key, s.prefix)
}

// next returns the next change, or nil when tick fires first (tick may be
// nil), or an error: the context ended, the store failed, or the watch
// was dropped (kvs.ErrWatchDropped).
func (s *sub) next(tick <-chan time.Time) (*kvs.Event, error) {
	for {
		e, err := s.next1(tick)
		if err != nil || e == nil || e.Version > s.skip {
			if e != nil {
				s.last = e.Version
			}
			return e, err
		}
	}
}

func (s *sub) next1(tick <-chan time.Time) (*kvs.Event, error) {
	for len(s.pending) == 0 && !s.attached {
		if err := s.catchUp(); err != nil {
			return nil, err
		}
	}
	if len(s.pending) > 0 {
		e := s.pending[0]
		s.pending = s.pending[1:]
		return e, nil
	}
	select {
	case e := <-s.ch:
		return e, nil
	default:
	}
	select {
	case e := <-s.ch:
		return e, nil
	case <-s.gone:
		return nil, s.err
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	case <-tick:
		return nil, nil
	}
}

// dropped reports whether the hub dropped the watch for falling behind.
func (s *sub) dropped() bool {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return errors.Is(s.err, kvs.ErrWatchDropped)
}

// more reports whether a change is ready to be read without waiting.
func (s *sub) more() bool { return len(s.pending) > 0 || len(s.ch) > 0 }

// catchUp joins the hub when the ring reaches back to the cursor, or else
// reads the next page of the log.
func (s *sub) catchUp() error {
	h := s.h
	select {
	case <-h.ready:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	h.mu.Lock()
	if h.err != nil {
		h.mu.Unlock()
		return h.err
	}
	if s.cursor >= h.floor {
		s.skip = s.cursor
		for _, e := range h.ring {
			if e.Version > s.cursor && s.matches(e.Key) {
				s.pending = append(s.pending, e)
			}
		}
		s.attached = true
		h.subs[s] = struct{}{}
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	evs, next, err := h.log.Changes(s.ctx, s.prefix, s.cursor, hubPage)
	if err != nil {
		return err
	}
	for i := range evs {
		if s.matches(evs[i].Key) {
			s.pending = append(s.pending, &evs[i])
		}
	}
	s.cursor = next
	return nil
}

// close detaches the watch from the hub.
func (s *sub) close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if _, ok := s.h.subs[s]; ok {
		delete(s.h.subs, s)
		close(s.gone)
		s.err = context.Canceled
	}
}
