package sysinfo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seccompagent/seccompagent/internal/taskcache"
)

// Time namespaces (Linux 5.6). The kernel reports sysinfo's uptime in the
// caller's time namespace (kernel/sys.c do_sysinfo: timens_add_boottime), so
// a program in a namespace with a boottime offset (a container restored by
// CRIU, `unshare --time --boottime N`) sees the offset. The container view
// keeps that: uptime = (now − init's start) + (offset(caller) − offset(init)).
//
// What the kernel lets us know (kernel/time/namespace.c, kernel/nsproxy.c):
//   - /proc/<tid>/ns/time is the task's own time namespace,
//     ns/time_for_children the one its children will get.
//   - /proc/<tid>/timens_offsets shows the offsets of time_for_children,
//     relative to the host's clocks (a new namespace starts with its
//     parent's offsets, and what is written there is absolute). So it is the
//     task's own offset only when both links name the same namespace.
//   - A task's own time namespace changes on setns(CLONE_NEWTIME) (only in a
//     single-threaded process, and it switches time_for_children too), and on
//     execve when time_for_children differs from it (fs/exec.c; measured:
//     `unshare --time --boottime N cat /proc/uptime` shows the offset);
//     unshare(CLONE_NEWTIME) changes only time_for_children. A tid therefore
//     does not vouch for a namespace (exec keeps the leader's tid, setns
//     keeps the tid), and nsfs inode numbers are reused once a namespace is
//     freed, so neither keys a cache on its own: the links are compared
//     (two readlinks; the offsets file is read only when the caller and the
//     init are in different namespaces), and the result is reused for the
//     same thread and init for deltaTTL.
//   - A namespace's offsets cannot change once a task has entered it
//     (timens_offsets is refused then), and a trapped thread cannot change
//     its own namespaces while it waits for our answer.
//
// When an offset cannot be known (the task's own namespace is neither the
// agent's nor its time_for_children), the whole call is answered by the
// kernel (CONTINUE): an unknown offset is never guessed as 0.

// ErrUnknownTimeOffset says a task's boottime offset cannot be read.
var ErrUnknownTimeOffset = errors.New("time namespace offset unknown: the task's own time namespace is neither the agent's nor its time_for_children")

// timeNS reads time namespace links and offsets under a procfs root.
type timeNS struct {
	once    sync.Once
	proc    string
	agentNS string // "" when the kernel has no time namespaces
	agent   offsetResult
	deltas  taskcache.Cache[time.Duration]
}

type offsetResult struct {
	off time.Duration
	err error
}

func (n *timeNS) init(procRoot string) {
	n.once.Do(func() {
		n.proc = procRoot
		link, err := readlink(n.proc + "/self/ns/time")
		if errors.Is(err, fs.ErrNotExist) {
			return // no CONFIG_TIME_NS: every task has offset 0
		}
		if err != nil {
			n.agentNS, n.agent.err = "?", err
			return
		}
		n.agentNS = link
		n.agent.off, n.agent.err = n.ownOffset("self", link)
	})
}

// deltaTTL is how long a thread's delta is reused: the links cost two
// /proc lookups (a few µs, more than the rest of an answer), and a thread's
// own time namespace changes only when it execs into a namespace an unshare
// prepared or setns()s itself. A thread that did either after a call shows
// its new offset within deltaTTL (the bound a move to another cgroup has,
// limits.memberTTL); a new process, the usual way into a namespace, is a
// new thread id.
const deltaTTL = 2 * time.Second

// boottimeDelta is offset(tid) − offset(init): what the caller's uptime
// differs by from the container's.
func (n *timeNS) boottimeDelta(procRoot string, tid, init int) (time.Duration, error) {
	n.init(procRoot)
	if n.agentNS == "" {
		return 0, nil
	}
	key := taskcache.Key{Tid: tid, Scope: init}
	if d, ok := n.deltas.Get(key, deltaTTL); ok {
		return d, nil
	}
	d, err := n.delta(tid, init)
	if err == nil {
		n.deltas.Put(key, d, deltaTTL)
	}
	return d, err
}

func (n *timeNS) delta(tid, init int) (time.Duration, error) {
	callerNS, err := readlink(n.proc + "/" + strconv.Itoa(tid) + "/ns/time")
	if err != nil {
		return 0, err
	}
	initNS, err := readlink(n.proc + "/" + strconv.Itoa(init) + "/ns/time")
	if err != nil {
		return 0, err
	}
	if callerNS == initNS {
		return 0, nil // the common case: one namespace, whatever its offset
	}
	oc, err := n.offset(strconv.Itoa(tid), callerNS)
	if err != nil {
		return 0, err
	}
	oi, err := n.offset(strconv.Itoa(init), initNS)
	if err != nil {
		return 0, err
	}
	return oc - oi, nil
}

// offset is the boottime offset of the task's own time namespace ns.
func (n *timeNS) offset(task, ns string) (time.Duration, error) {
	if ns == n.agentNS {
		return n.agent.off, n.agent.err
	}
	return n.ownOffset(task, ns)
}

// ownOffset reads the task's timens_offsets when its time_for_children is
// its own namespace ns, and checks afterwards that it still is (the init
// is not stopped while we read).
func (n *timeNS) ownOffset(task, ns string) (time.Duration, error) {
	dir := n.proc + "/" + task
	same := func() (bool, error) {
		fc, err := readlink(dir + "/ns/time_for_children")
		if err != nil {
			return false, err
		}
		own, err := readlink(dir + "/ns/time")
		return fc == ns && own == ns, err
	}
	ok, err := same()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, ErrUnknownTimeOffset
	}
	f, err := os.Open(dir + "/timens_offsets")
	if err != nil {
		return 0, err
	}
	off, err := ParseBoottimeOffset(io.LimitReader(f, 4096))
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("%s/timens_offsets: %w", dir, err)
	}
	if ok, err := same(); err != nil || !ok {
		return 0, errors.Join(ErrUnknownTimeOffset, err)
	}
	return off, nil
}

// ParseBoottimeOffset reads the boottime line of /proc/<pid>/timens_offsets
// ("boottime  <sec> <nsec>", kernel/time/namespace.c show_offset; the
// numeric clock id 7, CLOCK_BOOTTIME, is accepted as well).
func ParseBoottimeOffset(r io.Reader) (time.Duration, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || (f[0] != "boottime" && f[0] != "7") {
			continue
		}
		sec, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("boottime seconds %q: %w", f[1], err)
		}
		nsec, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || nsec < 0 || nsec >= int64(time.Second) {
			return 0, fmt.Errorf("boottime nanoseconds %q: out of range", f[2])
		}
		// The kernel bounds offsets to ±KTIME_SEC_MAX; a Duration holds
		// ±292 years, more than any offset that keeps boottime ≥ 0.
		if sec > int64(time.Duration(1<<63-1)/time.Second)-1 || sec < -int64(time.Duration(1<<63-1)/time.Second)+1 {
			return 0, fmt.Errorf("boottime offset %d s out of range", sec)
		}
		return time.Duration(sec)*time.Second + time.Duration(nsec), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no boottime line")
}

func readlink(path string) (string, error) {
	s, err := os.Readlink(path)
	if err != nil {
		return "", err
	}
	return s, nil
}
