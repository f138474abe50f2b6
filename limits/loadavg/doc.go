// Package loadavg computes each attached container's own load average the
// way the kernel computes the host's (kernel/sched/loadavg.c): every 5 s it
// counts the runnable (R) and uninterruptible (D) threads of the container's
// cgroup and applies the fixed-point exponential decay. It samples the same
// tasks as LXCFS's /proc/loadavg (the cpu hierarchy's cgroup of the
// container's init and three levels below it), so that sysinfo(2) and the
// file agree up to their sampling phases.
//
// One Sampler serves the node; containers are registered while attached.
// It only reads cgroup.procs and /proc; it never writes anything.
package loadavg
