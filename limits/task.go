package limits

import (
	"bytes"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seccompagent/seccompagent/internal/taskcache"
)

// What a thread's trapped calls reuse between them.
//
// Resolving a call from scratch reads /proc/<tid>/cgroup (on 5.15 and 6.1
// under the global cgroup_mutex that every container creation also takes),
// walks the hierarchy, stats the leaf and reads every limit: most of an
// answer's cost, for facts that change only when someone writes to a cgroup
// file or moves a task. So a resolution is kept:
//
//   - by thread (its id and its container, so that a thread id reused by
//     another container's task never reaches it) for memberTTL, then by the
//     text of /proc/<tid>/cgroup (another thread of the same cgroups, or the
//     same thread later, reads that one file and reuses it);
//   - as long as nothing was written to any cgroup directory it read from
//     (a stamp, watch.go), or, where nothing can be watched, for limitTTL.
//
// Only the counters are read on each call, through the very files the
// resolution read (fds kept open by openFiles):
//
//   - memory.current / memory.usage_in_bytes, memory.swap.current /
//     memory.memsw.usage_in_bytes (when there is swap to use) and
//     pids.current: afresh on every call.
//   - memory.stat (for shmem, the costliest file): at most every limitTTL.
//     The kernel's own sysinfo sharedram is no fresher: NR_SHMEM is folded
//     from per-CPU counters by vmstat every vm.stat_interval (1 s), and a
//     memcg's statistics are flushed every 2 s.
//
// What the kernel vouches for: an fd kept open on a cgroup file reads that
// cgroup or fails with ENODEV once it is removed, and a removed-and-remade
// cgroup at the same path is a new fd in openFiles. A call whose counter
// file is no longer the one the resolution read (liveFile) resolves again at
// once, so a thread whose cgroup was removed and made anew (which takes
// moving the thread out first) never gets the old cgroup's limits. What it
// cannot vouch for is a thread moved between two cgroups that both live on:
// that shows within memberTTL. A thread moved by the runtime before it runs
// (runc exec, systemd starting a unit) is a new tid or has not called yet,
// and resolves at once. Nor can it tell a thread from a later one of the
// same container given the same id (the pid space wrapped within
// memberTTL): that one gets its predecessor's cgroups, which differ only in
// a container with cgroups of its own below its root.

// liveFile is a counter file as one resolution read it: its path and the
// kept-open file it was read through.
type liveFile struct {
	path string
	of   *openFile
}

func liveFileOf(l level, name string) liveFile {
	path := filepath.Join(l.dir, name)
	return liveFile{path: path, of: openFiles.peek(path)}
}

// counter reads a one-number counter file afresh; ok=false when it is not
// the same open file the resolution read (closed for idleness, or reopened
// because its cgroup went away), cannot be read or holds no number.
func (lf liveFile) counter() (uint64, bool) {
	f := lf.of
	if f == nil || !f.pin() {
		return 0, false
	}
	// One pread: a kernfs file renders the whole value into a buffer
	// larger than it, so a short read is the end of the file.
	var buf [32]byte
	n, err := pread(f.fd, buf[:])
	openFiles.release(f, gone(err))
	if err != nil || n == len(buf) {
		return 0, false
	}
	// The bytes, not ParseUint: its error keeps the text, which would
	// put a copy of it on the heap on every call.
	line := bytes.TrimSpace(buf[:n])
	if len(line) == 0 || bytes.IndexByte(line, '\n') >= 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(line), 10, 64)
	return v, err == nil
}

// readWith reads the file afresh into a buffer that fn may use until it
// returns; ok=false as for counter.
func (lf liveFile) readWith(fn func([]byte)) (ok bool) {
	f := lf.of
	if f == nil || !f.pin() {
		return false
	}
	err := preadWith(f.fd, lf.path, fn)
	openFiles.release(f, gone(err))
	return err == nil
}

// memLive are the files a memory resolution reads its counters from.
type memLive struct {
	// uncached: read limits directly, not through the limitTTL cache
	// (a stamped resolution).
	uncached    bool
	v2          bool
	leaf        level
	usage, stat liveFile
	swap        liveFile // path "" without swap accounting
	statAt      time.Time
}

// memEntry is one thread's memory and pids resolution.
type memEntry struct {
	// text is the /proc/<tid>/cgroup it was resolved for.
	text string
	// stamp, when the watcher could watch every directory read, keeps
	// the entry good past limitTTL until one of them is written to.
	stamp    *stamp
	made     time.Time
	mem      Memory
	live     memLive
	pids     Pids
	pidsErr  error
	pidsFile liveFile // path "" when pids are not counted
	shmem    atomic.Pointer[shmemSample]
}

type shmemSample struct {
	v  uint64
	at time.Time
}

// memberTTL bounds how long a thread's cgroup membership is trusted
// without reading /proc/<tid>/cgroup again: what no write to the thread's
// own cgroups announces is its move to another live cgroup (a write to the
// other one's cgroup.procs), which therefore shows within memberTTL.
const memberTTL = 2 * time.Second

func (r *Reader) memberLifetime() time.Duration { return max(memberTTL, r.cache.lifetime()) }

// remember keeps e for a thread of a known container: a thread id alone is
// never trusted (ids are reused), and one of an unknown container
// (scope 0: crun exec, explain) is not kept at all.
func remember[E any](c *taskcache.Cache[E], k taskcache.Key, e E, ttl time.Duration) {
	if k.Scope > 0 {
		c.Put(k, e, ttl)
	}
}

// usable reports whether a resolution's limits may still be used: nothing
// was written to its stamped cgroups, or, without a stamp, it is younger
// than limitTTL.
func (r *Reader) usable(s *stamp, made time.Time) bool {
	if s != nil {
		return s.valid()
	}
	return time.Since(made) < r.cache.lifetime()
}

func (e *memEntry) current() bool { return e.stamp.valid() }

// cpuEntry is one thread's CPU resolution.
type cpuEntry struct {
	text  string // the /proc/<tid>/cgroup it was resolved for
	stamp *stamp
	made  time.Time
	cpu   CPU
}

func (e *cpuEntry) current() bool { return e.stamp.valid() }

// byCgroup keeps stamped resolutions (only: current is their stamp's
// validity) by the text of /proc/<tid>/cgroup, so
// that another thread in the same cgroups (or the same thread after its own
// entry expired) reuses them.
type byCgroup[E interface{ current() bool }] struct {
	mu    sync.Mutex
	m     map[string]E
	swept time.Time
}

// get returns the entry for text while it is current.
func (c *byCgroup[E]) get(text string) E {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[text]
	if ok && !e.current() {
		delete(c.m, text)
		ok = false
	}
	if !ok {
		var zero E
		return zero
	}
	return e
}

func (c *byCgroup[E]) put(text string, e E) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]E{}
	}
	// Entries of removed cgroups go once their stamp expires: the map
	// holds what was resolved in the last stampTTL or so.
	if now := time.Now(); now.Sub(c.swept) >= stampTTL || len(c.m) >= taskcache.Max {
		c.swept = now
		for k, old := range c.m {
			if !old.current() {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < taskcache.Max {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[text] = e
}

// vouched reports whether every counter the entry needs was read through a
// kept-open file (not so for regular files, as in tests' fixture trees, or
// when openFiles is full): only then can a later call tell it still reads
// the same cgroups.
func (e *memEntry) vouched() bool {
	l := &e.live
	return l.usage.of != nil && l.stat.of != nil &&
		(l.swap.path == "" || l.swap.of != nil) &&
		(e.pidsFile.path == "" || e.pidsFile.of != nil)
}

// sample reads the counters of a resolved entry; ok=false means resolve
// again.
func (r *Reader) sample(e *memEntry) (Memory, Pids, bool) {
	m, p := e.mem, e.pids
	// The host's totals (swapon, swapoff, memory hotplug) bound the
	// container's: a change resolves again (meminfo is re-read at most
	// every hostTTL).
	if total, swap, err := r.meminfo(); err != nil || total != m.HostTotal || swap != m.HostSwapTotal {
		return m, p, false
	}
	var ok bool
	if m.Usage, ok = e.live.usage.counter(); !ok {
		return m, p, false
	}
	// Without swap (none on the host, or none allowed) sysinfo's
	// freeswap is 0 whatever the counter says: it is not read.
	if e.live.swap.path != "" && m.SwapTotal > 0 {
		cur, ok := e.live.swap.counter()
		if !ok {
			return m, p, false
		}
		m.SwapUsage = swapUsage(e.live.v2, cur, m.Usage)
	}
	if e.pidsFile.path != "" {
		if p.Current.Value, ok = e.pidsFile.counter(); !ok {
			return m, p, false
		}
	}
	s := e.shmem.Load()
	if time.Since(s.at) >= r.cache.lifetime() {
		var v uint64
		var err error
		if !e.live.stat.readWith(func(b []byte) { v, err = parseShmem(e.live.leaf, b, e.live.v2) }) || err != nil {
			return m, p, false
		}
		s = &shmemSample{v: v, at: time.Now()}
		e.shmem.Store(s)
	}
	m.Shmem = s.v
	return m, p, true
}
