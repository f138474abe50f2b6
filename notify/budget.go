package notify

import (
	"sync"
	"time"
)

// Budget bounds the agent time one container's notifications may take, in
// proportion to the CPU the container itself is allowed: a container
// limited to half a CPU that calls sysinfo in a loop gets at most
// Factor × 0.5 CPU of the agent's time, and beyond that its calls wait in
// the kernel's queue (the receivers stop receiving for it) until the budget
// refills. Its neighbours' loops are untouched, and no call is ever
// answered wrongly or with an error because of the budget: it only waits.
//
// A token bucket in nanoseconds of agent time: it fills at Factor ×
// allowance per nanosecond of wall time, holds at most one CFS period's
// worth (100 ms), and every answered notification takes what it cost: the
// receiver thread's CPU time since its previous answer (RECV included). One
// Budget is shared by all listeners of a container
// (its init and every exec).
type Budget struct {
	// Allowance returns the container's CPU allowance in CPUs
	// (quota/period); ok=false means no quota, and then nothing is
	// bounded.
	Allowance func() (cpus float64, ok bool)
	// Factor scales the allowance (default 1).
	Factor float64

	now     func() time.Time // time.Now; tests set a fake clock
	mu      sync.Mutex
	rate    float64 // ns of agent time per ns of wall time; 0 = unbounded
	tokens  float64 // ns
	last    time.Time
	checked time.Time
}

const (
	// budgetBurst is how much wall time of allowance the bucket holds.
	budgetBurst = 100 * time.Millisecond
	// budgetRecheck is how often the allowance is read again (a `runc
	// update` of the quota shows within it).
	budgetRecheck = time.Second
)

// refill brings the bucket up to now; b.mu is held.
func (b *Budget) refill(now time.Time) {
	if b.checked.IsZero() || now.Sub(b.checked) >= budgetRecheck {
		b.checked = now
		rate := 0.0
		if b.Allowance != nil {
			if cpus, ok := b.Allowance(); ok && cpus > 0 {
				f := b.Factor
				if f <= 0 {
					f = 1
				}
				rate = cpus * f
			}
		}
		if rate != b.rate && b.rate == 0 {
			b.tokens = rate * float64(budgetBurst) // start full
		}
		b.rate = rate
		b.last = now
	}
	if b.rate == 0 {
		return
	}
	b.tokens += b.rate * float64(now.Sub(b.last))
	b.last = now
	if full := b.rate * float64(budgetBurst); b.tokens > full {
		b.tokens = full
	}
}

// Delay is how long a receiver should wait before it takes another
// notification of this container (0: go on).
func (b *Budget) Delay() time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(b.clock())
	if b.rate == 0 || b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens/b.rate) + 1
}

// Charge takes the agent time one notification cost.
func (b *Budget) Charge(d time.Duration) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(b.clock())
	if b.rate != 0 {
		b.tokens -= float64(d)
	}
}

func (b *Budget) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}
