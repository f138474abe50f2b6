// Package taskcache keeps one value per thread for a bounded time: what the
// agent resolved for a calling thread and may reuse for its next calls.
package taskcache

import (
	"sync"
	"time"
)

// Max bounds a Cache: beyond it expired entries are dropped, and if that is
// not enough, arbitrary ones (a later call resolves again).
const Max = 16384

// Key names a thread: its id, and the container it belongs to (its init's
// pid). Thread ids are reused once a thread exits; the scope keeps a reused
// id from ever reaching another container's entry.
type Key struct{ Tid, Scope int }

// Cache maps threads to values that expire. The zero value is ready.
type Cache[V any] struct {
	mu    sync.Mutex
	m     map[Key]item[V]
	swept time.Time
}

type item[V any] struct {
	v  V
	at time.Time
}

// Get returns k's value if it was put less than ttl ago.
func (c *Cache[V]) Get(k Key, ttl time.Duration) (V, bool) {
	v, _, ok := c.GetAged(k, ttl)
	return v, ok
}

// GetAged is Get, and also says how long ago the value was put.
func (c *Cache[V]) GetAged(k Key, ttl time.Duration) (v V, age time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.m[k]
	if ok {
		age = time.Since(it.at)
	}
	if !ok || age >= ttl {
		var zero V
		return zero, 0, false
	}
	return it.v, age, true
}

// Delete forgets k.
func (c *Cache[V]) Delete(k Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}

// Put stores v for k, now.
func (c *Cache[V]) Put(k Key, v V, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[Key]item[V]{}
	}
	now := time.Now()
	if len(c.m) >= Max && now.Sub(c.swept) >= ttl {
		for old, it := range c.m {
			if now.Sub(it.at) >= ttl {
				delete(c.m, old)
			}
		}
		c.swept = now
	}
	if len(c.m) >= Max {
		n := 0
		for old := range c.m {
			delete(c.m, old)
			if n++; n == Max/16 {
				break
			}
		}
	}
	c.m[k] = item[V]{v: v, at: now}
}
