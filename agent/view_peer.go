package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/seccompagent/seccompagent/limits"
	"golang.org/x/sys/unix"
)

// viewPeer asks the kernel who connected: SO_PEERCRED's pid is the process
// that called connect(2), translated into the agent's pid namespace when the
// agent reads it (net/core/sock.c cred_to_ucred). SO_PEERPIDFD (Linux 6.5)
// additionally pins that process, so the pid can be checked not to have been
// reused; -1 without it.
func viewPeer(conn *net.UnixConn) (*unix.Ucred, int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, -1, err
	}
	var (
		cred  *unix.Ucred
		cerr  error
		pidfd = -1
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr == nil {
			if p, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
				pidfd = p
			}
		}
	}); err != nil {
		return nil, -1, err
	}
	if cerr != nil {
		return nil, -1, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred, pidfd, nil
}

func closePidfd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// startTime is /proc/<pid>/stat's start time in clock ticks.
func (v *ViewServer) startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(v.procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return limits.ParseStartTime(string(bytes.TrimSpace(b)))
}

// samePeer reports whether pid still names the process that connected.
// A live pidfd proves it (a pid number is not reused while its process
// lives, zombies included); without one, an unchanged start time is the
// best the kernel offers.
func (v *ViewServer) samePeer(pid, pidfd int, start uint64) bool {
	if pidfd >= 0 {
		return unix.PidfdSendSignal(pidfd, 0, nil, 0) == nil
	}
	now, err := v.startTime(pid)
	return err == nil && now == start
}

// peerKey names the budget a peer draws from: the pid namespace just below
// the agent's that holds it (a container: every process in it shares one
// budget, however many nested pid namespaces or cgroups it makes), else,
// for processes in the agent's own namespace such as `seccompagent exec`
// jobs, its cgroups.
func (v *ViewServer) peerKey(pid int) (string, error) {
	ns, err := topPidNS(filepath.Join(v.procRoot, strconv.Itoa(pid), "ns/pid"), v.selfPidNSIno)
	if err != nil {
		return "", err
	}
	if ns != 0 {
		return "pidns:" + strconv.FormatUint(ns, 10), nil
	}
	f, err := os.Open(filepath.Join(v.procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if n == 0 {
		return "", fmt.Errorf("read cgroups of %d: %w", pid, err)
	}
	return "cgroup:" + string(b[:n]), nil
}

// nsGetParent is NS_GET_PARENT (include/uapi/linux/nsfs.h, Linux 4.9): an
// fd for the parent of a pid namespace.
const nsGetParent = 0xb702

// topPidNS walks from the pid namespace at path up to the one whose parent
// is self (the agent's, by inode) and returns its inode; 0 when path is
// self. Pid namespaces nest at most 32 deep (kernel/pid_namespace.c
// MAX_PID_NS_LEVEL).
func topPidNS(path string, self uint64) (uint64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	for i := 0; ; i++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return 0, err
		}
		if st.Ino == self {
			unix.Close(fd)
			return 0, nil
		}
		parent, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsGetParent, 0)
		if e != 0 || i >= 32 {
			// EPERM: the parent is not ours to see (the agent is not
			// in an ancestor): this namespace is the best key.
			unix.Close(fd)
			return st.Ino, nil
		}
		var pst unix.Stat_t
		if err := unix.Fstat(int(parent), &pst); err != nil || pst.Ino == self {
			unix.Close(int(parent))
			unix.Close(fd)
			return st.Ino, nil
		}
		unix.Close(fd)
		fd = int(parent)
	}
}

// nsPid is pid as the process sees itself: the last NSpid entry of
// /proc/<pid>/status.
func nsPid(procRoot string, pid int) (int, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.Atoi(f[len(f)-1])
		}
	}
	return 0, errors.New("no NSpid line")
}

func getaffinity(pid int, buf []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_SCHED_GETAFFINITY, uintptr(pid), uintptr(len(buf)), uintptr(unsafe.Pointer(&buf[0])))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// peerTable is the per-peer budget: answers in progress and a token bucket.
type peerTable struct {
	mu sync.Mutex
	m  map[string]*peer
}

type peer struct {
	active int
	tokens float64
	last   time.Time
}

// take spends one token of key's bucket and one of its connection slots,
// or reports that the peer is over budget.
func (t *peerTable) take(key string, now time.Time, cfg ViewConfig) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.m[key]
	if p == nil {
		if len(t.m) >= cfg.MaxPeers {
			t.sweep(now, cfg)
			if len(t.m) >= cfg.MaxPeers {
				// Every known peer is busy or recently active: a new
				// one waits for room rather than growing the table.
				return false
			}
		}
		p = &peer{tokens: cfg.Burst, last: now}
		t.m[key] = p
	}
	p.tokens = min(cfg.Burst, p.tokens+now.Sub(p.last).Seconds()*cfg.Rate)
	p.last = now
	if p.active >= cfg.MaxPerPeer || p.tokens < 1 {
		return false
	}
	p.tokens--
	p.active++
	return true
}

func (t *peerTable) done(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.m[key]; p != nil {
		p.active--
	}
}

// sweep drops peers with nothing in progress whose bucket has refilled:
// forgetting them gives them nothing they would not have anyway.
func (t *peerTable) sweep(now time.Time, cfg ViewConfig) {
	for k, p := range t.m {
		if p.active == 0 && p.tokens+now.Sub(p.last).Seconds()*cfg.Rate >= cfg.Burst {
			delete(t.m, k)
		}
	}
}

// backoff is the accept loop's wait after a failed accept: 5 ms doubling to
// 1 s, reset by the next successful accept.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = 5 * time.Millisecond
	} else {
		b.d = min(2*b.d, time.Second)
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }
