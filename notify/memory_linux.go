package notify

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"

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
	mem  *os.File
	maps *os.File
	buf  []byte
}

var _ Memory = (*procMem)(nil)

func openProcMem(procRoot string, tid int) (*procMem, error) {
	dir := procRoot + "/" + strconv.Itoa(tid)
	mem, err := os.OpenFile(dir+"/mem", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	maps, err := os.Open(dir + "/maps")
	if err != nil {
		mem.Close()
		return nil, err
	}
	return &procMem{mem: mem, maps: maps}, nil
}

func (m *procMem) Close() {
	m.mem.Close()
	m.maps.Close()
}

// Write implements Memory.
func (m *procMem) Write(addr uint64, p []byte) error {
	n, err := m.writable(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	if n > 0 {
		w, werr := unix.Pwrite(int(m.mem.Fd()), p[:n], int64(addr))
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
	m.buf = m.buf[:0]
	if _, err := m.maps.Seek(0, 0); err != nil {
		return 0, fmt.Errorf("rewind maps: %w", err)
	}
	for {
		if len(m.buf) == cap(m.buf) {
			m.buf = append(m.buf, make([]byte, 16<<10)...)[:len(m.buf)]
		}
		n, err := m.maps.Read(m.buf[len(m.buf):cap(m.buf)])
		m.buf = m.buf[:len(m.buf)+n]
		if n == 0 || err != nil {
			break
		}
	}
	return writableRun(m.buf, addr, end), nil
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
