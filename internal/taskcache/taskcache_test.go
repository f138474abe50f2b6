package taskcache

import (
	"testing"
	"time"
)

func TestExpiresAndStaysBounded(t *testing.T) {
	var c Cache[int]
	if _, ok := c.Get(1, time.Hour); ok {
		t.Fatal("empty cache returned a value")
	}
	c.Put(1, 10, time.Hour)
	if v, ok := c.Get(1, time.Hour); !ok || v != 10 {
		t.Fatalf("Get = %d, %v; want 10, true", v, ok)
	}
	if _, ok := c.Get(1, 0); ok {
		t.Fatal("a value older than the ttl was returned")
	}
	for i := 0; i < 3*Max; i++ {
		c.Put(i, i, time.Hour)
	}
	if n := len(c.m); n > Max {
		t.Fatalf("%d entries, want at most %d", n, Max)
	}
	if v, ok := c.Get(3*Max-1, time.Hour); !ok || v != 3*Max-1 {
		t.Fatalf("the latest entry is missing: %d, %v", v, ok)
	}
}
