// Package taskcache keeps one value per thread id for a bounded time: what
// the agent resolved for a calling thread and may reuse for its next calls.
package taskcache

import (
	"sync"
	"time"
)

// Max bounds a Cache: beyond it expired entries are dropped, and if that is
// not enough, arbitrary ones (a later call resolves again).
const Max = 16384

// Cache maps thread ids to values that expire. The zero value is ready.
type Cache[V any] struct {
	mu    sync.Mutex
	m     map[int]item[V]
	swept time.Time
}

type item[V any] struct {
	v  V
	at time.Time
}

// Get returns tid's value if it was put less than ttl ago.
func (c *Cache[V]) Get(tid int, ttl time.Duration) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.m[tid]
	if !ok || time.Since(it.at) >= ttl {
		var zero V
		return zero, false
	}
	return it.v, true
}

// Put stores v for tid, now.
func (c *Cache[V]) Put(tid int, v V, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]item[V]{}
	}
	now := time.Now()
	if len(c.m) >= Max && now.Sub(c.swept) >= ttl {
		for k, it := range c.m {
			if now.Sub(it.at) >= ttl {
				delete(c.m, k)
			}
		}
		c.swept = now
	}
	if len(c.m) >= Max {
		n := 0
		for k := range c.m {
			delete(c.m, k)
			if n++; n == Max/16 {
				break
			}
		}
	}
	c.m[tid] = item[V]{v: v, at: now}
}
