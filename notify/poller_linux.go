package notify

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Poller holds idle listeners for loops on the path of kernels without
// synchronous wake-up (Kernel.WaitReadable set): there every RECV follows a
// poll anyway, so an idle listener need not keep a thread blocked in
// poll(2) of its own. A loop parks its listener here after hotFor without a
// notification; a thousand idle containers then cost no thread at all.
//
// A parked listener waits in the Go runtime's own poller, registered there
// through a duplicate of its fd for as long as it is parked. The thread
// that finds it ready then runs the loop's goroutine at once: no goroutine
// of ours hands it on (that hand-off made the runtime wake another CPU on
// every call of an idle container), and a listener that is not parked
// never wakes the runtime's poller while its loop receives on a thread of
// its own.
//
// With synchronous wake-up a loop does not use it: the kernel hands the
// trapped thread's CPU only to a receiver already asleep in RECV, so that
// path keeps one thread per listener (see KernelFor).
type Poller struct {
	mu     sync.Mutex
	parked map[int]*os.File // listener fd -> its registration while parked
}

// hotFor is how long a loop keeps polling its listener on a thread of its
// own after a notification before it parks it in the Poller: callers that
// call again soon (a loop, a burst) skip parking.
const hotFor = 50 // ms

// ErrNoPark is Wait's error when the listener cannot be parked (no fd to
// spare: EMFILE, ENFILE). On any error of Wait the loop waits on a thread
// of its own instead.
var ErrNoPark = errors.New("cannot park the listener")

// dupFd duplicates a listener fd (a variable for tests).
var dupFd = func(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

// NewPoller returns a Poller.
func NewPoller() (*Poller, error) {
	return &Poller{parked: map[int]*os.File{}}, nil
}

// Wait blocks until fd has a notification or hung up (EPOLLHUP: every task
// using the filter is gone), or quit is closed and Wake(fd) called; woken is
// false when the loop should just look at its state again. One waiter per fd
// at a time.
func (p *Poller) Wait(fd int, quit <-chan struct{}) (hup, woken bool, err error) {
	dup, err := dupFd(fd)
	if err != nil {
		return false, false, fmt.Errorf("%w: dup seccomp listener: %w", ErrNoPark, err)
	}
	// O_NONBLOCK belongs to the open file, which the listener's other fds
	// share (the holder's, a next agent's) and which keeps it for good:
	// RECV, SEND and ID_VALID do not look at it (they block, or not, the
	// same either way), and poll(2) does not either. The runtime registers
	// only a non-blocking fd in its poller.
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return false, false, fmt.Errorf("seccomp listener non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(dup), "seccomp-listener")
	// Closing it removes the registration (the runtime deletes it from
	// its epoll set; the listener's other fds keep the open file alive,
	// so a close alone would not).
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false, false, err
	}
	p.mu.Lock()
	p.parked[fd] = f
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if p.parked[fd] == f {
			delete(p.parked, fd)
		}
		p.mu.Unlock()
	}()
	select {
	case <-quit: // Wake may have come before the registration
		return false, false, nil
	default:
	}
	var revents int16
	var perr error
	rerr := rc.Read(func(fd uintptr) bool {
		// The runtime's poller reports edges; the listener's state is
		// what poll says now (a notification queued before the
		// registration included).
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		for err == unix.EINTR {
			n, err = unix.Poll(pfd, 0)
		}
		perr, revents = err, pfd[0].Revents
		return err != nil || n > 0
	})
	switch {
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		return false, false, nil
	case rerr != nil:
		return false, false, fmt.Errorf("wait for seccomp listener: %w", rerr)
	case perr != nil:
		return false, false, fmt.Errorf("poll seccomp listener: %w", perr)
	}
	switch {
	case revents&unix.POLLIN != 0:
		return false, true, nil
	case ListenerGone(revents):
		return true, true, nil
	default:
		// POLLERR alone (see ListenerGone): the loop looks again.
		return false, false, nil
	}
}

// Wake ends the Wait of fd, if any, with woken=false; the loop closes its
// quit channel first.
func (p *Poller) Wake(fd int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.parked[fd]; f != nil {
		_ = f.SetReadDeadline(time.Unix(1, 0))
	}
}
