package limits

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seccompagent/seccompagent/internal/taskcache"
)

// Reader resolves processes to their cgroups and reads their limits. The
// mount table and the clock tick rate are read once. Usage counters are read
// afresh on every call. Limit files (and the host's MemTotal/SwapTotal) are
// re-read at most every limitTTL (hostTTL), so `runc update` shows within a
// second; they are cached by the cgroup's identity, not its path, so a
// cgroup made anew under an old path shows its own limits at once. What a
// calling thread's cgroups resolve to is reused for limitTTL as well (see
// task.go), so a thread moved between two live cgroups shows within it. A
// Reader is safe for concurrent use.
type Reader struct {
	proc string // "/proc"
	fs   string // "/" on a real host; prefixes mount points and /sys

	v1 map[string]Mount // controller -> hierarchy
	v2 *Mount
	// v2ctrls are the controllers the cgroup2 root offers.
	v2ctrls map[string]bool
	clkTck  uint64

	host_ atomic.Pointer[hostTotals]
	cache fileCache
	// What each calling thread's cgroups resolved to (see taskTTL).
	memTasks    taskcache.Cache[*memEntry]
	cpuTasks    taskcache.Cache[*cpuEntry]
	memByCgroup byCgroup[*memEntry]
	cpuByCgroup byCgroup[*cpuEntry]
	renew       renewals
}

// NewReader reads procRoot/self/mountinfo (the agent's own view of the
// cgroup mounts) and procRoot/self/auxv (the clock tick rate).
func NewReader(procRoot, fsRoot string) (*Reader, error) {
	r := &Reader{proc: procRoot, fs: fsRoot, v1: map[string]Mount{}, v2ctrls: map[string]bool{}}
	f, err := os.Open(filepath.Join(procRoot, "self/mountinfo"))
	if err != nil {
		return nil, err
	}
	mounts, err := ParseMountinfo(f)
	f.Close()
	if err != nil {
		return nil, &ParseError{File: f.Name(), Err: err}
	}
	for _, m := range mounts {
		if m.V2 {
			if r.v2 == nil || m.Root == "/" { // prefer the mount showing the whole tree
				m := m
				r.v2 = &m
			}
			continue
		}
		for _, c := range m.Controllers {
			if old, ok := r.v1[c]; !ok || (old.Root != "/" && m.Root == "/") {
				r.v1[c] = m
			}
		}
	}
	if r.v2 != nil {
		// An empty cgroup.controllers is normal (the unified mount of a
		// hybrid host); an unreadable one is not, and must not quietly
		// turn a v2 host into "no controllers".
		file := r.host(filepath.Join(r.v2.Point, "cgroup.controllers"))
		b, err := readFile(file)
		if err != nil {
			return nil, &ParseError{File: file, Err: err}
		}
		for _, c := range strings.Fields(string(b)) {
			r.v2ctrls[c] = true
		}
	}
	if len(r.v1) == 0 && r.v2 == nil {
		return nil, errors.New("no cgroup or cgroup2 filesystem is mounted")
	}
	r.clkTck, err = clockTicks(filepath.Join(procRoot, "self/auxv"))
	if err != nil {
		return nil, err
	}
	return r, nil
}

// clockTicks reads AT_CLKTCK from an auxv file: the USER_HZ the kernel
// uses for /proc/<pid>/stat times.
func clockTicks(file string) (uint64, error) {
	b, err := readFile(file)
	if err != nil {
		return 0, err
	}
	const atClkTck = 17
	for i := 0; i+16 <= len(b); i += 16 {
		k := binary.LittleEndian.Uint64(b[i:])
		v := binary.LittleEndian.Uint64(b[i+8:])
		if k == atClkTck && v > 0 {
			return v, nil
		}
		if k == 0 {
			break
		}
	}
	return 0, &ParseError{File: file, Err: errors.New("no AT_CLKTCK entry")}
}

func (r *Reader) host(p string) string { return filepath.Join(r.fs, p) }

// Mode says which hierarchies the host uses: "v1", "v2" or "hybrid".
func (r *Reader) Mode() string {
	switch {
	case len(r.v1) == 0:
		return "v2"
	case r.v2 != nil:
		return "hybrid"
	default:
		return "v1"
	}
}

// level is one cgroup directory on the way from a process to the root.
type level struct {
	cgroup string // as /proc/<pid>/cgroup names it
	dir    string // where its files are
	// cache serves limit files (see limitTTL), keyed by the identity of
	// the hierarchy's leaf cgroup and the level's distance from it.
	cache *fileCache
	leaf  *leafIdentity
	up    int
}

// leafIdentity is the identity of the cgroup directory a process is in,
// taken once per call: (st_dev, st_ino). cgroupfs is kernfs, whose inode
// number on 64-bit kernels is the node's 64-bit id (idr number and
// generation, fs/kernfs), never reused while the machine runs; st_dev tells
// the v1 hierarchies apart. A cgroup removed and made again under the same
// path (a systemd unit restarted with a new MemoryMax=, a pod sandbox
// recreated) is a new identity, so its limits are read afresh at once.
// Keying every level by the leaf is enough: a cgroup with children cannot
// be removed, so an ancestor made anew means a new leaf as well.
type leafIdentity struct {
	dir  string
	once sync.Once
	key  cgroupKey
	ok   bool
}

type cgroupKey struct {
	dev, ino uint64
}

func (li *leafIdentity) get() (cgroupKey, bool) {
	li.once.Do(func() {
		k, err := statIdentity(li.dir)
		li.key, li.ok = k, err == nil
	})
	return li.key, li.ok
}

// hierarchy is where one controller's files for one process live: levels[0]
// is the process's own cgroup, the last is the mount's root.
type hierarchy struct {
	v2     bool
	levels []level
}

// hierarchyOf finds the hierarchy carrying controller for pid.
func (r *Reader) hierarchyOf(pid int, controller string, lines []CgroupLine) (*hierarchy, error) {
	if m, ok := r.v1[controller]; ok {
		for _, l := range lines {
			if slices.Contains(l.Controllers, controller) {
				return r.walk(m, l.Path)
			}
		}
		return nil, &ParseError{File: r.procFile(pid, "cgroup"), Err: fmt.Errorf("no line for the %s hierarchy", controller)}
	}
	if r.v2 != nil && r.v2ctrls[controller] {
		for _, l := range lines {
			if l.ID == 0 && len(l.Controllers) == 0 {
				return r.walk(*r.v2, l.Path)
			}
		}
		return nil, &ParseError{File: r.procFile(pid, "cgroup"), Err: errors.New("no cgroup2 (0::) line")}
	}
	return nil, &NoControllerError{Controller: controller}
}

// walk lists the levels from cgroup path p up to the mount's root. Both p
// and the mount root are relative to the agent's cgroup namespace; a path
// that leaves the mount's subtree ("/../x" from a namespace boundary) cannot
// be read through this mount.
func (r *Reader) walk(m Mount, p string) (*hierarchy, error) {
	rel, ok := under(m.Root, p)
	if !ok {
		return nil, &UnreachableError{Cgroup: p, MountRoot: m.Root, MountPoint: m.Point}
	}
	h := &hierarchy{v2: m.V2}
	leaf := &leafIdentity{dir: r.host(filepath.Join(append([]string{m.Point}, rel...)...))}
	for up := 0; ; up++ {
		cg := m.Root
		if len(rel) > 0 {
			cg = strings.TrimSuffix(m.Root, "/") + "/" + strings.Join(rel, "/")
		}
		h.levels = append(h.levels, level{cgroup: cg, dir: r.host(filepath.Join(append([]string{m.Point}, rel...)...)),
			cache: &r.cache, leaf: leaf, up: up})
		if len(rel) == 0 {
			return h, nil
		}
		rel = rel[:len(rel)-1]
	}
}

// under returns p's components below root, comparing lexically without
// letting ".." collapse (cgroup namespaces print paths like "/../../x").
func under(root, p string) ([]string, bool) {
	split := func(s string) []string {
		var out []string
		for _, c := range strings.Split(s, "/") {
			if c != "" && c != "." {
				out = append(out, c)
			}
		}
		return out
	}
	rc, pc := split(root), split(p)
	if len(pc) < len(rc) || !slices.Equal(rc, pc[:len(rc)]) {
		return nil, false
	}
	rest := pc[len(rc):]
	if slices.Contains(rest, "..") {
		return nil, false
	}
	return rest, true
}

func (r *Reader) procFile(pid int, name string) string {
	return filepath.Join(r.proc, strconv.Itoa(pid), name)
}

func (r *Reader) cgroupLines(pid int) ([]CgroupLine, error) {
	text, err := r.cgroupText(pid)
	if err != nil {
		return nil, err
	}
	return r.parseCgroupText(pid, text)
}

// cgroupText is /proc/<pid>/cgroup as read.
func (r *Reader) cgroupText(pid int) (string, error) {
	b, err := readFile(r.procFile(pid, "cgroup"))
	return string(b), err
}

func (r *Reader) parseCgroupText(pid int, text string) ([]CgroupLine, error) {
	lines, err := ParseProcCgroup(strings.NewReader(text))
	if err != nil {
		return nil, &ParseError{File: r.procFile(pid, "cgroup"), Err: err}
	}
	return lines, nil
}

// uncached makes the hierarchy read its limit files directly, not through
// the Reader's limitTTL cache: for a resolution the watcher stamps, which
// must read what is there now.
func (h *hierarchy) uncached() {
	for i := range h.levels {
		h.levels[i].cache = nil
	}
}

// stampFor watches the directories of every level of the given
// controllers' hierarchies for pid and stamps them (watch.go); nil when
// that is not possible.
func (r *Reader) stampFor(pid int, lines []CgroupLine, controllers ...string) *stamp {
	w := watch()
	if w == nil {
		return nil
	}
	var dirs []string
	for _, c := range controllers {
		h, err := r.hierarchyOf(pid, c, lines)
		if err != nil {
			continue // no such controller: nothing of it is read
		}
		for _, l := range h.levels {
			dirs = append(dirs, l.dir)
		}
	}
	return w.stampDirs(dirs)
}

// read returns a cgroup file's text; missing reports a file that does not
// exist (a controller not enabled at that level, or no swap accounting).
func read(l level, name string) (text string, missing bool, err error) {
	path := filepath.Join(l.dir, name)
	b, err := readFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", true, nil
	}
	if err != nil {
		return "", false, &ParseError{Path: l.cgroup, File: filepath.Join(l.dir, name), Err: err}
	}
	return string(b), false, nil
}

// readLimit reads a limit file (cpu.max, memory.max, memory.limit_in_bytes,
// …) through the cache. Usage files always go through read.
func readLimit(l level, name string) (text string, missing bool, err error) {
	if l.cache == nil || l.leaf == nil {
		return read(l, name)
	}
	id, ok := l.leaf.get()
	if !ok {
		// The cgroup is gone (or unreadable): read, and let that say so.
		return read(l, name)
	}
	key := cacheKey{cgroup: id, up: l.up, name: name}
	if e, ok := l.cache.get(key); ok {
		return e.text, e.missing, nil
	}
	text, missing, err = read(l, name)
	if err == nil {
		l.cache.put(key, cached{text: text, missing: missing})
	}
	return text, missing, err
}

// cacheKey names a limit file by the identity of the process's own cgroup
// (see leafIdentity), how many levels above it the file's cgroup is, and
// the file's name: never by path.
type cacheKey struct {
	cgroup cgroupKey
	up     int
	name   string
}

func parseErr(l level, name string, err error) error {
	return &ParseError{Path: l.cgroup, File: filepath.Join(l.dir, name), Err: err}
}

func (l level) source(i int, name string) *Source {
	return &Source{Cgroup: l.cgroup, Level: i, File: filepath.Join(l.dir, name)}
}

// limitTTL bounds how stale a limit may be. Limits change only when an
// operator or orchestrator updates them (runc update, a pod resize) and a
// container's calls read the same few files every time, so they are re-read
// at most this often: an update is seen within a second. Usage is always
// read afresh. A cgroup removed and made again under the same path is a
// different cache entry (see leafIdentity): its limits show at once.
const limitTTL = 500 * time.Millisecond

type cached struct {
	text    string
	missing bool
	at      time.Time
}

type fileCache struct {
	// ttl is limitTTL; tests set a longer one to see the cache at work.
	ttl   time.Duration
	mu    sync.Mutex
	m     map[cacheKey]cached
	swept time.Time
}

func (c *fileCache) lifetime() time.Duration {
	if c.ttl > 0 {
		return c.ttl
	}
	return limitTTL
}

func (c *fileCache) get(path cacheKey) (cached, bool) {
	if c == nil {
		return cached{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[path]
	if !ok || time.Since(e.at) >= c.lifetime() {
		return cached{}, false
	}
	return e, true
}

func (c *fileCache) put(path cacheKey, e cached) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[cacheKey]cached{}
	}
	// Cgroups come and go: drop what has expired, at most once per TTL so
	// a node with many containers does not scan the map on every put.
	if len(c.m) >= 4096 && time.Since(c.swept) >= c.lifetime() {
		for k, v := range c.m {
			if time.Since(v.at) >= c.lifetime() {
				delete(c.m, k)
			}
		}
		c.swept = time.Now()
	}
	e.at = time.Now()
	c.m[path] = e
}

// View reads everything a process may see.
func (r *Reader) View(pid int) (*View, error) {
	cpu, err := r.CPU(pid)
	if err != nil {
		return nil, err
	}
	mem, err := r.Memory(pid)
	if err != nil {
		return nil, err
	}
	pids, err := r.Pids(pid)
	if err != nil && !errors.As(err, new(*NoControllerError)) {
		return nil, err
	}
	return &View{Pid: pid, Mode: r.Mode(), CPU: cpu, Memory: mem, Pids: pids}, nil
}

// CPU reads the quota-derived CPU count and the cpuset.
//
// Without a cpu controller no quota can apply to the process, so Count is
// unlimited with no Source: that is the kernel's own truth, not a fallback,
// and the cpuset (which the kernel already applies to every affinity mask)
// is still reported. Only when neither cpu nor cpuset is mounted is there
// nothing to say, and CPU returns a NoControllerError so the caller answers
// with the host's mask.
func (r *Reader) CPU(pid int) (CPU, error) { return r.ThreadCPU(pid, 0) }

// ThreadCPU is CPU for thread pid of the container whose init is scope (0:
// unknown), reusing what the thread's cgroups resolved to (task.go).
func (r *Reader) ThreadCPU(pid, scope int) (CPU, error) {
	key := taskcache.Key{Tid: pid, Scope: scope}
	if e, age, ok := r.cpuTasks.GetAged(key, r.memberLifetime()); ok && scope > 0 && r.usable(e.stamp, e.made) {
		if e.stamp != nil {
			r.renewIfDue(key, age)
		}
		return e.cpu, nil
	}
	text, err := r.cgroupText(pid)
	if err != nil {
		return CPU{}, err
	}
	if e := r.cpuByCgroup.get(text); e != nil {
		remember(&r.cpuTasks, key, e, r.memberLifetime())
		return e.cpu, nil
	}
	lines, err := r.parseCgroupText(pid, text)
	if err != nil {
		return CPU{}, err
	}
	e := &cpuEntry{text: text, stamp: r.stampFor(pid, lines, "cpu", "cpuset"), made: time.Now()}
	if e.cpu, err = r.cpu(pid, lines, e.stamp != nil); err != nil {
		return e.cpu, err
	}
	remember(&r.cpuTasks, key, e, r.memberLifetime())
	if e.stamp != nil {
		r.cpuByCgroup.put(text, e)
	}
	return e.cpu, nil
}

func (r *Reader) cpu(pid int, lines []CgroupLine, uncached bool) (CPU, error) {
	var out CPU
	var err error
	if out.HostOnline, err = r.onlineCPUs(); err != nil {
		return out, err
	}
	h, err := r.hierarchyOf(pid, "cpu", lines)
	if err == nil && uncached {
		h.uncached()
	}
	var noCPU bool
	switch {
	case errors.As(err, new(*NoControllerError)):
		noCPU = true
	case err != nil:
		return out, err
	default:
		if err := r.quota(h, &out); err != nil {
			return out, err
		}
	}
	hs, err := r.hierarchyOf(pid, "cpuset", lines)
	if err == nil && uncached {
		hs.uncached()
	}
	switch {
	case errors.As(err, new(*NoControllerError)):
		if noCPU {
			return out, err
		}
	case err != nil:
		return out, err
	default:
		names := []string{"cpuset.effective_cpus", "cpuset.cpus"}
		if hs.v2 {
			names = []string{"cpuset.cpus.effective"}
		}
		l := hs.levels[0]
		for _, name := range names {
			text, missing, err := readLimit(l, name)
			if err != nil {
				return out, err
			}
			if missing {
				continue
			}
			if _, err := ParseCPUList(text); err != nil {
				return out, parseErr(l, name, err)
			}
			out.Cpuset = strings.TrimSpace(text)
			out.CpusetSource = l.source(0, name)
			break
		}
	}
	return out, nil
}

// quota finds the ancestor with the smallest quota/period and derives
// K = max(1, ceil(quota/period)).
func (r *Reader) quota(h *hierarchy, out *CPU) error {
	for i, l := range h.levels {
		var q, p int64
		var limited bool
		var name string
		if h.v2 {
			name = "cpu.max"
			text, missing, err := readLimit(l, name)
			if err != nil {
				return err
			}
			if missing {
				continue // the root, or cpu not enabled here
			}
			if q, p, limited, err = ParseCPUMax(text); err != nil {
				return parseErr(l, name, err)
			}
		} else {
			name = "cpu.cfs_quota_us"
			text, missing, err := readLimit(l, name)
			if err != nil {
				return err
			}
			if missing {
				continue
			}
			if q, err = ParseInt(text); err != nil {
				return parseErr(l, name, err)
			}
			if q == -1 {
				continue
			}
			if q <= 0 {
				return parseErr(l, name, fmt.Errorf("quota %d is neither -1 nor positive", q))
			}
			ptext, _, err := readLimit(l, "cpu.cfs_period_us")
			if err != nil {
				return err
			}
			if p, err = ParseInt(ptext); err != nil || p <= 0 {
				if err == nil {
					err = fmt.Errorf("period %d is not positive", p)
				}
				return parseErr(l, "cpu.cfs_period_us", err)
			}
			limited = true
		}
		if !limited {
			continue
		}
		// q/p < best.q/best.p  <=>  q*bestP < bestQ*p, exactly in 128 bits.
		if out.Count.Limited && !lessRatio(q, p, out.QuotaUS, out.PeriodUS) {
			continue
		}
		k := uint64((q + p - 1) / p)
		out.Count = Value{Value: max(k, 1), Limited: true, Source: l.source(i, name)}
		out.QuotaUS, out.PeriodUS = q, p
	}
	return nil
}

func lessRatio(q1, p1, q2, p2 int64) bool {
	h1, l1 := bits.Mul64(uint64(q1), uint64(p2))
	h2, l2 := bits.Mul64(uint64(q2), uint64(p1))
	return h1 < h2 || (h1 == h2 && l1 < l2)
}

func (r *Reader) onlineCPUs() (int, error) {
	file := r.host("/sys/devices/system/cpu/online")
	b, err := readFile(file)
	if err != nil {
		return 0, err
	}
	cpus, err := ParseCPUList(string(b))
	if err != nil {
		return 0, &ParseError{File: file, Err: err}
	}
	return len(cpus), nil
}

// PossibleCPUs returns nr_cpu_ids under the reader's filesystem root (see
// the function PossibleCPUs).
func (r *Reader) PossibleCPUs() (int, error) { return PossibleCPUs(r.fs) }

// PossibleCPUs returns nr_cpu_ids: the highest possible CPU id + 1, from
// fsRoot/sys/devices/system/cpu/possible.
func PossibleCPUs(fsRoot string) (int, error) {
	file := filepath.Join(fsRoot, "/sys/devices/system/cpu/possible")
	b, err := readFile(file)
	if err != nil {
		return 0, err
	}
	cpus, err := ParseCPUList(string(b))
	if err != nil || len(cpus) == 0 {
		if err == nil {
			err = errors.New("no CPUs")
		}
		return 0, &ParseError{File: file, Err: err}
	}
	return cpus[len(cpus)-1] + 1, nil
}

// hostTTL is how long the host's MemTotal and SwapTotal are reused: they
// change only on memory hotplug or swapon/swapoff, and /proc/meminfo is one
// of the most expensive files a trapped call would read.
const hostTTL = time.Second

type hostTotals struct {
	at          time.Time
	total, swap uint64
}

func (r *Reader) meminfo() (total, swap uint64, err error) {
	if h := r.host_.Load(); h != nil && time.Since(h.at) < hostTTL {
		return h.total, h.swap, nil
	}
	total, swap, err = r.readMeminfo()
	if err == nil {
		r.host_.Store(&hostTotals{at: time.Now(), total: total, swap: swap})
	}
	return total, swap, err
}

func (r *Reader) readMeminfo() (total, swap uint64, err error) {
	file := filepath.Join(r.proc, "meminfo")
	b, err := readFile(file)
	if err != nil {
		return 0, 0, err
	}
	m, err := ParseMeminfo(bytes.NewReader(b), "MemTotal", "SwapTotal")
	if err != nil {
		return 0, 0, &ParseError{File: file, Err: err}
	}
	return m["MemTotal"], m["SwapTotal"], nil
}

// Memory reads the memory and swap limits (minimum over all ancestors,
// clamped to the host) and usage.
func (r *Reader) Memory(pid int) (Memory, error) {
	lines, err := r.cgroupLines(pid)
	if err != nil {
		return Memory{}, err
	}
	return r.memory(pid, lines, nil)
}

// MemoryAndPids reads what sysinfo needs for thread pid of the container
// whose init is scope (0: unknown). What a thread's cgroups resolve to,
// limits included, is reused (see task.go and watch.go); usage, swap usage
// (when SwapTotal > 0; otherwise SwapUsage is as the resolution read it)
// and pids.current are read afresh on every call. A missing pids controller
// is a NoControllerError in pidsErr, separate from err.
func (r *Reader) MemoryAndPids(pid, scope int) (m Memory, p Pids, pidsErr, err error) {
	key := taskcache.Key{Tid: pid, Scope: scope}
	if e, age, ok := r.memTasks.GetAged(key, r.memberLifetime()); ok && scope > 0 && r.usable(e.stamp, e.made) {
		if m, p, ok := r.sample(e); ok {
			if e.stamp != nil {
				r.renewIfDue(key, age)
			}
			return m, p, e.pidsErr, nil
		}
	}
	text, err := r.cgroupText(pid)
	if err != nil {
		return m, p, nil, err
	}
	if e := r.memByCgroup.get(text); e != nil {
		if m, p, ok := r.sample(e); ok {
			remember(&r.memTasks, key, e, r.memberLifetime())
			return m, p, e.pidsErr, nil
		}
	}
	lines, err := r.parseCgroupText(pid, text)
	if err != nil {
		return m, p, nil, err
	}
	e := &memEntry{text: text, stamp: r.stampFor(pid, lines, "memory", "pids"), made: time.Now()}
	e.live.uncached = e.stamp != nil
	if m, err = r.memory(pid, lines, &e.live); err != nil {
		return m, p, nil, err
	}
	p, pidsErr = r.pids(pid, lines, &e.pidsFile)
	e.mem, e.pids, e.pidsErr = m, p, pidsErr
	if e.vouched() {
		e.shmem.Store(&shmemSample{v: m.Shmem, at: e.live.statAt})
		remember(&r.memTasks, key, e, r.memberLifetime())
		if e.stamp != nil {
			r.memByCgroup.put(text, e)
		}
	}
	return m, p, pidsErr, nil
}

func (r *Reader) memory(pid int, lines []CgroupLine, live *memLive) (Memory, error) {
	var out Memory
	h, err := r.hierarchyOf(pid, "memory", lines)
	if err != nil {
		return out, err
	}
	if live != nil && live.uncached {
		h.uncached()
	}
	if out.HostTotal, out.HostSwapTotal, err = r.meminfo(); err != nil {
		return out, err
	}
	limitName, usageName, swapLimitName, swapUsageName := "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.memsw.limit_in_bytes", "memory.memsw.usage_in_bytes"
	if h.v2 {
		limitName, usageName, swapLimitName, swapUsageName = "memory.max", "memory.current", "memory.swap.max", "memory.swap.current"
	}
	// min over ancestors; "max", the v1 sentinel and anything at or above
	// the host's total (or bound) do not limit.
	minOver := func(name string, bound uint64) (Value, bool, error) {
		best := Value{}
		seen := false
		for i, l := range h.levels {
			text, missing, err := readLimit(l, name)
			if err != nil {
				return best, seen, err
			}
			if missing {
				continue
			}
			seen = true
			v, limited, err := ParseMax(text)
			if err != nil {
				return best, seen, parseErr(l, name, err)
			}
			if !limited || v >= bound {
				continue
			}
			if !best.Limited || v < best.Value {
				best = Value{Value: v, Limited: true, Source: l.source(i, name)}
			}
		}
		return best, seen, nil
	}
	if out.Limit, _, err = minOver(limitName, min(out.HostTotal, v1Unlimited)); err != nil {
		return out, err
	}
	out.Total = out.HostTotal
	if out.Limit.Limited {
		out.Total = out.Limit.Value
	}
	leaf, text, err := charged(h, usageName)
	if err != nil {
		return out, err
	}
	if out.Usage, err = ParseUint(text); err != nil {
		return out, parseErr(leaf, usageName, err)
	}
	if live != nil {
		*live = memLive{v2: h.v2, leaf: leaf, usage: liveFileOf(leaf, usageName)}
	}
	stat, missing, err := read(leaf, "memory.stat")
	if err != nil {
		return out, err
	}
	if missing {
		return out, parseErr(leaf, "memory.stat", os.ErrNotExist)
	}
	if out.Shmem, err = parseShmem(leaf, []byte(stat), h.v2); err != nil {
		return out, err
	}
	if live != nil {
		live.stat, live.statAt = liveFileOf(leaf, "memory.stat"), time.Now()
	}

	// Swap. No accounting files: 0, not an error.
	swapCurText, swapMissing, err := read(leaf, swapUsageName)
	if err != nil || swapMissing {
		return out, err
	}
	swapCur, err := ParseUint(swapCurText)
	if err != nil {
		return out, parseErr(leaf, swapUsageName, err)
	}
	if live != nil {
		live.swap = liveFileOf(leaf, swapUsageName)
	}
	if h.v2 {
		if out.SwapLimit, _, err = minOver(swapLimitName, out.HostSwapTotal); err != nil {
			return out, err
		}
	} else {
		// v1 memsw counts RAM+swap: the swap allowance is what it
		// allows beyond the RAM limit.
		memsw, _, err := minOver(swapLimitName, v1Unlimited)
		if err != nil {
			return out, err
		}
		if memsw.Limited {
			ram := out.Total
			if swap := sat(memsw.Value, ram); swap < out.HostSwapTotal {
				out.SwapLimit = Value{Value: swap, Limited: true, Source: memsw.Source}
			}
		}
	}
	out.SwapUsage = swapUsage(h.v2, swapCur, out.Usage)
	out.SwapTotal = out.HostSwapTotal
	if out.SwapLimit.Limited {
		out.SwapTotal = out.SwapLimit.Value
	}
	return out, nil
}

// swapUsage is the swap a cgroup uses: v2 memory.swap.current; v1 memsw
// usage (RAM+swap) less the RAM usage.
func swapUsage(v2 bool, swapCur, usage uint64) uint64 {
	if v2 {
		return swapCur
	}
	return sat(swapCur, usage)
}

// parseShmem reads shmem from memory.stat text (v1: the hierarchical
// total_shmem, where the kernel has it); no line is 0. It allocates only
// for an error.
func parseShmem(l level, stat []byte, v2 bool) (uint64, error) {
	if !v2 {
		v, found, err := Keyed(stat, "total_shmem")
		if err != nil {
			return 0, parseErr(l, "memory.stat", err)
		}
		if found {
			return v, nil
		}
	}
	v, _, err := Keyed(stat, "shmem")
	if err != nil {
		return 0, parseErr(l, "memory.stat", err)
	}
	return v, nil
}

// v1Unlimited is what memory.limit_in_bytes and memory.memsw.limit_in_bytes
// read when no limit is set: PAGE_COUNTER_MAX pages (LONG_MAX / PAGE_SIZE)
// times the 4 KiB page size (mm/memcontrol-v1.c). Values at or above it do
// not limit. RAM limits are also bounded by the host's MemTotal, which is
// always far below it.
const v1Unlimited = 9223372036854771712

func sat(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// Pids reads pids.current of the process's own cgroup: its tasks (threads).
// Current.Limited is false for a process in the root cgroup.
func (r *Reader) Pids(pid int) (Pids, error) {
	lines, err := r.cgroupLines(pid)
	if err != nil {
		return Pids{}, err
	}
	return r.pids(pid, lines, nil)
}

func (r *Reader) pids(pid int, lines []CgroupLine, live *liveFile) (Pids, error) {
	h, err := r.hierarchyOf(pid, "pids", lines)
	if err != nil {
		return Pids{}, err
	}
	l, text, err := charged(h, "pids.current")
	if errors.Is(err, os.ErrNotExist) {
		// Only the root cgroup, which has no pids.current: the whole
		// host is the answer (Limited=false).
		return Pids{}, nil
	}
	if err != nil {
		return Pids{}, err
	}
	n, err := ParseUint(text)
	if err != nil {
		return Pids{}, parseErr(l, "pids.current", err)
	}
	if live != nil {
		*live = liveFileOf(l, "pids.current")
	}
	return Pids{Current: Value{Value: n, Limited: true, Source: l.source(slices.Index(h.levels, l), "pids.current")}}, nil
}

// charged finds the cgroup a process's usage is counted in: its own, or on
// v2, where a controller's files exist only below a parent that enabled it
// in cgroup.subtree_control, the nearest ancestor that has the file (the
// kernel charges the process there). It returns the level and the file's
// text; a file found nowhere wraps os.ErrNotExist.
func charged(h *hierarchy, name string) (level, string, error) {
	for _, l := range h.levels {
		text, missing, err := read(l, name)
		if err != nil {
			return l, "", err
		}
		if !missing {
			return l, text, nil
		}
		if !h.v2 {
			break // v1: every cgroup of the hierarchy has the file
		}
	}
	return h.levels[0], "", parseErr(h.levels[0], name, os.ErrNotExist)
}

// StartTime is how long after boot pid started (/proc/<pid>/stat field 22,
// in clock ticks).
func (r *Reader) StartTime(pid int) (time.Duration, error) {
	file := r.procFile(pid, "stat")
	b, err := readFile(file)
	if err != nil {
		return 0, err
	}
	ticks, err := ParseStartTime(string(bytes.TrimSpace(b)))
	if err != nil {
		return 0, &ParseError{File: file, Err: err}
	}
	sec := ticks / r.clkTck
	rem := ticks % r.clkTck
	return time.Duration(sec)*time.Second + time.Duration(rem)*time.Second/time.Duration(r.clkTck), nil
}

// LoadCgroup returns the directory of pid's cgroup in the hierarchy whose
// tasks make up its load average: the cpu controller's (what LXCFS reads
// for /proc/loadavg), else the unified hierarchy's.
func (r *Reader) LoadCgroup(pid int) (string, error) {
	lines, err := r.cgroupLines(pid)
	if err != nil {
		return "", err
	}
	h, err := r.hierarchyOf(pid, "cpu", lines)
	if errors.As(err, new(*NoControllerError)) && r.v2 != nil {
		for _, l := range lines {
			if l.ID == 0 && len(l.Controllers) == 0 {
				h, err = r.walk(*r.v2, l.Path)
				break
			}
		}
	}
	if err != nil {
		return "", err
	}
	return h.levels[0].dir, nil
}
