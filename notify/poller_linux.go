package notify

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller waits for many idle listeners with one epoll fd, for loops on
// the path of kernels without synchronous wake-up (Kernel.WaitReadable
// set): there every RECV follows a poll anyway, so an idle listener need not
// keep a thread blocked in poll(2) of its own. A loop parks its listener
// here after hotFor without a notification; a thousand idle containers then
// cost no thread at all (the epoll fd waits in the Go runtime's poller).
//
// With synchronous wake-up a loop does not use it: the kernel hands the
// trapped thread's CPU only to a receiver already asleep in RECV, so that
// path keeps one thread per listener (see KernelFor).
type Poller struct {
	epfd int
	// rc waits for the epoll fd in the Go runtime's own poller, so that
	// the thread that finds a listener ready also runs its loop (a
	// thread of our own blocked in epoll_wait would have to wake another
	// one for it: one more cross-CPU wake-up on every call of an idle
	// container).
	rc syscall.RawConn

	mu      sync.Mutex
	waiters map[int32]chan uint32 // fd -> where its next event goes
}

// hotFor is how long a loop keeps polling its listener on a thread of its
// own after a notification before it parks it in the Poller: callers that
// call again soon (a loop, a burst) skip the Poller's hand-off.
const hotFor = 50 // ms

// NewPoller starts the Poller. It lives as long as the process.
func NewPoller() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller
	// (an epoll fd is itself pollable: readable while it has events).
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	rc, err := os.NewFile(uintptr(epfd), "seccomp-listener-poller").SyscallConn()
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	p := &Poller{epfd: epfd, rc: rc, waiters: map[int32]chan uint32{}}
	go p.run()
	return p, nil
}

func (p *Poller) run() {
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		var err error
		rerr := p.rc.Read(func(fd uintptr) bool {
			n, err = unix.EpollWait(int(fd), events, 0)
			return err != nil || n > 0 // false: wait until it is readable
		})
		if rerr != nil {
			panic(fmt.Sprintf("seccompagent: waiting for the listener poller: %v", rerr))
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			panic(fmt.Sprintf("seccompagent: epoll_wait on the listener poller: %v", err))
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if ch := p.waiters[ev.Fd]; ch != nil {
				delete(p.waiters, ev.Fd)
				ch <- ev.Events // buffered: never blocks
			}
		}
		p.mu.Unlock()
	}
}

// Wait blocks until fd has a notification or hung up (EPOLLHUP: every task
// using the filter is gone), or quit is closed (woken=false). One waiter per
// fd at a time.
func (p *Poller) Wait(fd int, quit <-chan struct{}) (hup, woken bool, err error) {
	ch := make(chan uint32, 1)
	p.mu.Lock()
	p.waiters[int32(fd)] = ch
	p.mu.Unlock()
	// One-shot: the registration fires once and stays disarmed until the
	// next Wait arms it again, so a busy listener never wakes this thread
	// while its loop is receiving on a thread of its own.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
	err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	if errors.Is(err, unix.ENOENT) {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		p.drop(fd, ch)
		return false, false, fmt.Errorf("epoll_ctl: %w", err)
	}
	select {
	case rev := <-ch:
		return rev&unix.EPOLLIN == 0 && rev&(unix.EPOLLHUP|unix.EPOLLERR) != 0, true, nil
	case <-quit:
		p.drop(fd, ch)
		return false, false, nil
	}
}

func (p *Poller) drop(fd int, ch chan uint32) {
	p.mu.Lock()
	if p.waiters[int32(fd)] == ch {
		delete(p.waiters, int32(fd))
	}
	p.mu.Unlock()
}

// Forget removes fd from the epoll set; call it before fd is closed. (An
// epoll registration outlives the fd while another process, such as the
// holder, keeps the same open file, and the fd number may be reused.)
func (p *Poller) Forget(fd int) {
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	p.mu.Lock()
	delete(p.waiters, int32(fd))
	p.mu.Unlock()
}
