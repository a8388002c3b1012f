package loadgen

import (
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets: exact below 128ns, then
// 64 buckets per power of two, so a reported quantile is within 1/64 (1.6%)
// of the true value. It has a fixed size, needs no locking (each worker keeps
// its own and they are merged at the end) and never allocates after
// creation.
type histogram struct {
	counts [histBuckets]int64
	n      int64
	sum    int64
	max    int64
}

const (
	histSubBits = 7
	histHalf    = 1 << (histSubBits - 1) // 64 buckets per power of two
	histBuckets = (64-histSubBits+1)*histHalf + histHalf
)

func histIndex(v int64) int {
	if v < 1<<histSubBits {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - histSubBits
	return shift*histHalf + int(v>>shift)
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < 1<<histSubBits {
		return int64(i)
	}
	shift := i/histHalf - 1
	m := int64(i - shift*histHalf)
	return m<<shift + (1<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of the samples
// fall; the maximum is exact.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}
