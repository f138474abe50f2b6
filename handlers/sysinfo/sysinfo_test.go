package sysinfo

import (
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/limits/loadavg"
	"golang.org/x/sys/unix"
)

type fixedLimits struct{}

func (fixedLimits) MemoryAndPids(int, int) (limits.Memory, limits.Pids, error, error) {
	return limits.Memory{Total: 256 << 20, Usage: 1 << 20}, limits.Pids{}, nil, nil
}
func (fixedLimits) StartTime(int) (time.Duration, error) { return time.Second, nil }

type fixedLoads map[int]loadavg.Avenrun

func (f fixedLoads) Loads(pid int) (loadavg.Avenrun, bool) { a, ok := f[pid]; return a, ok }

// TestComputeLoads: the container's own average in sysinfo's scale when the
// sampler knows its init, the host's otherwise.
func TestComputeLoads(t *testing.T) {
	host := Host{
		Sysinfo: func() (unix.Sysinfo_t, error) {
			return unix.Sysinfo_t{Loads: [3]uint64{7 << 16, 6 << 16, 5 << 16}}, nil
		},
		Boottime: func() (time.Duration, error) { return 10 * time.Second, nil },
	}
	h := &Handler{Limits: fixedLimits{}, Host: host, LoadAvg: fixedLoads{42: {loadavg.Fixed1 / 2, 164, 0}}}
	info, err := h.Compute(43, 42)
	if err != nil {
		t.Fatal(err)
	}
	if want := [3]uint64{32768, 164 << 5, 0}; info.Loads != want {
		t.Errorf("container loads %v, want %v", info.Loads, want)
	}
	h = &Handler{Limits: fixedLimits{}, Host: host, LoadAvg: fixedLoads{}}
	if info, err = h.Compute(43, 42); err != nil || info.Loads != [3]uint64{7 << 16, 6 << 16, 5 << 16} {
		t.Errorf("unknown container: %v %v, want the host's loads", info.Loads, err)
	}
}
