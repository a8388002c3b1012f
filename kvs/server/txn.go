package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/policy"
)

// handleTxn serves POST /v1/txn. Every check comes before the store sees
// the transaction: the body's size, its JSON, its limits, and the policy
// for every compare and every operation of both branches, so a refused
// transaction applies nothing.
func (s *Server) handleTxn(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var identity, key string
	status, n := func() (int, int) {
		if r.ContentLength > s.cfg.MaxTxnBytes {
			return s.fail(w, "txn", fmt.Errorf("%w: body of %d bytes, the limit is %d", kvs.ErrTooLarge, r.ContentLength, s.cfg.MaxTxnBytes))
		}
		body, err := readBody(w, r, s.cfg.MaxTxnBytes)
		if errors.Is(err, errTooLarge) {
			err = fmt.Errorf("%w: body over the limit of %d bytes", kvs.ErrTooLarge, s.cfg.MaxTxnBytes)
		}
		if err != nil {
			return s.fail(w, "txn", err)
		}
		t, err := decodeTxn(body)
		if err != nil {
			return s.fail(w, "txn", err)
		}
		if err := kvs.ValidateTxn(t, s.cfg.MaxTxnOps); err != nil {
			return s.fail(w, "txn", err)
		}
		for _, ops := range [][]kvs.Op{t.Success, t.Failure} {
			for _, op := range ops {
				if op.Kind == kvs.OpPut && int64(len(op.Value)) > s.cfg.MaxValue {
					return s.fail(w, "txn", fmt.Errorf("%w: put %q: value of %d bytes, the limit is %d", kvs.ErrTooLarge, op.Key, len(op.Value), s.cfg.MaxValue))
				}
			}
		}
		if identity, key, err = s.authorizeTxn(r, t); err != nil {
			return s.fail(w, "txn", err)
		}
		if err := s.checkTxnLeases(r.Context(), t, identity); err != nil {
			return s.fail(w, "txn", err)
		}
		txner, ok := s.cfg.Store.(kvs.Txner)
		if !ok {
			return s.fail(w, "txn", fmt.Errorf("%w: transactions", errNotSupported))
		}
		res, err := txner.Txn(r.Context(), t)
		if err != nil {
			return s.fail(w, "txn", err)
		}
		return http.StatusOK, writeJSON(w, http.StatusOK, res.Response())
	}()
	s.finish(r, "txn", key, identity, status, n, start)
}

// decodeTxn reads a TxnRequest strictly: one JSON object, no unknown
// fields.
func decodeTxn(body []byte) (kvs.Txn, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req kvs.TxnRequest
	if err := dec.Decode(&req); err != nil {
		return kvs.Txn{}, badRequest{"malformed transaction: " + jsonReason(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return kvs.Txn{}, badRequest{"malformed transaction: more than one JSON value"}
	}
	return req.Txn()
}

// jsonReason is a decoding error without Go type names.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s has the wrong type (%s)", te.Field, te.Value)
	}
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	return err.Error()
}

// authorizeTxn checks the policy for every part of t: a compare or a get
// reads its key, a put writes it, a delete deletes it, a delete_prefix
// deletes its prefix. It returns the identity that was allowed and the
// first key, for the audit record.
func (s *Server) authorizeTxn(r *http.Request, t kvs.Txn) (string, string, error) {
	var identity, first string
	check := func(op policy.Op, key string) error {
		if first == "" {
			first = key
		}
		id, err := s.authorize(r, op, key)
		if err != nil {
			return err
		}
		identity = id
		return nil
	}
	for _, c := range t.Compare {
		if err := check(policy.OpRead, c.Key); err != nil {
			return "", first, err
		}
	}
	for _, ops := range [][]kvs.Op{t.Success, t.Failure} {
		for _, op := range ops {
			pop := policy.OpRead
			switch op.Kind {
			case kvs.OpPut:
				pop = policy.OpWrite
			case kvs.OpDelete, kvs.OpDeletePrefix:
				pop = policy.OpDelete
			}
			if err := check(pop, op.Key); err != nil {
				return "", first, err
			}
		}
	}
	return identity, first, nil
}

// checkTxnLeases refuses, before anything runs, a transaction whose puts
// (in either branch) bind a key to a lease that does not exist or, when a
// policy is in force, belongs to another identity: the same rule as PUT
// ?lease=.
func (s *Server) checkTxnLeases(ctx context.Context, t kvs.Txn, identity string) error {
	l, _ := s.cfg.Store.(kvs.Leaser)
	for _, ops := range [][]kvs.Op{t.Success, t.Failure} {
		for _, op := range ops {
			if op.Kind != kvs.OpPut || op.Lease == 0 {
				continue
			}
			if l == nil {
				return fmt.Errorf("%w: leases", errNotSupported)
			}
			if _, err := s.ownLease(ctx, l, identity, op.Lease); err != nil {
				return err
			}
		}
	}
	return nil
}

// handleDeletePrefix serves DELETE /v1/kv?prefix=P: every key under P
// removed atomically, with the policy's delete on P.
func (s *Server) handleDeletePrefix(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	prefix := q.Get("prefix")
	var identity string
	status, n := func() (int, int) {
		if !q.Has("prefix") || prefix == "" {
			return s.fail(w, "delete_prefix", badRequest{"DELETE /v1/kv needs a non-empty ?prefix= (deleting every key is not supported)"})
		}
		if err := kvs.CheckList(prefix, ""); err != nil {
			return s.fail(w, "delete_prefix", err)
		}
		var err error
		if identity, err = s.authorize(r, policy.OpDelete, prefix); err != nil {
			return s.fail(w, "delete_prefix", err)
		}
		pd, ok := s.cfg.Store.(kvs.PrefixDeleter)
		if !ok {
			return s.fail(w, "delete_prefix", fmt.Errorf("%w: prefix deletes", errNotSupported))
		}
		deleted, err := pd.DeletePrefix(r.Context(), prefix)
		if err != nil {
			return s.fail(w, "delete_prefix", err)
		}
		return http.StatusOK, writeJSON(w, http.StatusOK, kvs.DeletePrefixResponse{Prefix: prefix, Deleted: deleted})
	}()
	s.finish(r, "delete_prefix", prefix, identity, status, n, start)
}
