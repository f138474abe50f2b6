// Package sysinfo answers sysinfo(2) with the container's view: memory and
// swap from the caller's memory cgroup, procs from its pids cgroup, uptime
// since the container's init started, loads from the container's own load
// average (limits/loadavg). It encodes the answer for the caller's
// ABI: the 64-bit struct for x86_64 and x32, struct compat_sysinfo (with the
// kernel's mem_unit scaling) for i386.
//
// It never touches the listener fd or the caller's memory directly: it returns
// bytes and notify writes them.
package sysinfo
