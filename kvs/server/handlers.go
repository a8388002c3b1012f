package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/policy"
)

// errTooLarge is the answer to a value over the limit.
var errTooLarge = errors.New("kvs: value too large")

// errNotSupported is the answer to a request the store cannot serve (a
// transaction on a store without them).
var errNotSupported = errors.New("kvs: not supported by this store")

// statusOf maps an error to its HTTP status and a message that is safe to
// show a client: it never carries internal details of the store. This is the
// only place that makes that mapping.
func statusOf(err error) (int, string) {
	var mbe *http.MaxBytesError
	switch status := kvs.StatusOf(err); {
	case errors.Is(err, kvs.ErrLeaseNotFound):
		return http.StatusNotFound, "lease not found"
	case errors.Is(err, kvs.ErrInvalidTTL):
		return http.StatusBadRequest, strings.TrimPrefix(err.Error(), "kvs: ")
	case status == http.StatusNotFound:
		return status, "key not found"
	case status == http.StatusPreconditionFailed:
		return status, "version precondition failed"
	case status == http.StatusBadRequest, status == http.StatusForbidden, status == http.StatusRequestEntityTooLarge:
		return status, err.Error()
	case status == http.StatusGone:
		return status, "revision compacted"
	case errors.Is(err, errNotSupported):
		return http.StatusNotImplemented, err.Error()
	case status == http.StatusServiceUnavailable, errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "store unavailable"
	case errors.Is(err, errTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "value too large"
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "request canceled"
	}
	return http.StatusInternalServerError, "internal error"
}

// badRequest marks request errors (status 400) other than bad keys.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func writeError(w http.ResponseWriter, status int, msg string) int {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	b, _ := json.Marshal(kvs.ErrorResponse{Error: msg})
	b = append(b, '\n')
	n, _ := w.Write(b)
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return writeError(w, http.StatusInternalServerError, "internal error")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	b = append(b, '\n')
	n, _ := w.Write(b)
	return n
}

// fail writes the error answer for err and returns status and bytes.
func (s *Server) fail(w http.ResponseWriter, op string, err error) (int, int) {
	var br badRequest
	if errors.As(err, &br) {
		return http.StatusBadRequest, writeError(w, http.StatusBadRequest, br.msg)
	}
	status, msg := statusOf(err)
	if status >= 500 {
		s.metrics.storeErrors.WithLabelValues(op).Inc()
		s.log.Warn("store error", "op", op, "err", err)
	}
	return status, writeError(w, status, msg)
}

// peer returns the verified client certificate of a request.
func peer(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// authorize asks the policy whether the request's client may do op on key,
// and returns the policy identity that allowed it (the common name when no
// policy is in force). The client's issuer is the next certificate of its
// verified chain, or the certificate itself when it is pinned.
func (s *Server) authorize(r *http.Request, op policy.Op, key string) (string, error) {
	cert := peer(r)
	if cert == nil {
		return "", fmt.Errorf("%w: no client certificate", kvs.ErrForbidden)
	}
	p := policy.Peer{Cert: cert, Issuer: cert}
	if chains := r.TLS.VerifiedChains; len(chains) > 0 && len(chains[0]) > 1 {
		p.Issuer = chains[0][1]
	}
	return s.policy.current().Allow(p, op, key)
}

// handleKey serves GET, PUT and DELETE on /v1/kv/{key}.
func (s *Server) handleKey(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	op := "other"
	var key, identity string
	status, n := func() (int, int) {
		switch r.Method {
		case http.MethodGet:
			op = "get"
		case http.MethodPut:
			op = "put"
		case http.MethodDelete:
			op = "delete"
		default:
			w.Header().Set("Allow", "GET, PUT, DELETE")
			return http.StatusMethodNotAllowed, writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET, PUT or DELETE")
		}
		k, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), kvs.KeyPath))
		if err != nil {
			return s.fail(w, op, badRequest{"key is not a valid escaped path"})
		}
		key = k
		if err := kvs.ValidateKey(key); err != nil {
			return s.fail(w, op, err)
		}
		if identity, err = s.authorize(r, opOf(op), key); err != nil {
			return s.fail(w, op, err)
		}
		switch op {
		case "get":
			return s.get(w, r, key)
		case "put":
			return s.put(w, r, key, identity)
		}
		return s.delete(w, r, key)
	}()
	s.finish(r, op, key, identity, status, n, start)
}

func opOf(op string) policy.Op {
	switch op {
	case "put":
		return policy.OpWrite
	case "delete":
		return policy.OpDelete
	case "list":
		return policy.OpList
	}
	return policy.OpRead
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, key string) (int, int) {
	e, err := s.cfg.Store.Get(r.Context(), key)
	if err != nil {
		return s.fail(w, "get", err)
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/octet-stream"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Etag"] = []string{etag(e.Version)}
	h[kvs.HeaderUpdated] = []string{e.Updated.UTC().Format(time.RFC3339Nano)}
	h["Content-Length"] = []string{strconv.Itoa(len(e.Value))}
	w.WriteHeader(http.StatusOK)
	n, _ := w.Write(e.Value)
	return http.StatusOK, n
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, key, identity string) (int, int) {
	if err := checkParams(r.URL.Query(), "ttl", "lease"); err != nil {
		return s.fail(w, "put", err)
	}
	cond, err := condition(r)
	if err != nil {
		return s.fail(w, "put", err)
	}
	if r.ContentLength > s.cfg.MaxValue {
		return s.fail(w, "put", errTooLarge)
	}
	value, err := readBody(w, r, s.cfg.MaxValue)
	if err != nil {
		return s.fail(w, "put", err)
	}
	var v int64
	if q := r.URL.Query(); q.Has("ttl") || q.Has("lease") {
		v, err = s.putLease(r.Context(), r, identity, key, value, cond)
	} else {
		v, err = s.cfg.Store.Put(r.Context(), key, value, cond)
	}
	if err != nil {
		return s.fail(w, "put", err)
	}
	w.Header()["Etag"] = []string{etag(v)}
	return http.StatusOK, writeJSON(w, http.StatusOK, kvs.PutResponse{Key: key, Version: v})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, key string) (int, int) {
	cond, err := condition(r)
	if err != nil {
		return s.fail(w, "delete", err)
	}
	if cond.CreateOnly {
		return s.fail(w, "delete", badRequest{"If-None-Match is not supported on DELETE"})
	}
	if err := s.cfg.Store.Delete(r.Context(), key, cond); err != nil {
		return s.fail(w, "delete", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent, 0
}

// bodyChunk is the most readBody allocates before the bytes arrive: a
// header that announces a large body reserves nothing more until the body
// comes (a value of up to bodyChunk bytes is read into one buffer of its
// exact size).
const bodyChunk = 64 << 10

// readBody reads the request body up to limit bytes into a buffer that grows
// with what arrives, never beyond the announced Content-Length.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	want := r.ContentLength // -1: unknown
	buf := make([]byte, 0, min(max(want, 0), bodyChunk))
	for want < 0 || int64(len(buf)) < want {
		if len(buf) == cap(buf) {
			grow := max(cap(buf), 512)
			if want >= 0 {
				grow = int(min(int64(grow), want-int64(len(buf))))
			}
			buf = slices.Grow(buf, grow)
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errTooLarge
			}
			if want >= 0 {
				return nil, badRequest{"request body shorter than its Content-Length"}
			}
			return nil, badRequest{"could not read the request body"}
		}
	}
	if want >= 0 && int64(len(buf)) != want {
		return nil, badRequest{"request body shorter than its Content-Length"}
	}
	return buf, nil
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// condition reads If-Match: "N" and If-None-Match: * into a Cond.
func condition(r *http.Request) (kvs.Cond, error) {
	var c kvs.Cond
	if im := r.Header.Get("If-Match"); im != "" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(im), `"`), 10, 64)
		if err != nil || v <= 0 {
			return c, badRequest{`If-Match must be a version in quotes, like "42"`}
		}
		c.IfVersion = v
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if strings.TrimSpace(inm) != "*" {
			return c, badRequest{"If-None-Match supports only * (create only)"}
		}
		if c.IfVersion != 0 {
			return c, badRequest{"If-Match and If-None-Match cannot be combined"}
		}
		c.CreateOnly = true
	}
	return c, nil
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	prefix := q.Get("prefix")
	var identity string
	status, n := func() (int, int) {
		limit := kvs.DefaultPageSize
		if ls := q.Get("limit"); ls != "" {
			l, err := strconv.Atoi(ls)
			if err != nil || l < 1 || l > kvs.MaxPageSize {
				return s.fail(w, "list", badRequest{fmt.Sprintf("limit must be a number from 1 to %d", kvs.MaxPageSize)})
			}
			limit = l
		}
		var err error
		if identity, err = s.authorize(r, policy.OpList, prefix); err != nil {
			return s.fail(w, "list", err)
		}
		if q.Has("wait") || q.Has("index") {
			if err := checkParams(q, "prefix", "after", "limit", "wait", "index"); err != nil {
				return s.fail(w, "list", err)
			}
			return s.longPoll(w, r, prefix, q.Get("after"), limit)
		}
		keys, next, err := s.cfg.Store.List(r.Context(), prefix, q.Get("after"), limit)
		if err != nil {
			return s.fail(w, "list", err)
		}
		if keys == nil {
			keys = []kvs.KeyInfo{}
		}
		return http.StatusOK, writeJSON(w, http.StatusOK, kvs.ListResponse{Keys: keys, Next: next})
	}()
	s.finish(r, "list", prefix, identity, status, n, start)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	identity, err := s.authorize(r, policy.OpHealth, "")
	var status, n int
	if err != nil {
		status, n = s.fail(w, "health", err)
	} else {
		status, n = s.health(w, r)
	}
	s.finish(r, "health", "", identity, status, n, start)
}

// health answers whether the store can serve requests.
func (s *Server) health(w http.ResponseWriter, r *http.Request) (int, int) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		s.log.Warn("health check failed", "err", err)
		return http.StatusServiceUnavailable, writeError(w, http.StatusServiceUnavailable, "store unavailable")
	}
	return http.StatusOK, writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleMetrics serves the Prometheus metrics to identities the policy
// gives the metrics operation.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	identity, err := s.authorize(r, policy.OpMetrics, "")
	if err != nil {
		status, n := s.fail(w, "metrics", err)
		s.finish(r, "metrics", "", identity, status, n, start)
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	s.metricsHandler.ServeHTTP(cw, r)
	s.finish(r, "metrics", "", identity, cw.status(), cw.n, start)
}

// finish reports a request to the observers (audit log, metrics, and the
// Config's): identity is the policy identity that matched, "" for none.
// The value is never part of it.
func (s *Server) finish(r *http.Request, op, key, identity string, status, n int, start time.Time) {
	e := RequestEvent{
		Peer: r.RemoteAddr, Identity: identity, Op: op, Key: key, Status: status,
		BytesIn: max(r.ContentLength, 0), BytesOut: n, Duration: time.Since(start),
	}
	if c := peer(r); c != nil {
		e.CN, e.Serial = c.Subject.CommonName, serialText(c.SerialNumber)
		if e.Identity == "" {
			e.Identity = c.Subject.CommonName
		}
	}
	s.observe.request(e)
}

// countingWriter counts the body bytes and remembers the status of an
// answer written by another handler.
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int
}

func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += n
	return n, err
}

func (w *countingWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
