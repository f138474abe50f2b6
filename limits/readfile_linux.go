package limits

import (
	"io/fs"
	"sync"

	"golang.org/x/sys/unix"
)

// readFile reads a small kernel file (cgroup or /proc) with raw syscalls.
// The agent reads a dozen of these per trapped call; os.ReadFile's extra
// fstat, poller check and allocation double the cost of each.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
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
