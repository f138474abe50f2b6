package notify

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Pending is a notification as RECV delivered it: enough to answer it again
// (by another process holding the same listener) if this one dies first.
type Pending struct {
	ID   uint64
	Tid  uint32
	Arch uint32
	Nr   int32
	Args [6]uint64
}

// Journal gives the loop the memory it receives notifications into: memory
// another process also maps, so that a notification this agent received
// and never answered (the kernel keeps it "sent", and only a SEND with its
// id releases the caller) can be answered by the next one even if this
// process is SIGKILLed the instant RECV returns — the kernel itself wrote
// the record (see agent/journal.go).
type Journal interface {
	// RecvBuffer returns at least NotifSize bytes, 8-byte aligned, that
	// only this loop uses.
	RecvBuffer() []byte
	// Received is called after RECV filled the buffer, before the answer.
	Received(p *Pending)
}

// NotifSize is sizeof(struct seccomp_notif).
const NotifSize = int(unsafe.Sizeof(notif{}))

// DecodePending reads a struct seccomp_notif from b (a Journal's buffer);
// ok is false for a zeroed one.
func DecodePending(b []byte) (p Pending, ok bool) {
	if len(b) < NotifSize {
		return p, false
	}
	n := (*notif)(unsafe.Pointer(&b[0]))
	p = Pending{ID: n.ID, Tid: n.Pid, Arch: n.Arch, Nr: n.Nr, Args: n.Args}
	return p, p.ID != 0
}

// Loop serves one seccomp listener fd until every task using its filter is
// gone. One loop runs per fd, so a slow or flooding container only ever
// delays itself.
type Loop struct {
	Fd        int
	Container *Container
	Registry  *Registry
	Kernel    Kernel
	// Gate is held for reading while a notification is in flight, so a
	// shutdown can take it for writing and know nothing is half answered.
	Gate *sync.RWMutex
	// Journal, if set, records each notification before it is answered.
	Journal Journal
	// Observe, if set, is called after each response (from the loop's
	// goroutine: it must not block).
	Observe func(Outcome)
	Log     *logrus.Entry

	stopping atomic.Bool
	busy     atomic.Bool  // a received notification is being answered
	tid      atomic.Int32 // the thread blocked in poll/RECV, for Stop
}

// ErrStopped is what Run returns after Stop.
var ErrStopped = errors.New("notification loop stopped")

// Run receives and answers notifications until the listener hangs up
// (returns nil), Stop is called (returns ErrStopped) or it fails in a way
// retrying cannot fix (returns the error). It never closes Fd: the caller
// owns it.
func (l *Loop) Run() error {
	if l.Gate == nil {
		l.Gate = new(sync.RWMutex)
	}
	// Stop interrupts the blocking poll or RECV with a signal aimed at
	// this thread, so the goroutine must stay on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.tid.Store(int32(unix.Gettid()))
	defer l.tid.Store(0)
	n := new(notif)
	if l.Journal != nil {
		if b := l.Journal.RecvBuffer(); len(b) >= NotifSize {
			n = (*notif)(unsafe.Pointer(&b[0]))
		}
	}
	for {
		if l.stopping.Load() {
			return ErrStopped
		}
		if l.Kernel.WaitReadable != nil {
			hup, err := l.Kernel.WaitReadable(l.Fd)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("poll seccomp listener: %w", err)
			}
			if hup {
				return nil
			}
			if l.stopping.Load() {
				return ErrStopped
			}
		}
		err := l.Kernel.Recv(l.Fd, n)
		switch {
		case err == nil:
			l.busy.Store(true)
			p := Pending{ID: n.ID, Tid: n.Pid, Arch: n.Arch, Nr: n.Nr, Args: n.Args}
			if l.Journal != nil {
				l.Journal.Received(&p)
			}
			l.Answer(&p)
			l.busy.Store(false)
		case errors.Is(err, unix.EINTR):
			// Stop's signal, or any other: look at the flag again.
		case errors.Is(err, unix.ENOENT):
			// The trapped task was killed or signalled before we read
			// the notification, or the filter lost its last user and
			// the kernel woke a blocked RECV for it (where
			// Features.OrphanWakesRecv).
			if l.Kernel.HungUp(l.Fd) {
				return nil
			}
		default:
			if l.Kernel.HungUp(l.Fd) {
				return nil
			}
			return fmt.Errorf("receive seccomp notification: %w", err)
		}
	}
}

// Stop makes Run return ErrStopped once the notification it is answering,
// if any, has been answered; it never abandons a received notification. It
// returns at once; Run's return says when the loop has stopped. A thread
// blocked in poll, or in RECV before Linux 6.6 (down_interruptible), is
// woken with SIGURG, which the Go runtime tolerates at any time and which
// makes both return EINTR. From 6.6 on RECV waits with
// ERESTARTSYS, which the runtime's SA_RESTART handlers turn into a restart:
// such a loop stays blocked, holding nothing (see Busy), and the process
// may exit under it.
func (l *Loop) Stop() {
	l.stopping.Store(true)
	if tid := l.tid.Load(); tid != 0 {
		_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// Busy reports whether the loop is answering a notification it received.
// A process may exit while none of its loops is busy: a notification
// received in the instant after this reported false is in the loop's
// Journal buffer, for the next agent.
func (l *Loop) Busy() bool { return l.busy.Load() }

// Stopping reports whether Stop was called.
func (l *Loop) Stopping() bool { return l.stopping.Load() }

// Answer computes and sends the answer to p. Run calls it for every
// notification it receives; a new agent calls it for the notifications a
// dead one received and never answered (the id check inside makes a stale
// one harmless).
func (l *Loop) Answer(p *Pending) {
	if l.Gate == nil {
		l.Gate = new(sync.RWMutex)
	}
	l.Gate.RLock()
	defer l.Gate.RUnlock()

	start := time.Now()
	var o Outcome
	resp := l.answer(p, &o)
	r := notifResp{ID: p.ID}
	switch {
	case resp.Continue:
		r.Flags = flagContinue
	case resp.Errno != 0:
		r.Error = -int32(resp.Errno)
	default:
		r.Val = resp.Val
	}
	err := l.Kernel.Send(l.Fd, &r)
	if err != nil {
		// ENOENT: the caller died or was interrupted by a signal after
		// we received it; the kernel has already dealt with it.
		l.Log.WithFields(logrus.Fields{"id": p.ID, "tid": p.Tid, "err": err}).Debug("respond failed")
	}
	if l.Observe != nil {
		o.Response, o.SendErr, o.Duration = resp, err, time.Since(start)
		l.Observe(o)
	}
}

// answer runs the TOCTOU order: check the id is still valid (so the tid
// still names the trapped thread while the handler reads its /proc files and
// cgroups), compute, check the id again right before writing into the
// thread's memory, write, and only then respond. Every failure short of a
// handler answer, and every write that did not complete, is Continue, with
// its reason in o.
func (l *Loop) answer(n *Pending, o *Outcome) (resp Response) {
	e, ok := l.Registry.lookup(n.Arch, n.Nr)
	if !ok {
		o.Reason = ReasonUnregistered
		return Continue()
	}
	o.Syscall, o.Arch = e.name, e.abi.Name
	log := l.Log.WithFields(logrus.Fields{"id": n.ID, "tid": n.Tid, "syscall": e.name, "arch": e.abi.Name})
	if n.Tid == 0 {
		// The trapped thread is not visible in our pid namespace.
		log.Debug("caller not visible from the agent's pid namespace: continue")
		o.Reason = ReasonPidNotVisible
		return Continue()
	}
	if err := l.Kernel.IDValid(l.Fd, n.ID); err != nil {
		// The caller is gone; the kernel will not accept any answer.
		log.WithError(err).Debug("notification no longer valid")
		o.Reason, o.Err = ReasonGone, err
		return Continue()
	}
	mem := &vmWriter{tid: int(n.Tid), fd: l.Fd, id: n.ID, idValid: l.Kernel.IDValid}
	req := &Request{ID: n.ID, Tid: int(n.Tid), ABI: e.abi, Nr: n.Nr, Args: n.Args, Container: l.Container, Mem: mem}
	defer func() {
		if p := recover(); p != nil {
			log.WithField("panic", p).Errorf("handler panicked, answering with the kernel's value\n%s", debug.Stack())
			resp = Continue()
			o.Reason, o.Err = ReasonPanic, fmt.Errorf("panic: %v", p)
		}
	}()
	resp = e.handler.Handle(req)
	if mem.failed {
		if !resp.Continue {
			log.WithField("answer", resp).Debug("write into the caller did not complete: continue, the kernel answers")
		}
		o.Reason, o.Err = ReasonWrite, &writeError{err: mem.err, errno: mem.errno}
		return Continue()
	}
	if resp.Errno != 0 && !validErrno(resp.Errno) {
		log.WithField("errno", resp.Errno).Error("handler returned an impossible errno: continue")
		o.Reason = ReasonBadErrno
		return Continue()
	}
	if resp.Continue {
		o.Reason = ReasonHandler
	}
	log.WithField("answer", resp).Debug("answered")
	return resp
}

// IDValid reports whether notification id is still waiting for an answer
// from some holder of fd (SECCOMP_IOCTL_NOTIF_ID_VALID: true only for a
// notification that was received and not yet answered).
func IDValid(fd int, id uint64) bool { return kernelIDValid(fd, id) == nil }

// validErrno reports whether errno is one a syscall can return (1..4095).
func validErrno(e syscall.Errno) bool { return e > 0 && e < 4096 }
