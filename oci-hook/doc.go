// Package ocihook turns interception on for one container by editing its OCI
// spec before the runtime reads it: SCMP_ACT_NOTIFY rules for the trapped
// syscalls, merged into whatever seccomp profile is there, plus the agent's
// listenerPath.
//
// It must never weaken the existing profile: deny rules, defaultAction,
// architectures and flags stay untouched (a flag may only be added:
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, where the caller found that kernel
// and runtime take it), a call the profile does not allow
// is left to the profile, and an allow rule with conditions becomes a notify
// rule with the same conditions. It never notifies anything but the calls the
// agent answers (never write(2)), never makes notify the defaultAction, and
// never replaces another agent's listenerPath.
//
// A container asks through the seccompagent.io/enable, /syscalls and /cpus
// annotations, or SECCOMPAGENT_ENABLE, _SYSCALLS and _CPUS in process.env
// (Docker 20.10 passes no annotations); the effective options are written
// back as annotations, which runc and crun forward to the agent. With
// Modifier.ViewDir set, an enabled container also gets the agent's view
// socket directory bind-mounted read-only at /run/seccompagent (view.go).
//
// Files are LXCFS's job: with seccompagent.io/lxcfs (SECCOMPAGENT_LXCFS)
// auto or true, an enabled container also gets bind mounts of the /proc
// files and the CPU list a live fuse.lxcfs mount serves (FindLXCFS decides
// what is present; the modifier only takes that as a value). It never binds
// a path LXCFS does not serve, nor over a mount the container already has.
//
// Modifier.ModifyConfig works on config.json bytes and keeps every member
// specs-go does not know, including the includes/excludes filters of docker
// and podman profile templates; Modifier.Modify is the same edit on a
// specs.Spec. cmd/seccompagent-runtime (an OCI runtime wrapper) and
// `seccompagent inject` are its two users.
package ocihook
