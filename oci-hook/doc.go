// Package ocihook turns interception on for one container by editing its OCI
// spec before the runtime reads it: SCMP_ACT_NOTIFY rules for the trapped
// syscalls, merged into whatever seccomp profile is there, plus the agent's
// listenerPath.
//
// It must never weaken the existing profile: deny rules, defaultAction,
// architectures and flags stay untouched.
package ocihook
