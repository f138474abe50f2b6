package notify

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrKernelAnswers is what Memory.Write returns when the agent could not copy
// the whole answer: the notification must then be answered with Continue so
// that the kernel runs the real syscall and its own copy_to_user decides.
var ErrKernelAnswers = errors.New("destination not writable by the agent: the kernel answers")

// vmWriter writes into the trapped thread's address space with
// process_vm_writev(2).
//
// Why not /proc/<tid>/mem: its writes use FOLL_FORCE, which writes through
// read-only mappings, so the agent would have to check /proc/<tid>/maps first
// — unbounded work for a caller with many mappings, and a check that another
// thread's mprotect can invalidate before the write. process_vm_writev pins
// the destination pages with FOLL_WRITE only: the VMA permissions at the
// moment of the write apply, as they do to copy_to_user. (Not to the
// nanosecond: it checks them when it pins the pages, then drops mmap_lock and
// copies, so an mprotect(PROT_READ) that completes in that gap of a few
// hundred nanoseconds does not stop the copy; TestKernelWrites measures it.)
//
// Where the two still differ, the write fails or comes up short and the
// caller answers Continue, so the kernel itself produces its exact result:
//   - a destination that straddles an unmapped or read-only page (the kernel
//     copies up to the fault and fails with EFAULT; it rewrites the same head
//     bytes after our partial copy);
//   - a buffer in the gap below a stack VMA: the page-fault path grows the
//     stack, while get_user_pages does not since Linux 6.5 (older kernels grow
//     it for us, as the fault would);
//   - memfd_secret(2) pages, which get_user_pages refuses but the owner's own
//     page tables map (the caller then gets the host's value, the only
//     answer that is both possible and exact).
//
// The id is validated right before the write. While a notification is valid
// its thread is blocked in the filter, alive, and so keeps its tid. Once it
// is gone its tid could name another task only after the pid allocator,
// which hands out pids cyclically, has come round the whole pid_max range of
// the namespace: not within the one syscall between the check and the write.
// What remains is that one-syscall window: a thread killed right after the
// check (a fatal signal; or another thread's execve, which takes over the
// leader's tid, and the write would reach the new image), and a thread
// interrupted by a non-fatal signal right after it (without
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV), whose call returns EINTR while the
// answer is written. The check makes each a race against one syscall instead
// of against the whole computation.
type vmWriter struct {
	tid int
	// fd and id name the notification; idValid is the loop's Kernel seam
	// for SECCOMP_IOCTL_NOTIF_ID_VALID.
	fd      int
	id      uint64
	idValid func(fd int, id uint64) error
	// failed records that a write did not complete: the loop then answers
	// Continue whatever the handler said; err is why (for Loop.Observe).
	failed bool
	err    error
	errno  unix.Errno // process_vm_writev's, when it failed
	// gone is ID_VALID's error when the notification was no longer
	// valid at the check: the caller was killed or interrupted.
	gone error
}

var _ Memory = (*vmWriter)(nil)

// Write implements Memory.
func (w *vmWriter) Write(addr uint64, p []byte) error {
	if err := w.write(addr, p); err != nil {
		w.failed, w.err = true, err
		return err
	}
	return nil
}

func (w *vmWriter) write(addr uint64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if addr+uint64(len(p)) < addr {
		// Wraps the address space: access_ok fails before any byte is
		// copied; the kernel gives its EFAULT.
		return fmt.Errorf("%w: range %#x+%d wraps", ErrKernelAnswers, addr, len(p))
	}
	if err := w.idValid(w.fd, w.id); err != nil {
		w.gone = err
		return fmt.Errorf("%w: notification no longer valid: %v", ErrKernelAnswers, err)
	}
	local := []unix.Iovec{{Base: &p[0]}}
	local[0].SetLen(len(p))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(p)}}
	for {
		n, err := unix.ProcessVMWritev(w.tid, local, remote, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			w.errno, _ = err.(unix.Errno)
			// Not wrapped with %w: an EFAULT here is not the
			// syscall's answer, only the kernel's copy is.
			return fmt.Errorf("%w: process_vm_writev(%d, %#x, %d): %v", ErrKernelAnswers, w.tid, addr, len(p), err)
		}
		if n != len(p) {
			return fmt.Errorf("%w: process_vm_writev(%d, %#x, %d) wrote %d bytes", ErrKernelAnswers, w.tid, addr, len(p), n)
		}
		return nil
	}
}
