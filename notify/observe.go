package notify

import (
	"syscall"
	"time"
)

// Reasons the kernel was left to answer a notification (Outcome.Reason):
// each is a fail-open, and some mean the host is set up so that the agent
// cannot work at all (ReasonWrite with EPERM: process_vm_writev's ptrace
// access check refused, e.g. Yama ptrace_scope=3, an LSM, or an agent
// without CAP_SYS_PTRACE).
const (
	ReasonUnregistered  = "unregistered"      // no handler for (arch, nr)
	ReasonPidNotVisible = "pid-not-visible"   // notif.pid is 0: the caller's pid namespace is not below ours
	ReasonGone          = "notification-gone" // ID_VALID failed: the caller was killed or interrupted
	ReasonHandler       = "handler"           // the handler chose the kernel's answer (it logs why at Debug)
	ReasonWrite         = "write"             // writing the answer into the caller did not complete (Err: why)
	ReasonPanic         = "handler-panic"     // the handler panicked
	ReasonBadErrno      = "handler-bad-errno" // the handler returned an errno no syscall can return
)

// Outcome is how one notification was answered; Loop.Observe gets one after
// each response. It names no container: the observer knows which loop it
// was given to.
type Outcome struct {
	// Syscall and Arch are the registered name and ABI ("sysinfo",
	// "x86_64"); both empty for ReasonUnregistered.
	Syscall, Arch string
	// Response is what was sent.
	Response Response
	// Reason is set when Response.Continue: one of the Reason constants.
	Reason string
	// Err is the failure behind Reason, when there was one.
	Err error
	// SendErr is the respond ioctl's error (ENOENT: the caller was
	// interrupted after the receive; the kernel has dealt with it).
	SendErr error
	// Duration runs from the start of Answer to the response sent.
	Duration time.Duration
}

// writeError is a write into the caller that did not complete, as an
// observer sees it: the message handlers got, and process_vm_writev's errno
// (0 if it was not the one that failed) for errors.Is, so that a refusal
// (EPERM) can be told from a bad address. Handlers never see the errno
// wrapped: an EFAULT there is not the syscall's answer.
type writeError struct {
	err   error
	errno syscall.Errno
}

func (e *writeError) Error() string { return e.err.Error() }

func (e *writeError) Unwrap() []error {
	if e.errno == 0 {
		return []error{e.err}
	}
	return []error{e.err, e.errno}
}
