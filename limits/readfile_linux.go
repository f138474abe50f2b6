package limits

import (
	"errors"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// readFile reads a small kernel file (cgroup, /proc or /sys) with raw
// syscalls. The agent reads several of these per trapped call, and opening
// one (a path walk through cgroupfs or procfs) costs several times reading
// it: files on those filesystems are therefore kept open (see openFiles)
// and read again with pread at offset 0, which makes the kernel render them
// afresh (seq_read_iter restarts at the first record for a read at 0).
func readFile(path string) ([]byte, error) {
	if f := openFiles.get(path); f != nil {
		b, err := preadAll(f.fd, path)
		openFiles.release(f, gone(err))
		if !gone(err) {
			return b, err
		}
		// The cgroup or task this fd was opened on is gone; the path
		// may name a new one now: open it again.
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	b, err := preadAll(fd, path)
	if err != nil || !openFiles.add(path, fd) {
		unix.Close(fd)
	}
	return b, err
}

// gone reports a read error that means the file's object no longer exists
// (the validity the kernel vouches for): ENODEV from a removed cgroup's
// kernfs node, ESRCH from a /proc/<pid> file whose task has exited (the fd
// holds that task's struct pid, never a later task with the same number).
func gone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ESRCH)
}

// pread reads from offset 0, retrying on EINTR.
func pread(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Pread(fd, buf, 0)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func preadAll(fd int, path string) (out []byte, err error) {
	err = preadWith(fd, path, func(b []byte) { out = append([]byte(nil), b...) })
	return out, err
}

// preadWith reads all of fd from offset 0 into a pooled buffer and gives
// it to fn, which must not keep it.
func preadWith(fd int, path string, fn func([]byte)) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Pread(fd, buf[len(buf):cap(buf)], int64(len(buf)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	*bp = buf
	fn(buf)
	return nil
}

// statIdentity returns the (st_dev, st_ino) of a cgroup directory.
func statIdentity(dir string) (cgroupKey, error) {
	var st unix.Stat_t
	err := unix.Stat(dir, &st)
	for err == unix.EINTR {
		err = unix.Stat(dir, &st)
	}
	if err != nil {
		return cgroupKey{}, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	return cgroupKey{dev: uint64(st.Dev), ino: st.Ino}, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxOpenFiles bounds the fds kept open (a few per container cgroup level
// and one /proc/<tid>/cgroup per calling thread, each closed after idleClose
// unread): 2048, and never more than
// an eighth of RLIMIT_NOFILE, which the listener fds and runtime
// connections need far more.
var maxOpenFiles = sync.OnceValue(func() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 64
	}
	return int(min(2048, max(rl.Cur/8, 16)))
})

// openFiles keeps cgroupfs, procfs and sysfs files open by path. Only
// those: there an open fd either reads its own object afresh or fails
// (ENODEV, ESRCH) once the object is gone, so a cached fd can never read a
// different cgroup or task than a fresh open would, except one that
// replaced it at the same path, which gone() catches. A regular file (test
// fixtures) could be replaced by a rename and is never kept.
var openFiles = fileTable{m: map[string]*openFile{}}

// openFile is one kept-open file. A reader pins it for the length of a
// read; a file taken out of the table (evicted, idle, or gone) is closed
// by whoever unpins it last, so a read never meets a closed or reused fd.
// Pinning is two atomic operations, no lock: a call's counters go through
// it on every call.
type openFile struct {
	path string
	fd   int
	pins atomic.Int32 // readers using fd now; -1 once fd is closed
	dead atomic.Bool  // out of the table: close when the last reader is done
	used atomic.Int64 // the fileTable's tick at the last pin
}

// pin makes fd safe to read until unpin; false once f is out of the table.
func (f *openFile) pin() bool {
	for {
		n := f.pins.Load()
		if n < 0 {
			return false
		}
		if f.pins.CompareAndSwap(n, n+1) {
			break
		}
	}
	if f.dead.Load() {
		f.unpin()
		return false
	}
	f.used.Store(openFiles.tick.Load())
	return true
}

func (f *openFile) unpin() {
	if f.pins.Add(-1) == 0 && f.dead.Load() {
		f.closeIfUnpinned()
	}
}

// kill marks f out of the table (the caller removed it) and closes it
// unless a reader has it pinned.
func (f *openFile) kill() {
	f.dead.Store(true)
	f.closeIfUnpinned()
}

func (f *openFile) closeIfUnpinned() {
	if f.pins.CompareAndSwap(0, -1) {
		unix.Close(f.fd)
	}
}

type fileTable struct {
	mu      sync.Mutex
	m       map[string]*openFile
	sweeper sync.Once
	// tick counts the sweeper's seconds: a pin records it instead of
	// reading the clock.
	tick atomic.Int64
}

// idleClose is how long a kept file may go unread before it is closed: the
// files of a container that stopped calling (or is gone) are let go within
// a few seconds, while a caller of one call a second keeps its files open.
const idleClose = 3 * time.Second

// get returns the file kept open under path, pinned, or nil.
func (t *fileTable) get(path string) *openFile {
	t.mu.Lock()
	f := t.m[path]
	t.mu.Unlock()
	if f == nil || !f.pin() {
		return nil
	}
	return f
}

// peek returns the file kept open under path, if any, without reading it.
func (t *fileTable) peek(path string) *openFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[path]
}

// sweep closes, once a second, the files nobody read for idleClose.
func (t *fileTable) sweep() {
	for range time.Tick(time.Second) {
		now := t.tick.Add(1)
		t.mu.Lock()
		for p, f := range t.m {
			if time.Duration(now-f.used.Load())*time.Second >= idleClose {
				delete(t.m, p)
				f.kill()
			}
		}
		t.mu.Unlock()
	}
}

// release unpins f after a read; drop takes it out of the table (its
// cgroup or task is gone).
func (t *fileTable) release(f *openFile, drop bool) {
	if drop && !f.dead.Load() {
		t.mu.Lock()
		if t.m[f.path] == f {
			delete(t.m, f.path)
		}
		t.mu.Unlock()
		f.dead.Store(true)
	}
	f.unpin()
}

// add keeps fd open under path if it is on a kernel filesystem; it reports
// whether the table took the fd.
func (t *fileTable) add(path string, fd int) bool {
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil {
		return false
	}
	switch st.Type {
	case unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC, unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC:
	default:
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[path]; ok {
		return false // another reader opened it meanwhile
	}
	if len(t.m) >= maxOpenFiles() {
		// Evict a few at random (map order): tasks that exited and
		// cgroups that were removed are the bulk of a full table.
		n := 0
		for p, g := range t.m {
			delete(t.m, p)
			g.kill()
			if n++; n == 64 {
				break
			}
		}
	}
	f := &openFile{path: path, fd: fd}
	f.used.Store(t.tick.Load())
	t.m[path] = f
	t.sweeper.Do(func() { go t.sweep() })
	return true
}
