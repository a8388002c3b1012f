package loadgen

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Op is the kind of request a run sends.
type Op string

// The operations. OpMixed draws each request's operation from Config.Mix.
const (
	OpGet   Op = "get"
	OpPut   Op = "put"
	OpList  Op = "list"
	OpMixed Op = "mixed"
	// OpTxn is a transaction of 2 compares (both keys exist) and 2 puts
	// of those keys: run it with Preload, or the compares fail and the
	// transactions write nothing.
	OpTxn Op = "txn"
)

// ParseOp parses get, put, list, mixed or txn.
func ParseOp(s string) (Op, error) {
	switch o := Op(strings.ToLower(strings.TrimSpace(s))); o {
	case OpGet, OpPut, OpList, OpMixed, OpTxn:
		return o, nil
	}
	return "", fmt.Errorf("unknown operation %q: use get, put, list, mixed or txn", s)
}

// Mix is the share of each operation in a mixed run, as relative weights
// (get=90,put=10 and get=9,put=1 are the same mix).
type Mix struct {
	Get, Put, List int
}

// DefaultMix is 90% reads and 10% writes.
var DefaultMix = Mix{Get: 90, Put: 10}

// ParseMix parses "get=90,put=10[,list=N]".
func ParseMix(s string) (Mix, error) {
	var m Mix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if !ok || err != nil || n < 0 {
			return Mix{}, fmt.Errorf("invalid mix entry %q: want op=weight, like get=90", part)
		}
		switch strings.TrimSpace(name) {
		case "get":
			m.Get = n
		case "put":
			m.Put = n
		case "list":
			m.List = n
		default:
			return Mix{}, fmt.Errorf("invalid mix entry %q: the operations are get, put and list", part)
		}
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("invalid mix %q: the weights add up to zero", s)
	}
	return m, nil
}

func (m Mix) total() int { return m.Get + m.Put + m.List }

// String formats the mix as ParseMix reads it.
func (m Mix) String() string {
	var parts []string
	for _, p := range []struct {
		n string
		v int
	}{{"get", m.Get}, {"put", m.Put}, {"list", m.List}} {
		if p.v > 0 {
			parts = append(parts, p.n+"="+strconv.Itoa(p.v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// pick maps a number in [0, total) to an operation.
func (m Mix) pick(r int) Op {
	if r < m.Get {
		return OpGet
	}
	if r < m.Get+m.Put {
		return OpPut
	}
	return OpList
}
