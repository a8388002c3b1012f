package pki

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ClientTLS is the TLS side of a long-running client built from Files:
// [ClientTLS.Config] returns the configuration for a new connection, with
// the certificate, key and CA bundle as they are on disk. The files are
// checked at most once per CheckEvery; when they changed and load cleanly,
// new connections use them, so a client picks up a renewed certificate or
// a rotated trust bundle without a restart. A broken set of files keeps the
// previous configuration until it changes again. Connections already open
// are not touched.
type ClientTLS struct {
	files Files
	opts  TLSOptions
	// CheckEvery is how often the files are compared; 0 means a second.
	CheckEvery time.Duration

	mu      sync.Mutex // taken to check the files
	cur     atomic.Pointer[tls.Config]
	stamp   string
	checked atomic.Int64 // unix nanoseconds of the last check
	err     error        // of the last failed reload, nil after a good one
}

// NewClientTLS loads the files once (an error here is final) and returns
// a ClientTLS that reloads them when they change.
func (f Files) NewClientTLS(o TLSOptions) (*ClientTLS, error) {
	c := &ClientTLS{files: f, opts: o}
	cfg, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cur.Store(cfg)
	c.stamp = c.filesStamp()
	c.checked.Store(time.Now().UnixNano())
	return c, nil
}

// Config returns the configuration for a new connection. It is shared: do
// not modify it (clone it first).
//
// It is cheap enough to call for every request: between checks it is an
// atomic load.
func (c *ClientTLS) Config() *tls.Config {
	every := c.CheckEvery
	if every <= 0 {
		every = time.Second
	}
	now := time.Now().UnixNano()
	if now-c.checked.Load() < int64(every) {
		return c.cur.Load()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now-c.checked.Load() < int64(every) {
		return c.cur.Load()
	}
	c.checked.Store(now)
	st := c.filesStamp()
	if st == c.stamp {
		return c.cur.Load()
	}
	c.stamp = st // a broken set is not retried until it changes again
	cfg, err := c.load()
	if err != nil {
		c.err = err
		return c.cur.Load()
	}
	c.cur.Store(cfg)
	c.err = nil
	return cfg
}

// Err is the error of the last reload that failed, or nil once a reload
// has succeeded since.
func (c *ClientTLS) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// load builds a configuration from the files. Each has a session cache of
// its own: a session resumed from one made with the previous certificate
// would present the previous identity to the server.
func (c *ClientTLS) load() (*tls.Config, error) {
	return c.files.ClientConfig(c.opts)
}

// filesStamp identifies the state of the files: size and modification time
// of each.
func (c *ClientTLS) filesStamp() string {
	var b strings.Builder
	for _, p := range []string{c.files.Cert, c.files.Key, c.files.CA} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", p)
		}
	}
	return b.String()
}
