package notify

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// TranslatePid maps pid, as thread tid sees it in its own pid namespace, to
// the agent's pid namespace with the nsfs ioctl NS_GET_PID_FROM_PIDNS (a
// recent addition; 6.1 lacks it). The kernel looks the pid up the way find_process_by_pid would for
// the caller, so a pid the caller cannot see is ESRCH and never another
// container's task. Older kernels answer ENOTTY.
func TranslatePid(procRoot string, tid, pid int) (int, error) {
	fd, err := unix.Open(procRoot+"/"+strconv.Itoa(tid)+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open pid namespace of %d: %w", tid, err)
	}
	defer unix.Close(fd)
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.NS_GET_PID_FROM_PIDNS, uintptr(pid))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
