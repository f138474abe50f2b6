package limits

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestView asserts every field of the view of every readable process in
// every fixture tree, including which file at which level decided each
// number.
func TestView(t *testing.T) {
	const (
		hostTotal = 2 << 30 // MemTotal: 2097152 kB
		hostSwap  = 1 << 30 // SwapTotal: 1048576 kB
	)
	// at returns the Source for file (relative to the fixture's root).
	at := func(fixture string, level int, cgroup, file string) *Source {
		return &Source{Cgroup: cgroup, Level: level, File: filepath.Join("testdata", fixture, file)}
	}
	lim := func(v uint64, s *Source) Value { return Value{Value: v, Limited: true, Source: s} }

	cases := []struct {
		name, fixture string
		pid           int
		start         time.Duration
		want          View
	}{
		{"hybrid, separate cpu and cpuacct: CPU quota on the parent, memory on the child", "v1-hybrid", 100, 123450 * time.Millisecond, View{
			Mode: "hybrid",
			CPU: CPU{
				Count:   lim(1, at("v1-hybrid", 1, "/parent", "sys/fs/cgroup/cpu/parent/cpu.cfs_quota_us")),
				QuotaUS: 50000, PeriodUS: 100000,
				Cpuset: "0-1", CpusetSource: at("v1-hybrid", 0, "/parent/child", "sys/fs/cgroup/cpuset/parent/child/cpuset.effective_cpus"),
				HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(134217728, at("v1-hybrid", 0, "/parent/child", "sys/fs/cgroup/memory/parent/child/memory.limit_in_bytes")),
				Total: 134217728, HostTotal: hostTotal, Usage: 52428800,
				Shmem:         8192, // total_shmem (hierarchical), not shmem 4096
				HostSwapTotal: hostSwap,
			},
			Pids: Pids{Current: lim(7, at("v1-hybrid", 0, "/parent/child", "sys/fs/cgroup/pids/parent/child/pids.current"))},
		}},
		{"hybrid: quota below one CPU, v1 sentinel memory limit", "v1-hybrid", 101, 123450 * time.Millisecond, View{
			Mode: "hybrid",
			CPU: CPU{
				Count:   lim(1, at("v1-hybrid", 0, "/big", "sys/fs/cgroup/cpu/big/cpu.cfs_quota_us")),
				QuotaUS: 10000, PeriodUS: 100000,
				Cpuset: "0-3", CpusetSource: at("v1-hybrid", 0, "/big", "sys/fs/cgroup/cpuset/big/cpuset.effective_cpus"),
				HostOnline: 4,
			},
			Memory: Memory{Total: hostTotal, HostTotal: hostTotal, Usage: 1048576, HostSwapTotal: hostSwap},
			Pids:   Pids{Current: lim(1, at("v1-hybrid", 0, "/big", "sys/fs/cgroup/pids/big/pids.current"))},
		}},
		{"hybrid: quota above the cpuset size, usage above the limit", "v1-hybrid", 102, 123450 * time.Millisecond, View{
			Mode: "hybrid",
			CPU: CPU{
				Count:   lim(4, at("v1-hybrid", 0, "/over", "sys/fs/cgroup/cpu/over/cpu.cfs_quota_us")),
				QuotaUS: 400000, PeriodUS: 100000,
				Cpuset: "0-1", CpusetSource: at("v1-hybrid", 0, "/over", "sys/fs/cgroup/cpuset/over/cpuset.effective_cpus"),
				HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(268435456, at("v1-hybrid", 0, "/over", "sys/fs/cgroup/memory/over/memory.limit_in_bytes")),
				Total: 268435456, HostTotal: hostTotal, Usage: 314572800, HostSwapTotal: hostSwap,
			},
			Pids: Pids{Current: lim(3, at("v1-hybrid", 0, "/over", "sys/fs/cgroup/pids/over/pids.current"))},
		}},
		{"v1 co-mounted cpu,cpuacct, non-contiguous cpuset, memsw", "v1-comounted", 200, 42 * time.Second, View{
			Mode: "v1",
			CPU: CPU{
				Count:   lim(2, at("v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us")),
				QuotaUS: 150000, PeriodUS: 100000,
				Cpuset: "0-3,8,10-11", CpusetSource: at("v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/cpuset/docker/abc/cpuset.effective_cpus"),
				HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(268435456, at("v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes")),
				Total: 268435456, HostTotal: hostTotal, Usage: 104857600, Shmem: 2048,
				// memsw 512 MiB - RAM 256 MiB; the sentinel on /docker and / does not limit.
				SwapLimit: lim(268435456, at("v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/memory/docker/abc/memory.memsw.limit_in_bytes")),
				SwapTotal: 268435456, HostSwapTotal: hostSwap,
				SwapUsage: 115343360 - 104857600,
			},
			Pids: Pids{Current: lim(12, at("v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/pids/docker/abc/pids.current"))},
		}},
		{"v2: limits on the parent, max at the leaf, swap max everywhere", "v2", 300, 123450 * time.Millisecond, View{
			Mode: "v2",
			CPU: CPU{
				Count:   lim(1, at("v2", 1, "/kubepods/pod1", "sys/fs/cgroup/kubepods/pod1/cpu.max")),
				QuotaUS: 50000, PeriodUS: 100000,
				Cpuset: "0-3", CpusetSource: at("v2", 0, "/kubepods/pod1/ctr", "sys/fs/cgroup/kubepods/pod1/ctr/cpuset.cpus.effective"),
				HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(268435456, at("v2", 1, "/kubepods/pod1", "sys/fs/cgroup/kubepods/pod1/memory.max")),
				Total: 268435456, HostTotal: hostTotal, Usage: 73400320, Shmem: 65536,
				SwapTotal: hostSwap, HostSwapTotal: hostSwap, SwapUsage: 1048576,
			},
			Pids: Pids{Current: lim(5, at("v2", 0, "/kubepods/pod1/ctr", "sys/fs/cgroup/kubepods/pod1/ctr/pids.current"))},
		}},
		{"v2: two CPUs, no swap files", "v2", 301, 123450 * time.Millisecond, View{
			Mode: "v2",
			CPU: CPU{
				Count:   lim(2, at("v2", 0, "/noswap", "sys/fs/cgroup/noswap/cpu.max")),
				QuotaUS: 200000, PeriodUS: 100000,
				Cpuset: "0-3", CpusetSource: at("v2", 0, "/noswap", "sys/fs/cgroup/noswap/cpuset.cpus.effective"),
				HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(1073741824, at("v2", 0, "/noswap", "sys/fs/cgroup/noswap/memory.max")),
				Total: 1073741824, HostTotal: hostTotal, Usage: 1000, HostSwapTotal: hostSwap,
			},
			Pids: Pids{Current: lim(1, at("v2", 0, "/noswap", "sys/fs/cgroup/noswap/pids.current"))},
		}},
		{"v2: no quota, swap limited", "v2", 302, 123450 * time.Millisecond, View{
			Mode: "v2",
			CPU: CPU{
				Cpuset: "0-3", CpusetSource: at("v2", 0, "/swapped", "sys/fs/cgroup/swapped/cpuset.cpus.effective"),
				HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(536870912, at("v2", 0, "/swapped", "sys/fs/cgroup/swapped/memory.max")),
				Total: 536870912, HostTotal: hostTotal, Usage: 1000,
				SwapLimit: lim(134217728, at("v2", 0, "/swapped", "sys/fs/cgroup/swapped/memory.swap.max")),
				SwapTotal: 134217728, HostSwapTotal: hostSwap, SwapUsage: 4096,
			},
			Pids: Pids{Current: lim(1, at("v2", 0, "/swapped", "sys/fs/cgroup/swapped/pids.current"))},
		}},
		{"v2: memory.max above the host's RAM does not limit", "v2", 306, 123450 * time.Millisecond, View{
			Mode:   "v2",
			CPU:    CPU{HostOnline: 4},
			Memory: Memory{Total: hostTotal, HostTotal: hostTotal, Usage: 3000, SwapTotal: hostSwap, HostSwapTotal: hostSwap},
			Pids:   Pids{Current: lim(4, at("v2", 0, "/huge", "sys/fs/cgroup/huge/pids.current"))},
		}},
		{"cgroup namespace: /child under mount root /", "cgroupns", 400, 123450 * time.Millisecond, View{
			Mode: "v2",
			CPU: CPU{
				Count:   lim(1, at("cgroupns", 0, "/child", "sys/fs/cgroup/child/cpu.max")),
				QuotaUS: 100000, PeriodUS: 100000, HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(67108864, at("cgroupns", 0, "/child", "sys/fs/cgroup/child/memory.max")),
				Total: 67108864, HostTotal: hostTotal, Usage: 1000, HostSwapTotal: hostSwap,
			},
			Pids: Pids{Current: lim(2, at("cgroupns", 0, "/child", "sys/fs/cgroup/child/pids.current"))},
		}},
		{"cgroup namespace: the namespace's root / is the mount point", "cgroupns", 402, 123450 * time.Millisecond, View{
			Mode: "v2",
			CPU:  CPU{HostOnline: 4},
			Memory: Memory{
				Limit: lim(536870912, at("cgroupns", 0, "/", "sys/fs/cgroup/memory.max")),
				Total: 536870912, HostTotal: hostTotal, Usage: 2000, Shmem: 4096, HostSwapTotal: hostSwap,
			},
			Pids: Pids{Current: lim(9, at("cgroupns", 0, "/", "sys/fs/cgroup/pids.current"))},
		}},
		{"v1 mounts rooted at /docker/abc (agent in a container), AT_CLKTCK 250", "v1-mountroot", 500, 4 * time.Second, View{
			Mode: "v1",
			CPU: CPU{
				Count:   lim(3, at("v1-mountroot", 1, "/docker/abc", "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us")),
				QuotaUS: 250000, PeriodUS: 100000, HostOnline: 4,
			},
			Memory: Memory{
				Limit: lim(1073741824, at("v1-mountroot", 1, "/docker/abc", "sys/fs/cgroup/memory/memory.limit_in_bytes")),
				Total: 1073741824, HostTotal: hostTotal, Usage: 4096,
			},
			// No pids hierarchy: View leaves Pids empty (the host's answer).
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := fixture(t, tc.fixture)
			got, err := r.View(tc.pid)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Pid = tc.pid
			if !reflect.DeepEqual(*got, tc.want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(tc.want, "", "  ")
				t.Errorf("View(%d):\ngot  %s\nwant %s", tc.pid, g, w)
			}
			st, err := r.StartTime(tc.pid)
			if err != nil || st != tc.start {
				t.Errorf("StartTime(%d) = %v, %v; want %v", tc.pid, st, err, tc.start)
			}
			wantPossible := 8 // possible: 0-7
			if tc.fixture == "v1-mountroot" {
				wantPossible = 4 // possible: 0-3
			}
			if n, err := r.PossibleCPUs(); err != nil || n != wantPossible {
				t.Errorf("PossibleCPUs() = %d, %v; want %d", n, err, wantPossible)
			}
		})
	}
}

func TestUnreachableCgroup(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		pid     int
		want    UnreachableError
	}{
		{"cgroupns", 401, UnreachableError{Cgroup: "/../../other", MountRoot: "/", MountPoint: "/sys/fs/cgroup"}},
		{"v1-mountroot", 501, UnreachableError{Cgroup: "/docker/other", MountRoot: "/docker/abc", MountPoint: "/sys/fs/cgroup/memory"}},
	} {
		_, err := fixture(t, tc.fixture).Memory(tc.pid)
		var ue *UnreachableError
		if !errors.As(err, &ue) || *ue != tc.want {
			t.Errorf("%s pid %d: err = %v, want %+v", tc.fixture, tc.pid, err, tc.want)
		}
	}
}
