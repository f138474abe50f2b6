package taskcache

import (
	"testing"
	"time"
)

func TestExpiresAndStaysBounded(t *testing.T) {
	var c Cache[int]
	if _, ok := c.Get(Key{1, 7}, time.Hour); ok {
		t.Fatal("empty cache returned a value")
	}
	c.Put(Key{1, 7}, 10, time.Hour)
	if v, ok := c.Get(Key{1, 7}, time.Hour); !ok || v != 10 {
		t.Fatalf("Get = %d, %v; want 10, true", v, ok)
	}
	if _, ok := c.Get(Key{1, 8}, time.Hour); ok {
		t.Fatal("the same thread id in another scope got the value")
	}
	if _, ok := c.Get(Key{1, 7}, 0); ok {
		t.Fatal("a value older than the ttl was returned")
	}
	for i := 0; i < 3*Max; i++ {
		c.Put(Key{i, 7}, i, time.Hour)
	}
	if n := len(c.m); n > Max {
		t.Fatalf("%d entries, want at most %d", n, Max)
	}
	if v, ok := c.Get(Key{3*Max - 1, 7}, time.Hour); !ok || v != 3*Max-1 {
		t.Fatalf("the latest entry is missing: %d, %v", v, ok)
	}
}
