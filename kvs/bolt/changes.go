package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/kvsctl/kvsctl/kvs"
)

// The change log: bucket "changes" maps each change, by its revision
// (big-endian uint64) and its place within the revision (big-endian uint32:
// a transaction's writes share one revision), to a record of the change written in the same transaction as the change
// itself: the event type (1 byte: 'p', 'd' or 'e'), the time of the change
// (big-endian Unix nanoseconds), the key length (big-endian uint16), the
// key, and for a put the value. The meta key "compacted" holds the
// revision up to which changes were pruned (absent: 0). bolt has one
// writer at a time, so revisions commit in order and the head is the
// store revision.
const (
	boltBucketChanges = "changes"
	boltCompactedKey  = "compacted"
	changeHeaderLen   = 1 + 8 + 2
)

var eventCodes = map[kvs.EventType]byte{kvs.EventPut: 'p', kvs.EventDelete: 'd', kvs.EventExpire: 'e'}

// logChange appends change n of revision rev to the log of tx.
func logChange(tx *bbolt.Tx, rev uint64, n uint32, typ kvs.EventType, key string, value []byte, now time.Time) error {
	rec := make([]byte, changeHeaderLen+len(key)+len(value))
	rec[0] = eventCodes[typ]
	binary.BigEndian.PutUint64(rec[1:9], uint64(now.UnixNano()))
	binary.BigEndian.PutUint16(rec[9:11], uint16(len(key)))
	copy(rec[changeHeaderLen:], key)
	copy(rec[changeHeaderLen+len(key):], value)
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k[0:8], rev)
	binary.BigEndian.PutUint32(k[8:12], n)
	return tx.Bucket([]byte(boltBucketChanges)).Put(k, rec)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// parseChange decodes a change record.
func parseChange(k, rec []byte) (kvs.Event, time.Time, error) {
	if len(k) < 8 || len(rec) < changeHeaderLen {
		return kvs.Event{}, time.Time{}, fmt.Errorf("corrupt change record (%d bytes)", len(rec))
	}
	kl := int(binary.BigEndian.Uint16(rec[9:11]))
	if len(rec) < changeHeaderLen+kl {
		return kvs.Event{}, time.Time{}, fmt.Errorf("corrupt change record (%d bytes)", len(rec))
	}
	e := kvs.Event{Version: int64(binary.BigEndian.Uint64(k[0:8])), Key: string(rec[changeHeaderLen : changeHeaderLen+kl])}
	switch rec[0] {
	case 'p':
		e.Type = kvs.EventPut
		e.Value = bytes.Clone(rec[changeHeaderLen+kl:])
		if e.Value == nil {
			e.Value = []byte{}
		}
	case 'd':
		e.Type = kvs.EventDelete
	case 'e':
		e.Type = kvs.EventExpire
	default:
		return kvs.Event{}, time.Time{}, fmt.Errorf("corrupt change record (type %q)", rec[0])
	}
	return e, time.Unix(0, int64(binary.BigEndian.Uint64(rec[1:9]))), nil
}

var _ kvs.ChangeLog = (*Store)(nil)
var _ kvs.Watcher = (*Store)(nil)

// Changes implements kvs.ChangeLog.
func (s *Store) Changes(ctx context.Context, prefix string, after int64, limit int) ([]kvs.Event, int64, error) {
	if err := kvs.CheckList(prefix, ""); err != nil {
		return nil, 0, err
	}
	if err := kvs.CtxErr(ctx, "bolt changes"); err != nil {
		return nil, 0, err
	}
	if limit < 1 {
		limit = kvs.MaxPageSize
	}
	var (
		out  []kvs.Event
		next int64
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		out = nil
		head := int64(tx.Bucket([]byte(boltBucketMeta)).Sequence())
		compacted := compactedOf(tx)
		switch {
		case after < compacted:
			return &kvs.CompactedError{Requested: after, Oldest: compacted}
		case after > head:
			return fmt.Errorf("%w: %d is after the current revision %d", kvs.ErrFutureRevision, after, head)
		}
		next = head
		ch := tx.Bucket([]byte(boltBucketChanges))
		if ch == nil {
			return nil
		}
		c := ch.Cursor()
		full := int64(-1) // the revision of the last change once the page is full
		for k, rec := c.Seek(u64(uint64(after) + 1)); k != nil; k, rec = c.Next() {
			if full >= 0 && int64(binary.BigEndian.Uint64(k[0:8])) != full {
				break // a page never ends inside a revision
			}
			if len(rec) >= changeHeaderLen {
				kl := int(binary.BigEndian.Uint16(rec[9:11]))
				if len(rec) >= changeHeaderLen+kl && !bytes.HasPrefix(rec[changeHeaderLen:changeHeaderLen+kl], []byte(prefix)) {
					continue
				}
			}
			e, _, err := parseChange(k, rec)
			if err != nil {
				return err
			}
			out = append(out, e)
			if len(out) >= limit {
				next, full = e.Version, e.Version
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, kvs.ErrCompacted) || errors.Is(err, kvs.ErrFutureRevision) {
			return nil, 0, err
		}
		return nil, 0, boltErr("bolt changes", err)
	}
	return out, next, nil
}

func compactedOf(tx *bbolt.Tx) int64 {
	if v := tx.Bucket([]byte(boltBucketMeta)).Get([]byte(boltCompactedKey)); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// Head implements kvs.ChangeLog.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := kvs.CtxErr(ctx, "bolt head"); err != nil {
		return 0, err
	}
	var head int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		head = int64(tx.Bucket([]byte(boltBucketMeta)).Sequence())
		return nil
	})
	return head, boltErr("bolt head", err)
}

// WaitHead implements kvs.ChangeLog.
func (s *Store) WaitHead(ctx context.Context, after int64) (int64, error) {
	for {
		wake := s.changed.wait() // before reading the head: no wake-up lost
		h, err := s.Head(ctx)
		if err != nil || h > after {
			return h, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bolt wait: %w", ctx.Err())
		case <-wake:
		}
	}
}

// Watch implements kvs.Watcher.
func (s *Store) Watch(ctx context.Context, prefix string, after int64) (kvs.EventStream, error) {
	return kvs.PollWatch(ctx, s, prefix, after)
}

// Prune implements kvs.ChangeLog.
func (s *Store) Prune(ctx context.Context, r kvs.Retention) (int64, error) {
	if err := kvs.CtxErr(ctx, "bolt prune"); err != nil {
		return 0, err
	}
	var compacted int64
	err := s.update(func(tx *bbolt.Tx) error {
		compacted = compactedOf(tx)
		ch := tx.Bucket([]byte(boltBucketChanges))
		head := tx.Bucket([]byte(boltBucketMeta)).Sequence()
		var upTo uint64 // prune revisions <= upTo
		if r.Revisions > 0 {
			// Keep the last r.Revisions changes.
			c := ch.Cursor()
			n := int64(0)
			for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
				n++
				if n > r.Revisions {
					upTo = binary.BigEndian.Uint64(k[0:8])
					break
				}
			}
		}
		if r.Age > 0 {
			cutoff := s.now().Add(-r.Age)
			c := ch.Cursor()
			for k, rec := c.First(); k != nil; k, rec = c.Next() {
				_, at, err := parseChange(k, rec)
				if err != nil || !at.Before(cutoff) {
					break
				}
				upTo = max(upTo, binary.BigEndian.Uint64(k[0:8]))
			}
		}
		if upTo == 0 || int64(upTo) <= compacted {
			return nil
		}
		upTo = min(upTo, head)
		c := ch.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k[0:8]) <= upTo; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		compacted = int64(upTo)
		return tx.Bucket([]byte(boltBucketMeta)).Put([]byte(boltCompactedKey), u64(upTo))
	})
	return compacted, boltErr("bolt prune", err)
}

// notifier wakes the waiters of the head after every commit.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
	n.mu.Unlock()
}
