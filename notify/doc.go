// Package notify owns the kernel's seccomp user-notification protocol for one
// listener fd: receive a notification, validate its id, dispatch it by
// (audit arch, syscall nr) to a handler, write the handler's answer into the
// trapped thread's memory and respond.
//
// It owns the TOCTOU order — SECCOMP_IOCTL_NOTIF_ID_VALID, then compute, then
// ID_VALID again immediately before writing with process_vm_writev (the
// kernel's permission checks, no FOLL_FORCE), then respond — and the
// fail-open rule: any internal failure, unknown syscall, recovered handler
// panic or write that did not complete is answered with
// SECCOMP_USER_NOTIF_FLAG_CONTINUE so the caller gets the kernel's real answer.
//
// What the kernel does is probed once at start-up, never read from its
// version (ProbeFeatures): x32 execution, synchronous wake-up, and whether a
// RECV blocked when the container ends is woken (else the loop polls before
// each RECV). The orphan wake-up probe re-executes the running binary; this
// package's init runs the probe's child when the environment asks for it.
//
// Concurrency and fairness (loop.go, budget.go, poller_linux.go): a Loop
// answers up to Loop.Receivers notifications of one listener at once; a
// container's Budget bounds the agent CPU its calls take to its own quota
// (beyond it the calls wait in the kernel's queue, never fail); without
// synchronous wake-up idle listeners wait in the Go runtime's poller (the
// Poller) rather than a thread each.
//
// It must never hand the raw listener fd to a handler, never answer with an
// errno the real syscall could not return, and never spin on a dead fd.
package notify
