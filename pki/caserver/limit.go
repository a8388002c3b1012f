package caserver

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// Default rate limits, per minute.
const (
	defaultEnrollRate = 10
	defaultRenewRate  = 30
)

// limiter is a token bucket per key: perMinute requests a minute, in
// bursts of as many. Buckets full again are dropped.
type limiter struct {
	now func() time.Time
	mu  sync.Mutex
	b   map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, b: map[string]*bucket{}}
}

// allow takes a token of key's bucket, and reports whether there was one.
func (l *limiter) allow(key string, perMinute, def int) bool {
	if perMinute <= 0 {
		perMinute = def
	}
	rate := float64(perMinute) / 60
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) > 10000 {
		for k, b := range l.b {
			if b.tokens+now.Sub(b.at).Seconds()*rate >= float64(perMinute) {
				delete(l.b, k)
			}
		}
	}
	b := l.b[key]
	if b == nil {
		b = &bucket{tokens: float64(perMinute), at: now}
		l.b[key] = b
	}
	b.tokens = min(float64(perMinute), b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// tokenKey identifies a token in the limiter without keeping it.
func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}
