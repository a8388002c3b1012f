package server

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
)

func TestRoundTripBothModes(t *testing.T) {
	for _, mode := range []struct {
		name       string
		selfSigned bool
	}{{"ca", false}, {"self-signed", true}} {
		for _, http1 := range []bool{false, true} {
			name := mode.name + map[bool]string{false: "/h2", true: "/http1"}[http1]
			t.Run(name, func(t *testing.T) {
				d := testPKI(t, mode.selfSigned)
				ts := startServer(t, d, nil, nil)
				c := newTestClient(t, d, ts.addr, func(cc *client.Config) { cc.HTTP1, cc.HTTP2 = http1, !http1 })
				ctx := context.Background()
				val := []byte("world\x00\xff")
				v, err := c.Put(ctx, "hello/../x", val, kvs.Cond{})
				if err != nil {
					t.Fatal(err)
				}
				e, err := c.Get(ctx, "hello/../x")
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(e.Value, val) || e.Version != v {
					t.Fatalf("got %q v%d, want %q v%d", e.Value, e.Version, val, v)
				}
				if _, err := c.Put(ctx, "hello/../x", []byte("z"), kvs.Cond{IfVersion: v + 1000}); !errors.Is(err, kvs.ErrPrecondition) {
					t.Fatalf("CAS mismatch: got %v", err)
				}
				if _, err := c.Get(ctx, "missing"); !errors.Is(err, kvs.ErrNotFound) {
					t.Fatalf("missing: got %v", err)
				}
			})
		}
	}
}
