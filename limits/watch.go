package limits

import (
	"bytes"
	"os"
	"strconv"
	"strings"
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
// kernfs raises nothing on a removed cgroup directory's own watch, so a
// cgroup removed and made again is seen on its parent's watch (IN_DELETE,
// IN_CREATE of a directory), which every stamp holds (it watches every
// level up to the mount's root). The kernel also raises IN_MODIFY by itself
// on its event files (memory.events on every reclaim at the limit,
// cgroup.events when a task exits): those are not writes and change no
// limit, and are not counted.
//
// What no write announces is bounded by stampTTL: a cpuset's effective CPUs
// after CPU hotplug. The host's totals are compared on every call
// (Reader.sample). A full event queue (IN_Q_OVERFLOW) invalidates
// everything. Where inotify is missing or out of watches (the agent takes
// at most a quarter of fs.inotify.max_user_watches), resolutions are not
// kept beyond limitTTL.

// watchMask is what a watch asks for: writes to files in the directory,
// subdirectories made or removed (a cgroup removed and made again under a
// watched parent: kernfs raises nothing on the removed directory's own
// watch), and the directory itself going away.
const watchMask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_DELETE | unix.IN_ONLYDIR | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

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
	max  int           // watches this watcher may hold (see newWatcher)
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
	// Watches count against fs.inotify.max_user_watches, which root's
	// other daemons (systemd, kubelet, containerd) share: take at most a
	// quarter of it. Beyond, resolutions are kept for limitTTL only.
	limit := 8192
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			limit = v
		}
	}
	w := &watcher{fd: fd, max: limit / 4, dirs: map[string]*watchedDir{}, wds: map[int32]*watchedDir{}}
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
	if d := w.dirs[path]; d == nil && len(w.wds) >= w.max {
		return nil
	}
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
			name := eventName(buf[off+unix.SizeofInotifyEvent : min(n, off+unix.SizeofInotifyEvent+int(ev.Len))])
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				w.all.Add(1)
				continue
			}
			w.event(ev.Wd, ev.Mask, name)
		}
	}
}

// event applies one inotify event to the watched directories.
func (w *watcher) event(wd int32, mask uint32, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.wds[wd]
	switch {
	case d == nil:
	case mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
		w.drop(d)
	case mask&unix.IN_ISDIR != 0:
		// A child cgroup made or removed: its own watch, if any, is
		// void (a new directory at its path is not what it watched).
		if c := w.dirs[d.path+"/"+name]; c != nil {
			w.drop(c)
		}
	case kernelRaised(name):
		// Not a write: the kernel's own notification of an event
		// counter or state (memory.events on every reclaim at the
		// limit, cgroup.events when a task exits). It changes no limit
		// and no membership.
	default:
		d.gen.Add(1)
	}
}

// kernelRaised reports a cgroup file whose IN_MODIFY the kernel raises by
// itself (cgroup_file_notify): cgroup.events, memory.events(.local),
// memory.swap.events, pids.events(.local), misc.events, hugetlb's.
func kernelRaised(name string) bool {
	return strings.HasSuffix(name, ".events") || strings.HasSuffix(name, ".events.local")
}

// eventName is the NUL-padded name of an inotify event.
func eventName(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
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
