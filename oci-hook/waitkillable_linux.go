package ocihook

import (
	"context"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// KernelHasWaitKillableRecv reports whether the kernel knows
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 5.19). It asks seccomp(2) to
// install a filter with the flag and a NULL program: a kernel that knows
// every flag gets as far as copying the program and fails with EFAULT, one
// that does not rejects the flags first with EINVAL. Nothing is installed.
func KernelHasWaitKillableRecv() bool {
	const flagWaitKillableRecv = 1 << 5 // include/uapi/linux/seccomp.h
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|flagWaitKillableRecv, 0)
	return e == unix.EFAULT
}

// WaitKillableRecv decides whether containers started by the runtime at
// path get FlagWaitKillableRecv (Modifier.WaitKillableRecv): the kernel and
// the runtime must both support it. reason says why, for logs.
func WaitKillableRecv(path string) (ok bool, reason string) {
	if !KernelHasWaitKillableRecv() {
		return false, "the kernel lacks it (Linux < 5.19)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	features, _ := exec.CommandContext(ctx, path, "features").Output()
	version, _ := exec.CommandContext(ctx, path, "--version").Output()
	return runtimeTakesWaitKillable(features, version)
}
