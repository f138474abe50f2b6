package ocihook

import (
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The probe agrees with the kernel's behaviour: a filter with
// NEW_LISTENER|WAIT_KILLABLE_RECV installs exactly where the probe says the
// flag is known. The filter allows everything and goes away with the locked
// thread that installed it.
func TestKernelHasWaitKillableRecv(t *testing.T) {
	installed := make(chan unix.Errno, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread (and its filter) ends with this goroutine
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			installed <- err.(unix.Errno)
			return
		}
		prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
		fprog := unix.SockFprog{Len: 1, Filter: &prog[0]}
		fd, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
			unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|1<<5, uintptr(unsafe.Pointer(&fprog)))
		if e == 0 {
			unix.Close(int(fd))
		}
		installed <- e
	}()
	e := <-installed
	if e != 0 && e != unix.EINVAL {
		t.Fatalf("installing a filter with WAIT_KILLABLE_RECV: %v", e)
	}
	t.Logf("kernel takes WAIT_KILLABLE_RECV: %v", e == 0)
	if got := KernelHasWaitKillableRecv(); got != (e == 0) {
		t.Errorf("KernelHasWaitKillableRecv() = %v, but installing the filter gave %v", got, e)
	}
}
