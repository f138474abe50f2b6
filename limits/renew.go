package limits

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/seccompagent/seccompagent/internal/taskcache"
)

// Renewing the membership of threads that keep calling.
//
// A thread's entry trusts its cgroup membership for memberTTL; after that,
// its next call reads /proc/<tid>/cgroup before it can be answered (50–70
// µs on a CPU woken from idle: most of what a program calling once a
// second, as the Go runtime does, would wait for every other call). So a
// call served from an entry in the second half of memberTTL asks for a
// renewal, which the container's own loop does once that call's answer is
// sent (Renew, from notify.Loop.Later): it reads the file again and puts
// the entry back as new when the text is unchanged, or drops it. The bound
// is the same as before: a membership is used at most memberTTL after it
// was read. The work is the container's (its loop, its budget), done while
// its caller already runs.
type renewals struct {
	n  atomic.Int32 // threads waiting, all scopes
	mu sync.Mutex
	by map[int]map[int]struct{} // scope → tids
}

// maxRenewals bounds the threads waiting for a renewal (a scope whose loop
// never calls Renew: explain, tests); beyond it entries expire as before.
const maxRenewals = 4096

// renewIfDue asks for k's renewal when its entry is age old. Only entries
// with a stamp are renewed: one without is good for limitTTL, less than
// half of memberTTL, anyway.
func (r *Reader) renewIfDue(k taskcache.Key, age time.Duration) {
	if age < r.memberLifetime()/2 || k.Scope <= 0 {
		return
	}
	rn := &r.renew
	rn.mu.Lock()
	defer rn.mu.Unlock()
	tids := rn.by[k.Scope]
	if _, ok := tids[k.Tid]; ok || rn.n.Load() >= maxRenewals {
		return
	}
	if tids == nil {
		if rn.by == nil {
			rn.by = map[int]map[int]struct{}{}
		}
		tids = map[int]struct{}{}
		rn.by[k.Scope] = tids
	}
	tids[k.Tid] = struct{}{}
	rn.n.Add(1)
}

// Renew renews the entries of the threads of the container whose init is
// scope that asked for it. The container's loop calls it after each
// answer; it costs an atomic load when there is nothing to do.
func (r *Reader) Renew(scope int) {
	rn := &r.renew
	if rn.n.Load() == 0 {
		return
	}
	rn.mu.Lock()
	tids := rn.by[scope]
	delete(rn.by, scope)
	rn.n.Add(-int32(len(tids)))
	rn.mu.Unlock()
	ttl := r.memberLifetime()
	for tid := range tids {
		k := taskcache.Key{Tid: tid, Scope: scope}
		text, err := r.cgroupText(tid)
		renew(&r.cpuTasks, k, text, err == nil, ttl)
		renew(&r.memTasks, k, text, err == nil, ttl)
	}
}

type renewable interface {
	*cpuEntry | *memEntry
	resolvedFor() string
	current() bool
}

func (e *cpuEntry) resolvedFor() string { return e.text }
func (e *memEntry) resolvedFor() string { return e.text }

// renew puts k's entry back as new if the thread's cgroups read text (ok)
// and its limits are still current, and drops it otherwise.
func renew[E renewable](c *taskcache.Cache[E], k taskcache.Key, text string, ok bool, ttl time.Duration) {
	e, found := c.Get(k, ttl)
	switch {
	case !found:
	case ok && e.resolvedFor() == text && e.current():
		c.Put(k, e, ttl)
	default:
		c.Delete(k)
	}
}
