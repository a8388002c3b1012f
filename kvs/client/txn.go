package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/kvsctl/kvsctl/kvs"
)

var (
	_ kvs.Txner         = (*Client)(nil)
	_ kvs.PrefixDeleter = (*Client)(nil)
)

// Txn sends a transaction (POST /v1/txn). The server checks its own
// limits; here only the key rules and kvs.DefaultMaxTxnOps' shape are not
// assumed, so that a server configured for more operations gets them.
func (c *Client) Txn(ctx context.Context, t kvs.Txn) (kvs.TxnResult, error) {
	if err := kvs.ValidateTxn(t, maxInt); err != nil {
		return kvs.TxnResult{}, err
	}
	body, err := json.Marshal(t.Request())
	if err != nil {
		return kvs.TxnResult{}, fmt.Errorf("encode transaction: %w", err)
	}
	return c.TxnJSON(ctx, body)
}

const maxInt = int(^uint(0) >> 1)

// TxnJSON sends a transaction already in its wire form (a
// kvs.TxnRequest as JSON, as kvsctl txn reads it from a file); the server
// judges it.
func (c *Client) TxnJSON(ctx context.Context, body []byte) (kvs.TxnResult, error) {
	resp, err := c.do(ctx, http.MethodPost, c.url(kvs.TxnPath, nil), body, http.Header{"Content-Type": {"application/json"}})
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		// A transaction answers 404 only for a put's lease.
		return kvs.TxnResult{}, fmt.Errorf("%w: %w", kvs.ErrLeaseNotFound, err)
	}
	if err != nil {
		return kvs.TxnResult{}, err
	}
	defer resp.Body.Close()
	var out kvs.TxnResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return kvs.TxnResult{}, fmt.Errorf("decode answer: %w", err)
	}
	return out.Result()
}

// DeletePrefix removes every key under prefix (DELETE /v1/kv?prefix=P)
// and returns how many there were.
func (c *Client) DeletePrefix(ctx context.Context, prefix string) (int64, error) {
	if prefix == "" {
		return 0, fmt.Errorf("%w: a prefix delete needs a prefix", kvs.ErrInvalidTxn)
	}
	if err := kvs.CheckList(prefix, ""); err != nil {
		return 0, err
	}
	resp, err := c.do(ctx, http.MethodDelete, c.url(kvs.ListPath, url.Values{"prefix": {prefix}}), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out kvs.DeletePrefixResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("decode answer: %w", err)
	}
	return out.Deleted, nil
}

// Snapshot asks for the store's snapshot (GET /v1/snapshot) and returns
// the stream, in the kvs/snapshot format, for the caller to read to its
// end and close; kvs/snapshot's Reader verifies it. The request has no
// overall timeout (a large store takes long): ctx bounds it.
func (c *Client) Snapshot(ctx context.Context) (io.ReadCloser, error) {
	resp, err := c.send(ctx, c.stream, http.MethodGet, c.url(kvs.SnapshotPath, nil), nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
