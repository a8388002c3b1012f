package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// A lock is a key created only if it does not exist (If-None-Match: *)
// and bound to a lease that its holder keeps alive: the holder releases it
// by revoking the lease, and a holder that dies loses it when the lease's
// TTL runs out. Waiters watch the key and try again when it is deleted or
// expires; they do not poll. The key's version when it was created is the
// lock's revision: it grows with every new holder, so a resource can
// refuse a holder whose revision is older than one it has seen (fencing).

// DefaultLockTTL is the TTL of a lock's lease when none is given.
const DefaultLockTTL = 15 * time.Second

// Lock is a lock held by this client.
type Lock struct {
	Key      string // the lock's key
	Revision int64  // the version of the key this holder created: the fencing token
	LeaseID  int64

	c      *Client
	ctx    context.Context // canceled when the lock is lost or released
	cancel context.CancelCauseFunc
	done   chan struct{} // the keep-alive loop has ended
	once   sync.Once
}

// ErrLockLost means a lock's lease could not be kept alive: another holder
// may have it now.
var ErrLockLost = errors.New("kvs: lock lost")

// Lock waits until it holds the lock key, keeping its lease of ttl
// (0: DefaultLockTTL) alive until Unlock. It returns when ctx ends first.
func (c *Client) Lock(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	if ttl == 0 {
		ttl = DefaultLockTTL
	}
	if err := kvs.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := kvs.CheckTTL(ttl); err != nil {
		return nil, err
	}
	for {
		ls, err := c.Grant(ctx, ttl, "")
		if err != nil {
			return nil, fmt.Errorf("lock %q: %w", key, err)
		}
		v, err := c.PutLease(ctx, key, []byte(fmt.Sprintf("lease %d", ls.ID)), kvs.Cond{CreateOnly: true}, ls.ID)
		if err == nil {
			l := &Lock{Key: key, Revision: v, LeaseID: ls.ID, c: c, done: make(chan struct{})}
			l.ctx, l.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
			go l.keepAlive(ttl)
			return l, nil
		}
		_ = c.Revoke(context.WithoutCancel(ctx), ls.ID) // unused
		if !errors.Is(err, kvs.ErrPrecondition) {
			return nil, fmt.Errorf("lock %q: %w", key, err)
		}
		if err := c.waitGone(ctx, key); err != nil {
			return nil, fmt.Errorf("lock %q: %w", key, err)
		}
	}
}

// waitGone returns once key is deleted or expired (or does not exist).
func (c *Client) waitGone(ctx context.Context, key string) error {
	e, err := c.Get(ctx, key)
	if errors.Is(err, kvs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	w, err := c.WatchWith(ctx, WatchRequest{Key: key, After: e.Version, NoValues: true})
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		ev, err := w.Next()
		if err != nil {
			return err
		}
		if ev.Type != kvs.EventPut {
			return nil
		}
	}
}

// keepAlive renews the lease every third of its TTL until the lock is
// released, or loses the lock when the lease cannot be renewed in time.
func (l *Lock) keepAlive(ttl time.Duration) {
	defer close(l.done)
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(l.ctx, ttl/3)
		_, err := l.c.KeepAlive(ctx, l.LeaseID)
		cancel()
		switch {
		case err == nil:
			last = time.Now()
		case errors.Is(err, kvs.ErrLeaseNotFound), time.Since(last) >= ttl:
			l.cancel(fmt.Errorf("%w: %q: the lease could not be kept alive: %w", ErrLockLost, l.Key, err))
			return
		}
	}
}

// Context is canceled when the lock is lost (context.Cause says why) or
// released: work done under the lock should stop then.
func (l *Lock) Context() context.Context { return l.ctx }

// Unlock releases the lock: it stops the keep-alive and revokes the lease,
// which deletes the key.
func (l *Lock) Unlock(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		l.cancel(errors.New("lock released"))
		<-l.done
		if rerr := l.c.Revoke(ctx, l.LeaseID); rerr != nil && !errors.Is(rerr, kvs.ErrLeaseNotFound) {
			err = fmt.Errorf("unlock %q: %w", l.Key, rerr)
		}
	})
	return err
}
