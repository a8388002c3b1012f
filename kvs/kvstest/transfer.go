package kvstest

import (
	"context"
	"fmt"
	"strconv"

	"github.com/kvsctl/kvsctl/kvs"
)

// Transfer moves amount from counter from to counter to (decimal values)
// with one compare-and-transfer transaction: it reads both, then writes
// both only if neither version changed. It reports whether the transfer
// was applied (false: a concurrent change won, or from holds too little).
// The invariant tests of the server use it too.
func Transfer(ctx context.Context, s kvs.Txner, from, to string, amount int64) (bool, error) {
	read, err := s.Txn(ctx, kvs.Txn{Success: []kvs.Op{{Kind: kvs.OpGet, Key: from}, {Kind: kvs.OpGet, Key: to}}})
	if err != nil {
		return false, err
	}
	a, b := read.Results[0], read.Results[1]
	if !a.Found || !b.Found {
		return false, fmt.Errorf("transfer %s -> %s: a counter is missing", from, to)
	}
	na, err := strconv.ParseInt(string(a.Value), 10, 64)
	if err != nil {
		return false, fmt.Errorf("counter %s: %w", from, err)
	}
	nb, err := strconv.ParseInt(string(b.Value), 10, 64)
	if err != nil {
		return false, fmt.Errorf("counter %s: %w", to, err)
	}
	if na < amount {
		return false, nil
	}
	res, err := s.Txn(ctx, kvs.Txn{
		Compare: []kvs.Compare{{Key: from, Kind: kvs.CompareVersion, Version: a.Version}, {Key: to, Kind: kvs.CompareVersion, Version: b.Version}},
		Success: []kvs.Op{
			{Kind: kvs.OpPut, Key: from, Value: strconv.AppendInt(nil, na-amount, 10)},
			{Kind: kvs.OpPut, Key: to, Value: strconv.AppendInt(nil, nb+amount, 10)},
		},
	})
	if err != nil {
		return false, err
	}
	return res.Succeeded, nil
}

// Sum reads counters c0..c(n-1) in one transaction and adds them up.
func Sum(ctx context.Context, s kvs.Txner, n int) (int64, error) {
	ops := make([]kvs.Op, n)
	for i := range ops {
		ops[i] = kvs.Op{Kind: kvs.OpGet, Key: counterName(i)}
	}
	res, err := s.Txn(ctx, kvs.Txn{Success: ops})
	if err != nil {
		return 0, err
	}
	var sum int64
	for i, r := range res.Results {
		v, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("counter %s: %w", counterName(i), err)
		}
		sum += v
	}
	return sum, nil
}
