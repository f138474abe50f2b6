package notify

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procMem writes into one thread's address space through /proc/<tid>/mem.
//
// Both files are opened before the notification id is validated: each pins
// the mm it was opened on, so once the id is known valid they can only reach
// the trapped thread's memory even if the tid is later reused.
//
// /proc/<tid>/mem writes with FOLL_FORCE, i.e. it would happily write into a
// read-only mapping where the kernel's copy_to_user faults. So every write is
// checked against /proc/<tid>/maps first, and stops at the first byte that is
// not mapped writable, as copy_to_user would.
type procMem struct {
	mem  int
	maps int
	buf  []byte
}

var _ Memory = (*procMem)(nil)

func openProcMem(procRoot string, tid int) (*procMem, error) {
	// Raw fds: this is the hot path, and os.File's poller registration
	// and finalizer buy nothing for two short-lived /proc files.
	dir := procRoot + "/" + strconv.Itoa(tid)
	mem, err := unix.Open(dir+"/mem", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir + "/mem", Err: err}
	}
	maps, err := unix.Open(dir+"/maps", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(mem)
		return nil, &os.PathError{Op: "open", Path: dir + "/maps", Err: err}
	}
	return &procMem{mem: mem, maps: maps}, nil
}

func (m *procMem) Close() {
	unix.Close(m.mem)
	unix.Close(m.maps)
}

// Write implements Memory.
func (m *procMem) Write(addr uint64, p []byte) error {
	n, err := m.writable(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	if n > 0 {
		w, werr := unix.Pwrite(m.mem, p[:n], int64(addr))
		if werr != nil || w != int(n) {
			return syscall.EFAULT
		}
	}
	if n < uint64(len(p)) {
		return syscall.EFAULT
	}
	return nil
}

// writable returns how many bytes from addr on are mapped writable, up to size.
func (m *procMem) writable(addr, size uint64) (uint64, error) {
	if size == 0 {
		return 0, nil
	}
	end := addr + size
	if end < addr { // wraps: access_ok fails before anything is copied
		return 0, nil
	}
	if !noProcmapQuery.Load() {
		n, err := m.queryWritable(addr, end)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
			return 0, err
		}
		noProcmapQuery.Store(true) // Linux < 6.11: parse the text instead
	}
	m.buf = m.buf[:0]
	if _, err := unix.Seek(m.maps, 0, 0); err != nil {
		return 0, fmt.Errorf("rewind maps: %w", err)
	}
	for {
		if len(m.buf) == cap(m.buf) {
			m.buf = append(m.buf, make([]byte, 16<<10)...)[:len(m.buf)]
		}
		n, err := unix.Read(m.maps, m.buf[len(m.buf):cap(m.buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read maps: %w", err)
		}
		if n == 0 {
			break
		}
		m.buf = m.buf[:len(m.buf)+n]
	}
	return writableRun(m.buf, addr, end), nil
}

// procmapQuery is struct procmap_query (include/uapi/linux/fs.h, Linux 6.11+).
type procmapQuery struct {
	Size        uint64
	QueryFlags  uint64
	QueryAddr   uint64
	VMAStart    uint64
	VMAEnd      uint64
	VMAFlags    uint64
	VMAPageSize uint64
	VMAOffset   uint64
	Inode       uint64
	DevMajor    uint32
	DevMinor    uint32
	VMANameSize uint32
	BuildIDSize uint32
	VMANameAddr uint64
	BuildIDAddr uint64
}

const (
	// PROCMAP_QUERY = _IOWR('f', 17, struct procmap_query)
	ioctlProcmapQuery    = 0xC0000000 | uint(unsafe.Sizeof(procmapQuery{}))<<16 | 'f'<<8 | 17
	procmapQueryVMAWrite = 0x02
)

// noProcmapQuery is set once the kernel has said it has no PROCMAP_QUERY.
var noProcmapQuery atomic.Bool

// queryWritable asks the kernel for the VMAs covering [addr, end) one by
// one, which costs a fraction of rendering and parsing the maps text.
func (m *procMem) queryWritable(addr, end uint64) (uint64, error) {
	cur := addr
	for cur < end {
		q := procmapQuery{Size: uint64(unsafe.Sizeof(procmapQuery{})), QueryAddr: cur}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(m.maps), uintptr(ioctlProcmapQuery), uintptr(unsafe.Pointer(&q)))
		if e == unix.ENOENT {
			break // nothing mapped at cur
		}
		if e != 0 {
			return 0, e
		}
		if q.VMAStart > cur || q.VMAFlags&procmapQueryVMAWrite == 0 {
			break
		}
		cur = q.VMAEnd
	}
	return min(cur, end) - addr, nil
}

// writableRun scans maps text (sorted by address, as the kernel prints it)
// and returns the length of the writable run that starts at addr, capped at
// end-addr.
func writableRun(maps []byte, addr, end uint64) uint64 {
	cur := addr
	for len(maps) > 0 && cur < end {
		line := maps
		if i := bytes.IndexByte(maps, '\n'); i >= 0 {
			line, maps = maps[:i], maps[i+1:]
		} else {
			maps = nil
		}
		lo, hi, perms, ok := parseMapsLine(line)
		if !ok || hi <= cur {
			continue
		}
		if lo > cur || len(perms) < 2 || perms[1] != 'w' {
			break
		}
		cur = hi
	}
	if cur > end {
		cur = end
	}
	return cur - addr
}

func parseMapsLine(line []byte) (lo, hi uint64, perms []byte, ok bool) {
	dash := bytes.IndexByte(line, '-')
	sp := bytes.IndexByte(line, ' ')
	if dash <= 0 || sp <= dash {
		return 0, 0, nil, false
	}
	lo, err1 := strconv.ParseUint(string(line[:dash]), 16, 64)
	hi, err2 := strconv.ParseUint(string(line[dash+1:sp]), 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, nil, false
	}
	rest := line[sp+1:]
	if i := bytes.IndexByte(rest, ' '); i >= 0 {
		rest = rest[:i]
	}
	return lo, hi, rest, true
}
