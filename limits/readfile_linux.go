package limits

import (
	"errors"
	"io/fs"
	"sync"
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

func preadAll(fd int, path string) ([]byte, error) {
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
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	*bp = buf
	return append([]byte(nil), buf...), nil
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

type openFile struct {
	fd   int
	refs int  // readers using fd right now
	dead bool // evicted or gone: close when the last reader is done
	used time.Time
}

type fileTable struct {
	mu      sync.Mutex
	m       map[string]*openFile
	sweeper sync.Once
}

// idleClose is how long a kept file may go unread before it is closed: the
// files of a container that stopped calling (or is gone) are let go within
// a few seconds, while a caller of one call a second keeps its files open.
const idleClose = 3 * time.Second

func (t *fileTable) get(path string) *openFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[path]
	if f != nil {
		f.refs++
		f.used = time.Now()
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
		now := time.Now()
		t.mu.Lock()
		for p, f := range t.m {
			if now.Sub(f.used) >= idleClose {
				delete(t.m, p)
				f.dead = true
				if f.refs == 0 {
					unix.Close(f.fd)
				}
			}
		}
		t.mu.Unlock()
	}
}

func (t *fileTable) release(f *openFile, drop bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if drop && !f.dead {
		f.dead = true
		for p, g := range t.m {
			if g == f {
				delete(t.m, p)
				break
			}
		}
	}
	if f.refs--; f.refs == 0 && f.dead {
		unix.Close(f.fd)
	}
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
			g.dead = true
			if g.refs == 0 {
				unix.Close(g.fd)
			}
			if n++; n == 64 {
				break
			}
		}
	}
	t.m[path] = &openFile{fd: fd, used: time.Now()}
	t.sweeper.Do(func() { go t.sweep() })
	return true
}
