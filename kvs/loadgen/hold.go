package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/kvsctl/kvsctl/kvs/client"
)

// HoldConfig describes a set of idle connections to open.
type HoldConfig struct {
	Client   client.Config // server, TLS files, HTTP2
	Conns    int           // connections to open
	Parallel int           // handshakes in flight at once; 0 means 64
}

// Held is a set of open, idle mutual-TLS connections.
type Held struct {
	clients []*client.Client
}

// Hold opens cfg.Conns connections, each through a client of its own, and
// sends one health request on each so the server has taken every
// connection past the handshake and into its idle keep-alive state (a
// connection that never sends a request is closed after the server's
// ReadHeaderTimeout). The connections stay open until Close.
func Hold(ctx context.Context, cfg HoldConfig) (*Held, error) {
	if cfg.Conns <= 0 {
		return nil, fmt.Errorf("hold: want a positive number of connections, not %d", cfg.Conns)
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 64
	}
	tlsCfg, err := sharedTLS(cfg.Client)
	if err != nil {
		return nil, err
	}
	cc := cfg.Client
	cc.NewConn, cc.MaxIdle, cc.TLSConfig, cc.TLSConfigFunc = false, 1, nil, tlsCfg
	h := &Held{clients: make([]*client.Client, cfg.Conns)}
	for i := range h.clients {
		c, err := client.New(cc)
		if err != nil {
			return nil, err
		}
		h.clients[i] = c
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range min(cfg.Parallel, cfg.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(h.clients) || ctx.Err() != nil {
					return
				}
				if err := h.clients[i].Ping(ctx); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("hold: connection %d: %w", i+1, err)
					}
					mu.Unlock()
					next.Store(int64(len(h.clients)))
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		h.Close()
		return nil, firstErr
	}
	return h, nil
}

// Len returns the number of connections held.
func (h *Held) Len() int { return len(h.clients) }

// Close closes every connection.
func (h *Held) Close() {
	for _, c := range h.clients {
		c.Close()
	}
}
