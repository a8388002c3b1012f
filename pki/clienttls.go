package pki

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"sync"
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
	cache tls.ClientSessionCache
	// CheckEvery is how often the files are compared; 0 means a second.
	CheckEvery time.Duration

	mu      sync.Mutex
	cur     *tls.Config
	stamp   string
	checked time.Time
	err     error // of the last failed reload, nil after a good one
}

// NewClientTLS loads the files once (an error here is final) and returns
// a ClientTLS that reloads them when they change.
func (f Files) NewClientTLS(o TLSOptions) (*ClientTLS, error) {
	c := &ClientTLS{files: f, opts: o}
	if !o.NoResume {
		// One session cache across reloads: a resumed session was
		// verified when it was made.
		c.cache = tls.NewLRUClientSessionCache(256)
	}
	cfg, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cur, c.stamp, c.checked = cfg, c.filesStamp(), time.Now()
	return c, nil
}

// Config returns the configuration for a new connection. It is shared: do
// not modify it (clone it first).
func (c *ClientTLS) Config() *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	every := c.CheckEvery
	if every <= 0 {
		every = time.Second
	}
	if time.Since(c.checked) < every {
		return c.cur
	}
	c.checked = time.Now()
	st := c.filesStamp()
	if st == c.stamp {
		return c.cur
	}
	c.stamp = st // a broken set is not retried until it changes again
	cfg, err := c.load()
	if err != nil {
		c.err = err
		return c.cur
	}
	c.cur, c.err = cfg, nil
	return c.cur
}

// Err is the error of the last reload that failed, or nil once a reload
// has succeeded since.
func (c *ClientTLS) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *ClientTLS) load() (*tls.Config, error) {
	o := c.opts
	o.NoResume = true // the shared cache goes in below
	cfg, err := c.files.ClientConfig(o)
	if err != nil {
		return nil, err
	}
	cfg.ClientSessionCache = c.cache
	return cfg, nil
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
