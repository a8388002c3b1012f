package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

var _ kvs.Leaser = (*Client)(nil)

// leaseErr maps a 404 on a lease to kvs.ErrLeaseNotFound and a bad TTL to
// kvs.ErrInvalidTTL.
func leaseErr(err error) error {
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return kvs.ErrLeaseNotFound
	}
	return err
}

func (c *Client) leaseCall(ctx context.Context, method, path string, body []byte) (kvs.Lease, error) {
	resp, err := c.do(ctx, method, c.url(path, nil), body, http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return kvs.Lease{}, leaseErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return kvs.Lease{}, nil
	}
	var lr kvs.LeaseResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		return kvs.Lease{}, fmt.Errorf("decode answer: %w", err)
	}
	l := kvs.Lease{ID: lr.ID, Keys: lr.Keys, Owner: lr.Owner}
	l.TTL, _ = time.ParseDuration(lr.TTL)
	l.Remaining, _ = time.ParseDuration(lr.Remaining)
	return l, nil
}

// Grant creates a lease of ttl. The server makes the client's identity its
// owner; owner is ignored.
func (c *Client) Grant(ctx context.Context, ttl time.Duration, _ string) (kvs.Lease, error) {
	if err := kvs.CheckTTL(ttl); err != nil {
		return kvs.Lease{}, err
	}
	body, _ := json.Marshal(kvs.LeaseGrantRequest{TTL: ttl.String()})
	return c.leaseCall(ctx, http.MethodPost, kvs.LeasePath, body)
}

func leaseIDPath(id int64) string { return kvs.LeasePath + "/" + strconv.FormatInt(id, 10) }

// KeepAlive starts the lease's TTL again.
func (c *Client) KeepAlive(ctx context.Context, id int64) (kvs.Lease, error) {
	if id <= 0 {
		return kvs.Lease{}, kvs.ErrLeaseNotFound
	}
	return c.leaseCall(ctx, http.MethodPost, leaseIDPath(id)+"/keepalive", nil)
}

// Revoke ends the lease and deletes its keys.
func (c *Client) Revoke(ctx context.Context, id int64) error {
	if id <= 0 {
		return kvs.ErrLeaseNotFound
	}
	_, err := c.leaseCall(ctx, http.MethodDelete, leaseIDPath(id), nil)
	return err
}

// LeaseInfo returns the lease's TTL, what remains of it, and its keys.
func (c *Client) LeaseInfo(ctx context.Context, id int64) (kvs.Lease, error) {
	if id <= 0 {
		return kvs.Lease{}, kvs.ErrLeaseNotFound
	}
	return c.leaseCall(ctx, http.MethodGet, leaseIDPath(id), nil)
}

// PutLease stores value under key bound to lease id (PUT ?lease=ID).
func (c *Client) PutLease(ctx context.Context, key string, value []byte, cond kvs.Cond, lease int64) (int64, error) {
	if lease == 0 {
		return c.Put(ctx, key, value, cond)
	}
	if lease < 0 {
		return 0, kvs.ErrLeaseNotFound
	}
	v, err := c.putQuery(ctx, key, value, cond, url.Values{"lease": {strconv.FormatInt(lease, 10)}})
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return 0, leaseErr(err)
	}
	return v, err
}

// PutTTL stores value under key, to expire after ttl (PUT ?ttl=).
func (c *Client) PutTTL(ctx context.Context, key string, value []byte, cond kvs.Cond, ttl time.Duration) (int64, error) {
	if err := kvs.CheckTTL(ttl); err != nil {
		return 0, err
	}
	return c.putQuery(ctx, key, value, cond, url.Values{"ttl": {ttl.String()}})
}

// Sweep does nothing: the server deletes expired keys by itself.
func (c *Client) Sweep(context.Context) (int, error) { return 0, nil }
