package limits

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/internal/taskcache"
)

// TestRenew: on the host's real memory hierarchy, a thread's entry that
// asked for a renewal is put back as new by Renew while the thread stays in
// its cgroups, and dropped once it was moved to a sibling cgroup (a write
// no watched directory sees), so that its next call resolves B's limit; a
// scope's Renew does nothing for another scope's threads.
func TestRenew(t *testing.T) {
	r, mnt, limitFile := realMemoryReader(t)
	a, b, pid := siblingCgroups(t, r, mnt, "renew")
	write := writeFile(t)
	write(filepath.Join(a, limitFile), strconv.Itoa(64<<20))
	write(filepath.Join(b, limitFile), strconv.Itoa(32<<20))
	write(filepath.Join(a, "cgroup.procs"), strconv.Itoa(pid))
	if watch() == nil {
		t.Skip("no inotify: resolutions are kept for limitTTL only, never renewed")
	}
	key := taskcache.Key{Tid: pid, Scope: testScope}
	ttl := r.memberLifetime()
	m, _, _, err := r.MemoryAndPids(pid, testScope)
	if err != nil || m.Limit.Value != 64<<20 {
		t.Fatalf("limit %d (%v), want 64 MiB", m.Limit.Value, err)
	}
	first, _ := r.memTasks.Get(key, ttl)
	if first == nil {
		t.Fatal("the thread's resolution was not kept")
	}

	time.Sleep(20 * time.Millisecond)
	r.Renew(testScope) // nothing asked for
	if _, age, _ := r.memTasks.GetAged(key, ttl); age < 20*time.Millisecond {
		t.Fatalf("entry %v old after a Renew nobody asked for: renewed anyway", age)
	}
	r.renewIfDue(key, ttl/2)
	r.Renew(testScope + 1) // another container's loop
	if _, age, _ := r.memTasks.GetAged(key, ttl); age < 20*time.Millisecond {
		t.Fatalf("another scope's Renew renewed this thread's entry (age %v)", age)
	}
	r.Renew(testScope)
	e, age, ok := r.memTasks.GetAged(key, ttl)
	if !ok || e != first || age >= 20*time.Millisecond {
		t.Fatalf("after Renew: same entry %v, age %v; want the same entry, new", e == first, age)
	}

	write(filepath.Join(b, "cgroup.procs"), strconv.Itoa(pid))
	r.renewIfDue(key, ttl/2)
	r.Renew(testScope)
	if _, ok := r.memTasks.Get(key, ttl); ok {
		t.Fatal("the entry of a thread moved to another cgroup survived its renewal")
	}
	if m, _, _, err := r.MemoryAndPids(pid, testScope); err != nil || m.Limit.Value != 32<<20 {
		t.Fatalf("after the move: limit %d (%v), want b's 32 MiB", m.Limit.Value, err)
	}
}
