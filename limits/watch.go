package limits

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Limits that the kernel tells us about when they change.
//
// Every write to a cgroup file through write(2) (runc update, a pod resize,
// systemd setting MemoryMax=, a runtime moving a task by writing
// cgroup.procs) makes the kernel queue an IN_MODIFY inotify event for the
// watched directory holding it (vfs_write → fsnotify_modify; kernfs is no
// exception). So a resolution of a thread's cgroups can be kept until a
// directory it read from is written to: the watcher counts the events of
// each watched cgroup directory (its generation), a resolution records the
// generations before it reads, and it is still good while they are
// unchanged. A limit change then shows as soon as the agent has read the
// event (microseconds; on a starved node, the time it takes to get a CPU),
// sooner than limitTTL would, and a container calling once a second does
// not read its limits once a second.
//
// What no write announces is bounded by stampTTL: a cpuset's effective CPUs
// after CPU hotplug, the host's MemTotal after memory hotplug. A full event
// queue (IN_Q_OVERFLOW) invalidates everything. Where inotify is missing or
// out of watches (fs.inotify.max_user_watches), resolutions are not kept
// beyond limitTTL.

// watchMask is what a watch asks for: writes to files in the directory, and
// the directory itself going away.
const watchMask = unix.IN_MODIFY | unix.IN_ONLYDIR | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// stampTTL bounds how long a resolution is trusted with no write seen.
const stampTTL = 30 * time.Second

// watchIdle is how long a watched directory may go unused by any
// resolution before its watch is removed (the sweep also removes the
// watches of removed cgroups, which kernfs does not report).
const watchIdle = 5 * time.Minute

// watcher holds one inotify instance for the cgroup directories resolutions
// read from.
type watcher struct {
	fd   int
	all  atomic.Uint64 // bumped on a queue overflow: every stamp is void
	dead atomic.Bool   // the event reader stopped: nothing is trusted

	mu   sync.Mutex
	dirs map[string]*watchedDir // by path
	wds  map[int32]*watchedDir
}

type watchedDir struct {
	path string
	wd   int32
	gen  atomic.Uint64
	used atomic.Int64 // unix nanoseconds of the last resolution using it
}

// watch is the process's watcher, started on first use; nil where inotify
// is not available (resolutions then are not kept beyond limitTTL).
var watch = sync.OnceValue(newWatcher)

func newWatcher() *watcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	w := &watcher{fd: fd, dirs: map[string]*watchedDir{}, wds: map[int32]*watchedDir{}}
	go w.read()
	go w.sweep()
	return w
}

// dir returns the watch on a cgroup directory, adding it if needed; nil
// when the kernel refuses (no such directory, no watches left).
func (w *watcher) dir(path string) *watchedDir {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := unix.InotifyAddWatch(w.fd, path, watchMask)
	if err != nil {
		return nil
	}
	d := w.dirs[path]
	if d != nil && d.wd != int32(wd) {
		// The path names a new directory (a cgroup removed and made
		// again): the old watch is void.
		w.drop(d)
		d = nil
	}
	if d == nil {
		if d = w.wds[int32(wd)]; d == nil {
			d = &watchedDir{path: path, wd: int32(wd)}
			w.wds[d.wd] = d
		}
		w.dirs[path] = d
	}
	d.used.Store(time.Now().UnixNano())
	return d
}

// drop forgets d and voids every stamp holding it; w.mu is held.
func (w *watcher) drop(d *watchedDir) {
	d.gen.Add(1)
	if w.dirs[d.path] == d {
		delete(w.dirs, d.path)
	}
	if w.wds[d.wd] == d {
		delete(w.wds, d.wd)
		_, _ = unix.InotifyRmWatch(w.fd, uint32(d.wd))
	}
}

// read counts events until the process ends.
func (w *watcher) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			// Cannot happen on a live inotify fd; if it does, trust
			// nothing from now on.
			w.dead.Store(true)
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				w.all.Add(1)
				continue
			}
			w.mu.Lock()
			if d := w.wds[ev.Wd]; d != nil {
				d.gen.Add(1)
				if ev.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
					w.drop(d)
				}
			}
			w.mu.Unlock()
		}
	}
}

// sweep removes, every minute, the watches no resolution used for
// watchIdle and those whose directory is gone or was made anew (kernfs
// reports neither).
func (w *watcher) sweep() {
	for range time.Tick(time.Minute) {
		now := time.Now().UnixNano()
		w.mu.Lock()
		for _, d := range w.dirs {
			if now-d.used.Load() >= int64(watchIdle) {
				w.drop(d)
				continue
			}
			// Adding a watch again on the same directory returns its
			// wd; a removed cgroup fails, a new one at the path gets a
			// new wd, which nobody asked for yet.
			wd, err := unix.InotifyAddWatch(w.fd, d.path, watchMask)
			if err == nil && int32(wd) == d.wd {
				continue
			}
			if err == nil && w.wds[int32(wd)] == nil {
				_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
			}
			w.drop(d)
		}
		w.mu.Unlock()
	}
}

// stamp is what a resolution saw of its directories before it read them.
type stamp struct {
	w    *watcher
	all  uint64
	dirs []*watchedDir
	gens []uint64
	at   time.Time
}

// stampDirs watches dirs and records their generations; nil when any
// cannot be watched.
func (w *watcher) stampDirs(dirs []string) *stamp {
	if w == nil || w.dead.Load() {
		return nil
	}
	s := &stamp{w: w, all: w.all.Load(), at: time.Now()}
	for _, p := range dirs {
		d := w.dir(p)
		if d == nil {
			return nil
		}
		s.dirs = append(s.dirs, d)
		s.gens = append(s.gens, d.gen.Load())
	}
	return s
}

// valid reports whether nothing was written to the stamped directories
// since, within stampTTL.
func (s *stamp) valid() bool {
	if s == nil || time.Since(s.at) >= stampTTL || s.w.all.Load() != s.all || s.w.dead.Load() {
		return false
	}
	for i, d := range s.dirs {
		if d.gen.Load() != s.gens[i] {
			return false
		}
	}
	return true
}
