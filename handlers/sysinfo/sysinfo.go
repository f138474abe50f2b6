package sysinfo

import (
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/limits/loadavg"
	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Limits is what the handler needs from limits.Reader.
type Limits interface {
	// MemoryAndPids reads for thread pid of the container whose init is
	// scope.
	MemoryAndPids(pid, scope int) (limits.Memory, limits.Pids, error, error)
	StartTime(pid int) (time.Duration, error)
}

// LoadAverages has each attached container's own load average
// (loadavg.Sampler), by the pid of its init.
type LoadAverages interface {
	Loads(initPid int) (loadavg.Avenrun, bool)
}

// Host reads the values the container shares with the host: the kernel's
// own sysinfo (for loads, and procs when no pids cgroup is visible) and the
// boot-time clock.
type Host struct {
	Sysinfo  func() (unix.Sysinfo_t, error)
	Boottime func() (time.Duration, error)
}

// RealHost reads the running kernel.
var RealHost = Host{
	Sysinfo: func() (unix.Sysinfo_t, error) {
		var si unix.Sysinfo_t
		err := unix.Sysinfo(&si)
		return si, err
	},
	Boottime: realBoot.now,
}

var realBoot bootClock

// Handler answers sysinfo(2) for one container.
type Handler struct {
	Limits   Limits
	Host     Host
	ProcRoot string
	// LoadAvg gives the container's load average; without it, or for a
	// container it does not know, loads are the host's.
	LoadAvg LoadAverages
	Log     *logrus.Entry

	start atomic.Pointer[started]
	tns   timeNS
}

var _ notify.Handler = (*Handler)(nil)

var pageSize = uint64(os.Getpagesize())

// Handle implements notify.Handler.
func (h *Handler) Handle(req *notify.Request) notify.Response {
	init := req.Container.InitPid
	if init == 0 {
		// crun exec sends no pid at all: the container's init is pid 1
		// of the caller's pid namespace.
		var err error
		if init, err = notify.TranslatePid(h.ProcRoot, req.Tid, 1); err != nil {
			h.Log.WithFields(logrus.Fields{"tid": req.Tid, "err": err}).Debug("sysinfo: container init unknown, answering with the host's")
			return notify.Continue()
		}
	}
	info, err := h.Compute(req.Tid, init)
	if err != nil {
		h.Log.WithFields(logrus.Fields{"tid": req.Tid, "err": err}).Debug("sysinfo: cannot compute the container view, answering with the host's")
		return notify.Continue()
	}
	var buf []byte
	addr := req.Args[0]
	if req.ABI.Compat {
		addr = uint64(uint32(addr))
		buf = EncodeCompat(req.Buffer(CompatSize), info, pageSize)
	} else {
		buf = EncodeNative(req.Buffer(NativeSize), info)
	}
	// do_sysinfo cannot fail; the syscall fails only when copy_to_user
	// does, and then the kernel's own copy gives the exact result.
	if err := req.Mem.Write(addr, buf); err != nil {
		h.Log.WithFields(logrus.Fields{"tid": req.Tid, "err": err}).Debug("sysinfo: the kernel answers this destination")
		return notify.Continue()
	}
	return notify.Return(0)
}

// Compute builds the container's struct sysinfo for thread tid of the
// container whose init is initPid (both in the agent's pid namespace).
func (h *Handler) Compute(tid, initPid int) (Info, error) {
	mem, pids, pidsErr, err := h.Limits.MemoryAndPids(tid, initPid)
	if err != nil {
		return Info{}, err
	}
	// The kernel's own sysinfo, only when something is the host's: procs
	// without a pids cgroup, loads without the container's own.
	var host *unix.Sysinfo_t
	hostInfo := func() (*unix.Sysinfo_t, error) {
		if host == nil {
			si, err := h.Host.Sysinfo()
			if err != nil {
				return nil, err
			}
			host = &si
		}
		return host, nil
	}
	var procs uint64
	switch err := pidsErr; {
	case err == nil && pids.Current.Limited:
		procs = pids.Current.Value
	case err == nil, errors.As(err, new(*limits.NoControllerError)):
		// The root cgroup (the kernel's count is the container's), or
		// no pids cgroup to count threads in: the kernel's count.
		si, err := hostInfo()
		if err != nil {
			return Info{}, err
		}
		procs = uint64(si.Procs)
	default:
		return Info{}, err
	}
	now, err := h.Host.Boottime()
	if err != nil {
		return Info{}, err
	}
	start, err := h.startTime(initPid)
	if err != nil {
		return Info{}, err
	}
	// The caller's time namespace, relative to the init's (see timens.go).
	delta, err := h.tns.boottimeDelta(h.ProcRoot, tid, initPid)
	if err != nil {
		return Info{}, err
	}
	var loads [3]uint64
	if a, ok := h.loads(initPid); ok {
		loads = a.Sysinfo()
	} else {
		si, err := hostInfo()
		if err != nil {
			return Info{}, err
		}
		loads = si.Loads
	}
	return Info{
		Uptime:    uptimeSeconds(now - start + delta),
		Loads:     loads,
		TotalRAM:  mem.Total,
		FreeRAM:   saturatingSub(mem.Total, mem.Usage),
		SharedRAM: mem.Shmem,
		BufferRAM: 0,
		TotalSwap: mem.SwapTotal,
		FreeSwap:  saturatingSub(mem.SwapTotal, mem.SwapUsage),
		Procs:     uint16(min(procs, 65535)),
	}, nil
}

func (h *Handler) loads(initPid int) (loadavg.Avenrun, bool) {
	if h.LoadAvg == nil {
		return loadavg.Avenrun{}, false
	}
	return h.LoadAvg.Loads(initPid)
}

// startTime caches the init's start time: it never changes while the init
// lives, and the init outlives every call from its container.
func (h *Handler) startTime(pid int) (time.Duration, error) {
	if c := h.start.Load(); c != nil && c.pid == pid {
		return c.at, nil
	}
	at, err := h.Limits.StartTime(pid)
	if err == nil {
		h.start.Store(&started{pid: pid, at: at})
	}
	return at, err
}

type started struct {
	pid int
	at  time.Duration
}

// uptimeSeconds rounds up like do_sysinfo: tv_sec + (tv_nsec ? 1 : 0).
func uptimeSeconds(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

func saturatingSub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
