package notify

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// notif is struct seccomp_notif (include/uapi/linux/seccomp.h).
type notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

// notifResp is struct seccomp_notif_resp.
type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

const (
	flagContinue = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
)

// Kernel is the seam between the loop and the listener fd. The real one
// issues ioctls; tests swap in fakes.
type Kernel struct {
	Recv    func(fd int, n *notif) error
	IDValid func(fd int, id uint64) error
	Send    func(fd int, r *notifResp) error
	// WaitReadable blocks until fd has a notification or hung up; it
	// reports hangup. Nil means the loop blocks in Recv directly.
	WaitReadable func(fd int) (hup bool, err error)
	// HungUp reports, without blocking, whether every task using the
	// filter is gone (EPOLLHUP, Linux 5.8+).
	HungUp func(fd int) bool
	// Poll waits up to timeout ms (-1: forever, 0: not at all) for a
	// notification or a hang-up; EINTR is returned. Nil means the loop
	// runs one receiver only.
	Poll func(fd int, timeout int) (readable, hup bool, err error)
}

func ioctlPtr(fd int, req uint, p unsafe.Pointer) error {
	for {
		err := ioctlOnce(fd, req, p)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

func ioctlOnce(fd int, req uint, p unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p))
	if e != 0 {
		return e
	}
	return nil
}

// kernelRecv blocks until a notification arrives. EINTR is returned, not
// retried: it is how Loop.Stop wakes a blocked receiver.
func kernelRecv(fd int, n *notif) error {
	*n = notif{} // the kernel insists on a zeroed buffer
	return ioctlOnce(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
}

func kernelIDValid(fd int, id uint64) error {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
}

func kernelSend(fd int, r *notifResp) error {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(r))
}

func pollFd(fd int, timeout int) (revents int16, err error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		_, err = unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		return fds[0].Revents, err
	}
}

// ListenerGone reports a listener's poll result that means every task
// using the filter is gone (POLLHUP), or that the fd is not one
// (POLLNVAL). POLLERR alone does not: seccomp_notify_poll returns it when
// taking the filter's lock was interrupted by a signal
// (mutex_lock_interruptible), which says nothing about the listener; look
// again.
func ListenerGone(revents int16) bool { return revents&(unix.POLLHUP|unix.POLLNVAL) != 0 }

// CheckListener reports an error unless fd is a seccomp user-notification
// listener (the kernel names its anonymous inode "seccomp notify"). A
// runtime's message may carry any fd; one that is not a listener is not
// attached, whatever poll says about it.
func CheckListener(fd int) error {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return err
	}
	if target != "anon_inode:seccomp notify" {
		return fmt.Errorf("the fd is %s, not a seccomp listener", target)
	}
	return nil
}

func kernelHungUp(fd int) bool {
	rev, err := pollFd(fd, 0)
	return err == nil && ListenerGone(rev)
}

func kernelWaitReadable(fd int) (bool, error) {
	// One poll, EINTR returned: Loop.Stop wakes a poller with a signal.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	_, err := unix.Poll(fds, -1)
	if err != nil {
		return false, err
	}
	rev := fds[0].Revents
	switch {
	case rev&unix.POLLIN != 0:
		return false, nil
	case ListenerGone(rev):
		return true, nil
	default:
		// POLLERR alone (see ListenerGone): not readable, not gone. EINTR
		// makes the loop look again, as after a signal.
		return false, unix.EINTR
	}
}

func kernelPoll(fd int, timeout int) (readable, hup bool, err error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, timeout); err != nil {
		return false, false, err
	}
	rev := fds[0].Revents
	if rev&unix.POLLIN != 0 {
		return true, false, nil
	}
	return false, ListenerGone(rev), nil
}

// EnableSyncWakeUp asks the kernel (Linux 6.6+, SECCOMP_IOCTL_NOTIF_SET_FLAGS)
// to wake the receiver on the trapped thread's CPU and switch to it at once:
// the round trip drops from tens of microseconds to a few. It reports whether
// the kernel accepted it; older kernels answer EINVAL.
func EnableSyncWakeUp(fd int) bool {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS,
		unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	return e == 0
}

// KernelFor returns the real kernel seam; blockInRecv makes the loop sleep
// in RECV instead of polling first. The agent decides with
// Features.KernelFor; tests force either path.
func KernelFor(blockInRecv bool) Kernel {
	k := realKernel()
	if blockInRecv {
		k.WaitReadable = nil
	}
	return k
}

func realKernel() Kernel {
	return Kernel{Recv: kernelRecv, IDValid: kernelIDValid, Send: kernelSend, HungUp: kernelHungUp,
		WaitReadable: kernelWaitReadable, Poll: kernelPoll}
}

// x32SyscallBit is __X32_SYSCALL_BIT (arch/x86/include/uapi/asm/unistd.h).
const x32SyscallBit = 0x40000000

// KernelRunsX32 reports whether the kernel executes x32 syscalls: it calls
// the x32 getpid (any 64-bit process may set the x32 bit). Only a correct
// answer counts as present: ENOSYS means no x32 ABI, and any other failure
// (a seccomp filter on the agent itself) leaves x32 callers to the kernel,
// the fail-open side.
func KernelRunsX32() bool {
	r, _, e := unix.RawSyscall(x32SyscallBit|unix.SYS_GETPID, 0, 0, 0)
	return e == 0 && int(r) == unix.Getpid()
}
