package notify

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// TranslatePid maps pid, as thread tid sees it in its own pid namespace, to
// the agent's pid namespace: the task the kernel's find_task_by_vpid would
// find for tid (kernel/pid.c: a task of tid's own pid namespace or of one
// below it, by its number at tid's level).
//
// On Linux ≥ 6.11 the nsfs ioctl NS_GET_PID_FROM_PIDNS does the lookup in
// the kernel, so a pid the caller cannot see is ESRCH. Older kernels (5.14,
// 5.15, 6.1, 6.8: the common case) answer that ioctl with ENOTTY; there the
// pid is found through /proc/<tid>/status NSpid lines (see nspidResolver).
// That fallback never answers ESRCH itself: a pid it cannot find is
// ErrPidNotFound, and the caller lets the kernel answer (CONTINUE), which
// gives ESRCH for a pid the caller cannot see and never another
// container's data.
func TranslatePid(procRoot string, tid, pid int) (int, error) {
	if pidFromPidnsSupported() {
		return translateIoctl(procRoot, tid, pid)
	}
	return resolverFor(procRoot).translate(tid, pid)
}

// ErrPidNotFound says the /proc fallback did not find the pid among the
// tasks it looked at: let the kernel answer.
var ErrPidNotFound = errors.New("pid not found in the caller's pid namespace through /proc")

func translateIoctl(procRoot string, tid, pid int) (int, error) {
	fd, err := unix.Open(procRoot+"/"+strconv.Itoa(tid)+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open pid namespace of %d: %w", tid, err)
	}
	defer unix.Close(fd)
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.NS_GET_PID_FROM_PIDNS, uintptr(pid))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

var pidnsIoctl struct {
	once sync.Once
	ok   bool
}

// pidFromPidnsSupported probes NS_GET_PID_FROM_PIDNS once, on the agent's
// own pid namespace: a kernel without it answers ENOTTY (nsfs's default),
// and the answer cannot change while the agent runs.
func pidFromPidnsSupported() bool {
	pidnsIoctl.once.Do(func() {
		fd, err := unix.Open("/proc/self/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		self := unix.Getpid()
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.NS_GET_PID_FROM_PIDNS, uintptr(self))
		pidnsIoctl.ok = e == 0 && int(r) == self
	})
	return pidnsIoctl.ok
}

// Bounds of the /proc fallback: whatever the host or a container looks
// like, one translation reads at most this many /proc entries and this
// much of each status file.
const (
	maxScanEntries = 1 << 16 // /proc entries (processes) looked at
	maxThreadsEach = 1 << 14 // threads listed per process
	maxAncestors   = 64      // parents followed
	maxStatusBytes = 16 << 10
	maxHints       = 1024
	// maxPidNSLevel is MAX_PID_NS_LEVEL (include/linux/pid_namespace.h).
	maxPidNSLevel = 32
)

var resolvers sync.Map // procRoot -> *nspidResolver

func resolverFor(procRoot string) *nspidResolver {
	if r, ok := resolvers.Load(procRoot); ok {
		return r.(*nspidResolver)
	}
	r, _ := resolvers.LoadOrStore(procRoot, &nspidResolver{proc: procRoot, ancestors: nsAncestors})
	return r.(*nspidResolver)
}

// nspidResolver translates pids without NS_GET_PID_FROM_PIDNS.
//
// /proc/<tid>/status lists a task's pid number in every namespace from the
// procfs mount's (the agent's) down to its own: NSpid[L] is its number at
// level L. The caller's level L is len(NSpid)-1 of its own status. The
// kernel's find_task_by_vpid(pid) for the caller finds the task whose pid
// has number pid in the caller's namespace C, which is a task of C or of a
// namespace below C (they carry numbers at every level above them); a task
// of a sibling namespace at the same level can carry the same number and
// must not match, so every match is checked by namespace identity: its
// /proc/<x>/ns/pid is C, or C is one of its namespace's ancestors
// (NS_GET_PARENT, Linux 4.9).
//
// The caller's own tid and tgid — sched_getaffinity(gettid()),
// (getpid()), what glibc's pthread_getaffinity_np and OpenMP pass — are
// answered from the caller's own status. Other pids are looked for, in
// this order: the last answer for the same (namespace, pid), re-checked;
// the caller's own threads; its ancestors; then every process of /proc
// whose namespace is C or below (namespace checked first with one
// readlink), bounded by maxScanEntries.
type nspidResolver struct {
	proc string
	// ancestors returns the identities ("pid:[inode]") of the pid
	// namespaces above the one of the task whose /proc directory is dirfd,
	// nearest first, at most max of them. A seam: fixture trees fake it.
	ancestors func(dirfd int, max int) ([]string, error)

	mu    sync.Mutex
	hints map[hintKey]int
}

type hintKey struct {
	ns  string
	pid int
}

// caller is what is known about the trapped thread.
type caller struct {
	tid   int
	level int
	ns    string
	st    pidStatus
}

func (r *nspidResolver) translate(tid, pid int) (int, error) {
	if pid <= 0 {
		return 0, syscall.ESRCH
	}
	dir, err := openProcDir(r.proc, tid)
	if err != nil {
		return 0, fmt.Errorf("open %s/%d: %w", r.proc, tid, err)
	}
	defer unix.Close(dir)
	st, err := readStatus(dir)
	if err != nil {
		return 0, fmt.Errorf("status of %d: %w", tid, err)
	}
	if st.NSpid[0] != tid {
		return 0, fmt.Errorf("%s/%d/status says NSpid %v: %s is not the agent's procfs", r.proc, tid, st.NSpid, r.proc)
	}
	level := len(st.NSpid) - 1
	// The common case: the caller's own tid or tgid, from its status alone.
	switch pid {
	case st.NSpid[level]:
		return tid, nil
	case st.NStgid[level]:
		return st.NStgid[0], nil
	}
	ns, err := readlinkAt(dir, "ns/pid")
	if err != nil {
		return 0, fmt.Errorf("pid namespace of %d: %w", tid, err)
	}
	c := &caller{tid: tid, level: level, ns: ns, st: st}
	key := hintKey{ns, pid}
	if x, ok := r.hint(key); ok {
		if found, _, _ := r.check(c, x, pid); found {
			return x, nil
		}
	}
	x, err := r.search(c, pid)
	if err != nil {
		return 0, err
	}
	r.remember(key, x)
	return x, nil
}

func (r *nspidResolver) hint(k hintKey) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.hints[k]
	return x, ok
}

func (r *nspidResolver) remember(k hintKey, x int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hints == nil || len(r.hints) >= maxHints {
		r.hints = map[hintKey]int{}
	}
	r.hints[k] = x
}

func (r *nspidResolver) search(c *caller, pid int) (int, error) {
	// The caller's own threads: one thread group is in one pid namespace
	// (clone refuses CLONE_THREAD across pid namespaces).
	if c.st.Threads > 1 {
		if x, err := r.searchThreads(c, c.st.Tgid, pid, c.tid); x > 0 || err != nil {
			return x, err
		}
	}
	// Its ancestors, while they are in C or below (the parent of a
	// process that entered C with setns is outside it).
	p := c.st.PPid
	for i := 0; i < maxAncestors && p > 0; i++ {
		found, st, in := r.check(c, p, pid)
		if found {
			return p, nil
		}
		if !in || st == nil {
			break
		}
		if st.Threads > 1 {
			if x, err := r.searchThreads(c, p, pid, 0); x > 0 || err != nil {
				return x, err
			}
		}
		p = st.PPid
	}
	return r.scan(c, pid)
}

// check reports whether host task x has number pid in the caller's
// namespace (found), and whether x is in that namespace or below (in).
func (r *nspidResolver) check(c *caller, x, pid int) (found bool, st *pidStatus, in bool) {
	dir, err := openProcDir(r.proc, x)
	if err != nil {
		return false, nil, false
	}
	defer unix.Close(dir)
	in, err = r.inNamespace(c, dir, nil)
	if err != nil || !in {
		return false, nil, false
	}
	s, err := readStatus(dir)
	if err != nil || len(s.NSpid) <= c.level {
		return false, nil, false
	}
	return s.NSpid[c.level] == pid, &s, true
}

// inNamespace reports whether the task whose /proc directory is dir is in
// the caller's pid namespace or one below it. seen caches the answer per
// namespace during one scan.
func (r *nspidResolver) inNamespace(c *caller, dir int, seen map[string]bool) (bool, error) {
	ns, err := readlinkAt(dir, "ns/pid")
	if err != nil {
		return false, err
	}
	if ns == c.ns {
		return true, nil
	}
	if in, ok := seen[ns]; ok {
		return in, nil
	}
	up, err := r.ancestors(dir, maxPidNSLevel)
	if err != nil {
		return false, err
	}
	in := false
	for _, a := range up {
		if a == c.ns {
			in = true
			break
		}
	}
	if seen != nil {
		seen[ns] = in
	}
	return in, nil
}

// searchThreads looks for pid among the threads of host process tgid, all
// of which share its namespace (checked by the caller), skipping skip.
func (r *nspidResolver) searchThreads(c *caller, tgid, pid, skip int) (int, error) {
	dir := r.proc + "/" + strconv.Itoa(tgid) + "/task"
	names, err := readNames(dir, maxThreadsEach)
	if err != nil {
		return 0, nil // the process is gone: nothing to find there
	}
	for _, n := range names {
		y, err := strconv.Atoi(n)
		if err != nil || y == skip || y == tgid {
			continue
		}
		d, err := openProcDir(dir, y)
		if err != nil {
			continue
		}
		st, err := readStatus(d)
		unix.Close(d)
		if err == nil && len(st.NSpid) > c.level && st.NSpid[c.level] == pid {
			return y, nil
		}
	}
	return 0, nil
}

// scan looks at every process of /proc in the caller's namespace or below.
func (r *nspidResolver) scan(c *caller, pid int) (int, error) {
	names, err := readNames(r.proc, maxScanEntries)
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", r.proc, err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		x, err := strconv.Atoi(n)
		if err != nil || x == c.st.Tgid {
			continue
		}
		dir, err := openProcDir(r.proc, x)
		if err != nil {
			continue
		}
		in, err := r.inNamespace(c, dir, seen)
		var st pidStatus
		if err == nil && in {
			st, err = readStatus(dir)
		}
		unix.Close(dir)
		if err != nil || !in || len(st.NSpid) <= c.level {
			continue
		}
		if st.NSpid[c.level] == pid {
			return x, nil
		}
		if st.Threads > 1 {
			if y, err := r.searchThreads(c, x, pid, 0); y > 0 || err != nil {
				return y, err
			}
		}
	}
	return 0, ErrPidNotFound
}

func openProcDir(root string, pid int) (int, error) {
	return unix.Open(root+"/"+strconv.Itoa(pid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// readStatus reads at most maxStatusBytes of the status file in dir: the
// lines needed come early (a status cut short before NSpid, by a Groups
// line of thousands of groups, is an error, and the kernel answers).
func readStatus(dir int) (pidStatus, error) {
	fd, err := unix.Openat(dir, "status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pidStatus{}, err
	}
	defer unix.Close(fd)
	bp := statusBufs.Get().(*[]byte)
	defer statusBufs.Put(bp)
	buf := (*bp)[:0]
	for len(buf) < cap(buf) {
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return pidStatus{}, err
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	return parsePidStatus(buf)
}

var statusBufs = sync.Pool{New: func() any { b := make([]byte, maxStatusBytes); return &b }}

func readlinkAt(dir int, name string) (string, error) {
	buf := make([]byte, 64)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// readNames lists at most max entries of dir.
func readNames(dir string, max int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	for len(out) < max {
		n, err := f.Readdirnames(min(256, max-len(out)))
		out = append(out, n...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// nsAncestors walks up from the pid namespace of the task whose /proc
// directory is dirfd with the nsfs ioctl NS_GET_PARENT (Linux 4.9), which
// fails with EPERM above the agent's own namespace.
func nsAncestors(dirfd int, max int) ([]string, error) {
	fd, err := unix.Openat(dirfd, "ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for len(out) < max {
		p, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.NS_GET_PARENT, 0)
		unix.Close(fd)
		if e == unix.EPERM {
			return out, nil
		}
		if e != 0 {
			return nil, e
		}
		fd = int(p)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, err
		}
		out = append(out, "pid:["+strconv.FormatUint(st.Ino, 10)+"]")
	}
	unix.Close(fd)
	return out, nil
}
