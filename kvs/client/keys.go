package client

import (
	"context"
	"iter"

	"github.com/kvsctl/kvsctl/kvs"
)

// Keys pages through the keys that start with prefix, in byte order,
// asking the server for pageSize keys at a time (< 1: kvs.MaxPageSize),
// and yields each one; after limit keys (0: no limit) it stops. The first
// error is yielded once, and ends the sequence. Memory stays at one page
// whatever the number of keys.
func (c *Client) Keys(ctx context.Context, prefix string, pageSize, limit int) iter.Seq2[kvs.KeyInfo, error] {
	return func(yield func(kvs.KeyInfo, error) bool) {
		if pageSize < 1 || pageSize > kvs.MaxPageSize {
			pageSize = kvs.MaxPageSize
		}
		after, n := "", 0
		for {
			size := pageSize
			if limit > 0 {
				size = min(size, limit-n)
			}
			keys, next, err := c.List(ctx, prefix, after, size)
			if err != nil {
				yield(kvs.KeyInfo{}, err)
				return
			}
			for _, k := range keys {
				if !yield(k, nil) {
					return
				}
				n++
			}
			if next == "" || (limit > 0 && n >= limit) {
				return
			}
			after = next
		}
	}
}
