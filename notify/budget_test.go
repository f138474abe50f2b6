package notify

import (
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	cpus, limited := 0.5, true
	reads := 0
	b := &Budget{Allowance: func() (float64, bool) { reads++; return cpus, limited }, now: func() time.Time { return now }}

	// A fresh bucket holds one burst: 0.5 CPU × 100 ms = 50 ms.
	if d := b.Delay(); d != 0 {
		t.Fatalf("fresh budget: delay %v, want 0", d)
	}
	b.Charge(50 * time.Millisecond)
	if d := b.Delay(); d != 0 {
		t.Fatalf("exactly the burst spent: delay %v, want 0", d)
	}
	// 20 ms over: refilled at 0.5 ns per ns, that is 40 ms of waiting.
	b.Charge(20 * time.Millisecond)
	if d := b.Delay(); d < 40*time.Millisecond || d > 40*time.Millisecond+time.Microsecond {
		t.Fatalf("20 ms over at 0.5 CPU: delay %v, want 40 ms", d)
	}
	now = now.Add(30 * time.Millisecond)
	if d := b.Delay(); d < 10*time.Millisecond || d > 10*time.Millisecond+time.Microsecond {
		t.Fatalf("after 30 ms: delay %v, want 10 ms", d)
	}
	// Idle for long: never more than one burst in hand.
	now = now.Add(900 * time.Millisecond)
	b.Charge(50 * time.Millisecond)
	if d := b.Delay(); d != 0 {
		t.Fatalf("after a rest, one burst: delay %v, want 0", d)
	}
	b.Charge(time.Millisecond)
	if d := b.Delay(); d == 0 {
		t.Fatal("more than one burst after a long rest")
	}
	// The quota is read again after a second: a lifted quota lifts the bound.
	limited = false
	now = now.Add(time.Second)
	b.Charge(time.Hour)
	if d := b.Delay(); d != 0 || reads != 2 {
		t.Fatalf("no quota: delay %v (allowance read %d times), want 0 after the second read", d, reads)
	}
	// A nil budget bounds nothing.
	var none *Budget
	none.Charge(time.Hour)
	if d := none.Delay(); d != 0 {
		t.Fatalf("nil budget: delay %v", d)
	}
}
