package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/policy"
)

// Leases under the policy: granting one needs write on some prefix; a lease
// belongs to the identity that granted it, and only that identity may bind
// keys to it (besides write on each key), keep it alive, show or revoke it
// (403 for another identity; 404 for a lease that does not exist or has
// expired). Revoke deletes only keys the owner itself bound, so it deletes
// nothing the owner could not write. Without a policy every client has
// full access and any client may use any lease.

// DefaultSweepInterval is how often Run deletes expired keys.
const DefaultSweepInterval = time.Second

// errNoLeases answers lease requests on a store without leases.
var errNoLeases = errors.New("this store has no leases")

// leaser returns the store's leases, or nil.
func (s *Server) leaser() kvs.Leaser {
	l, _ := s.cfg.Store.(kvs.Leaser)
	return l
}

// leaseID reads the {id} of a lease path.
func leaseID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest{"lease id must be a number above 0"}
	}
	return id, nil
}

func (s *Server) peerOf(r *http.Request) (policy.Peer, error) {
	cert := peer(r)
	if cert == nil {
		return policy.Peer{}, fmt.Errorf("%w: no client certificate", kvs.ErrForbidden)
	}
	p := policy.Peer{Cert: cert, Issuer: cert}
	if chains := r.TLS.VerifiedChains; len(chains) > 0 && len(chains[0]) > 1 {
		p.Issuer = chains[0][1]
	}
	return p, nil
}

// ownLease returns the lease id if it exists and the request's identity
// owns it (any identity without a policy).
func (s *Server) ownLease(ctx context.Context, l kvs.Leaser, identity string, id int64) (kvs.Lease, error) {
	ls, err := l.LeaseInfo(ctx, id)
	if err != nil {
		return ls, err
	}
	if s.policy.current() != nil && ls.Owner != identity {
		return ls, fmt.Errorf("%w: lease %d belongs to another identity", kvs.ErrForbidden, id)
	}
	return ls, nil
}

// handleLease serves POST /v1/lease and GET, DELETE /v1/lease/{id} and POST
// /v1/lease/{id}/keepalive.
func (s *Server) handleLease(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var identity string
	target := strings.TrimPrefix(r.URL.Path, "/v1/") // "lease/ID..." for the audit
	status, n := func() (int, int) {
		if err := checkParams(r.URL.Query()); err != nil {
			return s.fail(w, "lease", err)
		}
		l := s.leaser()
		if l == nil {
			return http.StatusNotImplemented, writeError(w, http.StatusNotImplemented, errNoLeases.Error())
		}
		p, err := s.peerOf(r)
		if err != nil {
			return s.fail(w, "lease", err)
		}
		if identity, err = s.policy.current().AllowAnywhere(p, policy.OpWrite); err != nil {
			return s.fail(w, "lease", err)
		}
		ctx := r.Context()
		if r.PathValue("id") == "" { // POST /v1/lease
			var req kvs.LeaseGrantRequest
			body, err := readBody(w, r, 4096)
			if err != nil {
				return s.fail(w, "lease", err)
			}
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				return s.fail(w, "lease", badRequest{`the body must be {"ttl": "30s"}: ` + err.Error()})
			}
			ttl, err := parseTTL(req.TTL)
			if err != nil {
				return s.fail(w, "lease", err)
			}
			ls, err := l.Grant(ctx, ttl, identity)
			if err != nil {
				return s.fail(w, "lease", err)
			}
			return http.StatusOK, writeJSON(w, http.StatusOK, kvs.LeaseResponseOf(ls))
		}
		id, err := leaseID(r)
		if err != nil {
			return s.fail(w, "lease", err)
		}
		ls, err := s.ownLease(ctx, l, identity, id)
		if err != nil {
			return s.fail(w, "lease", err)
		}
		switch {
		case r.Method == http.MethodGet:
		case r.Method == http.MethodDelete:
			if err := l.Revoke(ctx, id); err != nil {
				return s.fail(w, "lease", err)
			}
			w.WriteHeader(http.StatusNoContent)
			return http.StatusNoContent, 0
		default: // keepalive
			if ls, err = l.KeepAlive(ctx, id); err != nil {
				return s.fail(w, "lease", err)
			}
			if ls, err = l.LeaseInfo(ctx, id); err != nil {
				return s.fail(w, "lease", err)
			}
		}
		return http.StatusOK, writeJSON(w, http.StatusOK, kvs.LeaseResponseOf(ls))
	}()
	s.finish(r, "lease", target, identity, status, n, start)
}

// parseTTL reads a TTL parameter: a Go duration within kvs.MinTTL..MaxTTL.
func parseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badRequest{fmt.Sprintf("ttl %q must be a duration like 30s", s)}
	}
	if err := kvs.CheckTTL(d); err != nil {
		return 0, badRequest{fmt.Sprintf("ttl %s must be from %s to %s", d, kvs.MinTTL, kvs.MaxTTL)}
	}
	return d, nil
}

// putLease is a PUT with ?ttl= (a lease of its own) or ?lease=ID.
func (s *Server) putLease(ctx context.Context, r *http.Request, identity, key string, value []byte, cond kvs.Cond) (int64, error) {
	q := r.URL.Query()
	l := s.leaser()
	if l == nil {
		return 0, badRequest{errNoLeases.Error()}
	}
	if q.Has("ttl") && q.Has("lease") {
		return 0, badRequest{"give ttl or lease, not both"}
	}
	if q.Has("ttl") {
		ttl, err := parseTTL(q.Get("ttl"))
		if err != nil {
			return 0, err
		}
		ls, err := l.Grant(ctx, ttl, identity)
		if err != nil {
			return 0, err
		}
		v, err := l.PutLease(ctx, key, value, cond, ls.ID)
		if err != nil {
			_ = l.Revoke(context.WithoutCancel(ctx), ls.ID) // its own lease, no key bound
		}
		return v, err
	}
	id, err := strconv.ParseInt(q.Get("lease"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest{"lease must be a lease id, a number above 0"}
	}
	if _, err := s.ownLease(ctx, l, identity, id); err != nil {
		return 0, err
	}
	return l.PutLease(ctx, key, value, cond, id)
}

// sweep deletes expired keys every interval until ctx ends.
func (s *Server) sweep(ctx context.Context, l kvs.Leaser, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			n, err := l.Sweep(sctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("sweeping expired keys failed", "err", err)
				}
				break
			}
			if n > 0 {
				s.log.Debug("expired keys deleted", "keys", n)
			}
			if n < kvs.MaxPageSize {
				break
			}
		}
	}
}
