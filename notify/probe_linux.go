package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Features are what the running kernel offers the notify loop, probed once
// at start-up by behaviour, never by version number.
type Features struct {
	// SyncWakeUp: SECCOMP_IOCTL_NOTIF_SET_FLAGS with
	// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP is accepted (Linux 6.6+).
	SyncWakeUp bool
	// OrphanWakesRecv: a RECV that is blocked when the filter loses its
	// last user returns. Older kernels leave it blocked for good (the
	// wake-up on orphaning reaches poll waiters only; measured here on
	// 6.1, reported for 6.6 to 6.10, woken on 6.18), so a loop blocked in
	// RECV there would outlive its container with its thread and fd.
	OrphanWakesRecv bool
	// X32: the kernel executes x32 syscalls (see RunnableABIs).
	X32 bool
}

// KernelFor returns the seam for listener fd and whether the loop blocks in
// RECV. It blocks in RECV with synchronous wake-up (the wake-up hands the CPU
// over only to a thread asleep in RECV) where the kernel accepts it on fd
// and also wakes a blocked RECV once the container is gone; elsewhere the
// loop polls for EPOLLIN/EPOLLHUP before each RECV.
func (f Features) KernelFor(fd int) (Kernel, bool) {
	return f.kernelWith(realKernel(), func() bool { return EnableSyncWakeUp(fd) })
}

func (f Features) kernelWith(k Kernel, enableSync func() bool) (Kernel, bool) {
	if f.OrphanWakesRecv && enableSync() {
		k.WaitReadable = nil
		return k, true
	}
	return k, false
}

// probeChildEnv makes a process started from this binary run the probe's
// child (see init) instead of its main.
const probeChildEnv = "SECCOMPAGENT_NOTIFY_PROBE_CHILD"

// probeWait is how long the child waits for the RECV to return after the
// orphaning. Where the kernel wakes it, it returns within microseconds; a
// wake-up that comes later than this (a starved machine) makes the verdict
// "blocked", whose path (poll before RECV) is correct everywhere.
const probeWait = 250 * time.Millisecond

// The child's verdicts, one line on stdout.
const (
	probeWoken   = "woken"   // the blocked RECV returned after the orphaning
	probeBlocked = "blocked" // still blocked 1 s after the orphaning
)

func init() {
	// Any binary that links this package (the agent, its tests) can be
	// re-executed as the probe's child: no main has to remember a hook,
	// and a binary that forgot one cannot end up running its own main
	// (or its whole test suite) as the child.
	if os.Getenv(probeChildEnv) == "orphan-wake" {
		verdict, err := orphanWakeChild()
		if err != nil {
			fmt.Fprintln(os.Stderr, "orphan-wake probe:", err)
			os.Exit(2)
		}
		fmt.Println(verdict)
		os.Exit(0)
	}
}

// ProbeFeatures probes the running kernel. The orphan wake-up probe runs in
// a child process (this binary, re-executed): a RECV that the kernel never
// wakes can only be ended by ending its process. It takes a few
// milliseconds where RECV is woken, a quarter of a second more where not. A probe that
// fails reports the feature absent, the side that is always correct (poll
// before RECV; no x32 answers), with the error.
func ProbeFeatures() (Features, error) {
	f := Features{X32: KernelRunsX32()}
	out, err := runProbeChild(10 * time.Second)
	if err != nil {
		return f, err
	}
	f.SyncWakeUp, f.OrphanWakesRecv, err = parseProbe(out)
	return f, err
}

func runProbeChild(timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Env = append(os.Environ(), probeChildEnv+"=orphan-wake")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("orphan wake-up probe: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// parseProbe reads the child's one line: "<verdict> sync=<0|1>".
func parseProbe(out string) (syncWakeUp, orphanWakes bool, err error) {
	f := strings.Fields(out)
	if len(f) != 2 || (f[0] != probeWoken && f[0] != probeBlocked) || (f[1] != "sync=0" && f[1] != "sync=1") {
		return false, false, fmt.Errorf("orphan wake-up probe: unexpected output %q", out)
	}
	return f[1] == "sync=1", f[0] == probeWoken, nil
}

// orphanWakeChild runs in the probe's child. One locked thread installs an
// allow-everything filter with a listener (the filter's only user), another
// blocks in RECV on the listener with synchronous wake-up enabled where the
// kernel has it, as the loop would. Then the first thread exits, which
// orphans the filter (the listener reports EPOLLHUP), and the child watches
// whether RECV returns within probeWait. The process exit that follows ends a
// RECV that never returns.
func orphanWakeChild() (string, error) {
	type installed struct {
		fd  int
		err error
	}
	fdc := make(chan installed, 1)
	exit := make(chan struct{})
	go func() {
		// Never unlocked: when this goroutine returns, the Go runtime
		// ends the thread, and with it the filter's only user.
		runtime.LockOSThread()
		// no_new_privs and the filter stay with this thread, which
		// is about to exit; nothing is trapped (RET_ALLOW).
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			fdc <- installed{-1, fmt.Errorf("no_new_privs: %w", err)}
			return
		}
		prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
		fprog := unix.SockFprog{Len: 1, Filter: &prog[0]}
		fd, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
			unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
		if e != 0 {
			fdc <- installed{-1, fmt.Errorf("seccomp(NEW_LISTENER): %w", e)}
			return
		}
		fdc <- installed{int(fd), nil}
		<-exit
	}()
	in := <-fdc
	if in.err != nil {
		return "", in.err
	}
	syncOK := EnableSyncWakeUp(in.fd)

	tidc := make(chan int, 1)
	recvd := make(chan unix.Errno, 1)
	go func() {
		runtime.LockOSThread()
		tidc <- unix.Gettid()
		var n notif
		// One RECV, no retry: the verdict is whether it returns.
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(in.fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n)))
		recvd <- e
	}()
	tid := <-tidc
	// The RECV must be asleep before the filter is orphaned (a RECV that
	// starts afterwards is a different case): wait until the thread sits
	// in ioctl(2).
	if err := waitInSyscall(tid, unix.SYS_IOCTL, 5*time.Second); err != nil {
		return "", err
	}
	close(exit)
	// The filter is orphaned once the thread is gone: EPOLLHUP.
	rev, err := pollFd(in.fd, 5000)
	if err != nil || rev&unix.POLLHUP == 0 {
		return "", fmt.Errorf("listener did not hang up after its filter's only user exited (revents %#x, %v)", rev, err)
	}
	verdict := probeBlocked
	select {
	case e := <-recvd:
		if e != unix.ENOENT && e != 0 {
			return "", fmt.Errorf("RECV on the orphaned filter: %w", e)
		}
		verdict = probeWoken
	case <-time.After(probeWait):
	}
	s := "sync=0"
	if syncOK {
		s = "sync=1"
	}
	return verdict + " " + s, nil
}

// waitInSyscall waits until thread tid of this process sleeps in syscall nr
// (/proc/self/task/<tid>/syscall starts with the number while it is blocked
// in it).
func waitInSyscall(tid int, nr int, limit time.Duration) error {
	path := "/proc/self/task/" + strconv.Itoa(tid) + "/syscall"
	want := strconv.Itoa(nr) + " "
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if strings.HasPrefix(string(b), want) {
			stat, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
			if err == nil {
				if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i:]), ") S") {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the RECV thread never went to sleep in ioctl(2)")
		}
		time.Sleep(time.Millisecond)
	}
}
