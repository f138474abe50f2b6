package affinity

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Policy says how many CPUs a container's threads see.
type Policy struct {
	// Off returns the kernel's mask unchanged.
	Off bool
	// Count, when positive, is an explicit number of CPUs; otherwise the
	// count comes from the cpu cgroup quota.
	Count int
}

// Annotation selects the policy per container.
const Annotation = "seccompagent.io/cpus"

// ParsePolicy reads the seccompagent.io/cpus annotation: "quota" (or empty)
// for the quota-derived count, "off", or a positive integer.
func ParsePolicy(v string) (Policy, error) {
	switch v = strings.TrimSpace(v); v {
	case "", "quota":
		return Policy{}, nil
	case "off":
		return Policy{Off: true}, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return Policy{}, fmt.Errorf("invalid %s=%q: want quota, off or a positive integer", Annotation, v)
	}
	return Policy{Count: n}, nil
}

// CPULimits is what the handler needs from limits.Reader: the CPU limits
// of thread pid of the container whose init is scope (0: unknown).
type CPULimits interface {
	ThreadCPU(pid, scope int) (limits.CPU, error)
}

// Kernel holds the host facts the kernel's checks depend on.
type Kernel struct {
	// NrCPUIDs is nr_cpu_ids: the highest possible CPU id + 1.
	NrCPUIDs int
	// MaskSize is cpumask_size() in bytes: what sched_getaffinity returns
	// for a large enough buffer (32 on a kernel with NR_CPUS=256 even with
	// 2 CPUs).
	MaskSize int
}

// ProbeKernel measures cpumask_size() by asking the kernel about the agent
// itself with a buffer big enough for any configuration, and reads
// nr_cpu_ids from sysfs.
func ProbeKernel(fsRoot string) (Kernel, error) {
	n, err := limits.PossibleCPUs(fsRoot)
	if err != nil {
		return Kernel{}, err
	}
	buf := make([]byte, 8192/8*8)
	size, err := getaffinity(0, buf)
	if err != nil {
		return Kernel{}, fmt.Errorf("measure cpumask size with sched_getaffinity: %w", err)
	}
	return Kernel{NrCPUIDs: n, MaskSize: size}, nil
}

// Handler answers sched_getaffinity(2) for one container.
type Handler struct {
	Limits   CPULimits
	Kernel   Kernel
	Policy   Policy
	ProcRoot string
	Log      *logrus.Entry
}

var _ notify.Handler = (*Handler)(nil)

// Handle implements notify.Handler, following kernel/sched/syscalls.c
// SYSCALL_DEFINE3(sched_getaffinity) and its compat twin: the length checks
// come first, then the pid lookup, then the copy of min(len, cpumask_size())
// bytes.
func (h *Handler) Handle(req *notify.Request) notify.Response {
	pid := int32(req.Args[0])
	length := uint32(req.Args[1]) // unsigned int len
	addr := req.Args[2]
	if req.ABI.Compat {
		addr = uint64(uint32(addr))
	}
	// len * BITS_PER_BYTE is computed in unsigned int: it wraps, as here.
	if length*8 < uint32(h.Kernel.NrCPUIDs) {
		return notify.Fail(syscall.EINVAL)
	}
	if length%uint32(req.ABI.LongSize) != 0 {
		return notify.Fail(syscall.EINVAL)
	}
	// Only the fail-open paths log: the fields are built there, not on
	// every call.
	log := func() *logrus.Entry { return h.Log.WithFields(logrus.Fields{"tid": req.Tid, "pid_arg": pid}) }

	target := req.Tid
	if pid < 0 {
		return notify.Fail(syscall.ESRCH)
	}
	if pid != 0 {
		t, err := notify.TranslatePid(h.ProcRoot, req.Tid, int(pid))
		switch {
		case errors.Is(err, syscall.ESRCH):
			return notify.Fail(syscall.ESRCH)
		case err != nil:
			// Not found by the /proc fallback (ErrPidNotFound) or not
			// resolvable: the kernel's own lookup in the caller's pid
			// namespace answers, ESRCH for a pid the caller cannot see.
			log().WithError(err).Debug("sched_getaffinity: cannot resolve pid, answering with the kernel's")
			return notify.Continue()
		}
		target = t
	}

	mask := req.Buffer(h.Kernel.MaskSize)
	if _, err := getaffinity(target, mask); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return notify.Fail(syscall.ESRCH)
		}
		log().WithError(err).Debug("sched_getaffinity: reading the real mask failed, answering with the kernel's")
		return notify.Continue()
	}
	if !h.Policy.Off {
		k := h.Policy.Count
		if k == 0 {
			var scope int
			if req.Container != nil {
				scope = req.Container.InitPid
			}
			cpu, err := h.Limits.ThreadCPU(target, scope)
			if err != nil {
				log().WithError(err).Debug("sched_getaffinity: no CPU limits, answering with the kernel's")
				return notify.Continue()
			}
			if cpu.Count.Limited {
				k = int(cpu.Count.Value)
			}
		}
		if k > 0 {
			KeepLowest(mask, k)
		}
	}
	if pid != 0 {
		// The target may have exited after the translation and its host
		// pid been reused by another container's task: translate again,
		// and if the caller's pid no longer names the task we read, answer
		// as the kernel would have for a task that is gone.
		if t, err := notify.TranslatePid(h.ProcRoot, req.Tid, int(pid)); err != nil || t != target {
			return notify.Fail(syscall.ESRCH)
		}
	}
	n := min(int(length), h.Kernel.MaskSize)
	if err := req.Mem.Write(addr, mask[:n]); err != nil {
		// The kernel's copy_to_user gives the exact EFAULT or partial
		// copy (notify.Memory).
		log().WithError(err).Debug("sched_getaffinity: the kernel answers this destination")
		return notify.Continue()
	}
	return notify.Return(int64(n))
}

// KeepLowest clears every set bit of mask (a little-endian cpumask) beyond
// the k lowest CPU ids. It never sets a bit.
func KeepLowest(mask []byte, k int) {
	for i, b := range mask {
		c := bits.OnesCount8(b)
		switch {
		case k <= 0:
			mask[i] = 0
		case c <= k:
			k -= c
		default:
			for j := 0; j < 8; j++ {
				if b&(1<<j) == 0 {
					continue
				}
				if k > 0 {
					k--
				} else {
					b &^= 1 << j
				}
			}
			mask[i] = b
		}
	}
}

func getaffinity(tid int, buf []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_SCHED_GETAFFINITY, uintptr(tid), uintptr(len(buf)), uintptr(unsafe.Pointer(&buf[0])))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
