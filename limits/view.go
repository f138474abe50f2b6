package limits

// Source says which file decided a value: the cgroup (as the host names it),
// how many levels above the process's own cgroup it sits (0 = its own), and
// the file read.
type Source struct {
	Cgroup string `json:"cgroup"`
	Level  int    `json:"level"`
	File   string `json:"file"`
}

// Value is a tri-state limit: Limited=false means no cgroup limits it (cpu.max
// "max", cfs_quota_us -1, memory.max "max", the v1 sentinel, or above the
// host's total). Errors travel separately and are never folded into Value.
type Value struct {
	Value   uint64  `json:"value"`
	Limited bool    `json:"limited"`
	Source  *Source `json:"source,omitempty"`
}

// CPU is what the caller's cpu and cpuset cgroups allow.
type CPU struct {
	// Count is K = max(1, ceil(min over ancestors of quota/period)), or
	// unlimited. Never derived from shares or weight.
	Count Value `json:"count"`
	// QuotaUS and PeriodUS are the deciding level's numbers (0 when unlimited).
	QuotaUS  int64 `json:"quota_us"`
	PeriodUS int64 `json:"period_us"`
	// Cpuset is the effective cpuset of the caller's cgroup ("0-3,8"), with
	// the file it came from; empty when no cpuset controller is visible.
	Cpuset       string  `json:"cpuset"`
	CpusetSource *Source `json:"cpuset_source,omitempty"`
	// HostOnline is the number of online CPUs on the host.
	HostOnline int `json:"host_online"`
}

// Memory is what the caller's memory cgroup allows and uses, in bytes.
type Memory struct {
	// Limit is the minimum of memory.max / memory.limit_in_bytes over all
	// ancestors; Limited=false when none is below the host's MemTotal.
	Limit Value `json:"limit"`
	// Total is min(Limit, HostTotal): what sysinfo reports as totalram.
	Total     uint64 `json:"total"`
	HostTotal uint64 `json:"host_total"`
	Usage     uint64 `json:"usage"`
	Shmem     uint64 `json:"shmem"`

	// SwapLimit is the container's swap allowance (v2 memory.swap.max, v1
	// memsw limit minus the RAM limit), minimum over ancestors.
	SwapLimit Value `json:"swap_limit"`
	// SwapTotal is min(SwapLimit, HostSwapTotal); 0 without swap accounting.
	SwapTotal     uint64 `json:"swap_total"`
	HostSwapTotal uint64 `json:"host_swap_total"`
	SwapUsage     uint64 `json:"swap_usage"`
}

// Pids is the caller's pids cgroup.
type Pids struct {
	// Current is pids.current of the caller's own cgroup (tasks, i.e. threads).
	Current Value `json:"current"`
}

// View is everything a process in one set of cgroups may see.
type View struct {
	Pid    int    `json:"pid"`
	Mode   string `json:"mode"` // "v1", "v2" or "hybrid"
	CPU    CPU    `json:"cpu"`
	Memory Memory `json:"memory"`
	Pids   Pids   `json:"pids"`
}
