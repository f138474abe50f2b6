// Package affinity answers sched_getaffinity(2) with the caller thread's real
// CPU mask trimmed to the container's quota-derived CPU count, reproducing the
// kernel's argument checks (kernel/sched/syscalls.c) and return value exactly.
//
// It only ever clears bits of the kernel's own mask and keeps real CPU ids; it
// never sets a bit, never renumbers, and never derives a count from shares or
// weight.
package affinity
