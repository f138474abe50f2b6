package notify

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Loop serves one seccomp listener fd until every task using its filter is
// gone. One loop runs per fd, so a slow or flooding container only ever
// delays itself.
type Loop struct {
	Fd        int
	Container *Container
	Registry  *Registry
	Kernel    Kernel
	// ProcRoot is where /proc/<tid>/mem is opened ("/proc").
	ProcRoot string
	// Gate is held for reading while a notification is in flight, so a
	// shutdown can take it for writing and know nothing is half answered.
	Gate *sync.RWMutex
	Log  *logrus.Entry
}

// Run receives and answers notifications until the listener hangs up
// (returns nil) or fails in a way retrying cannot fix (returns the error).
// It never closes Fd: the caller owns it.
func (l *Loop) Run() error {
	if l.ProcRoot == "" {
		l.ProcRoot = "/proc"
	}
	if l.Gate == nil {
		l.Gate = new(sync.RWMutex)
	}
	var n notif
	for {
		if l.Kernel.WaitReadable != nil {
			hup, err := l.Kernel.WaitReadable(l.Fd)
			if err != nil {
				return fmt.Errorf("poll seccomp listener: %w", err)
			}
			if hup {
				return nil
			}
		}
		err := l.Kernel.Recv(l.Fd, &n)
		switch {
		case err == nil:
			l.serve(&n)
		case errors.Is(err, unix.ENOENT):
			// The trapped task was killed or signalled before we read
			// the notification, or (Linux 6.6+) the filter lost its last
			// user and a blocked RECV was woken for it.
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

func (l *Loop) serve(n *notif) {
	l.Gate.RLock()
	defer l.Gate.RUnlock()

	resp := l.answer(n)
	r := notifResp{ID: n.ID}
	switch {
	case resp.Continue:
		r.Flags = flagContinue
	case resp.Errno != 0:
		r.Error = -int32(resp.Errno)
	default:
		r.Val = resp.Val
	}
	if err := l.Kernel.Send(l.Fd, &r); err != nil {
		// ENOENT: the caller died or was interrupted by a signal after
		// we received it; the kernel has already dealt with it.
		l.Log.WithFields(logrus.Fields{"id": n.ID, "tid": n.Pid, "err": err}).Debug("respond failed")
	}
}

// answer runs the TOCTOU order: open the thread's memory, check the id is
// still valid (so the tid still names the trapped thread), compute and write,
// and only then respond. Every failure short of a handler answer is Continue.
func (l *Loop) answer(n *notif) (resp Response) {
	e, ok := l.Registry.lookup(n.Arch, n.Nr)
	if !ok {
		return Continue()
	}
	log := l.Log.WithFields(logrus.Fields{"id": n.ID, "tid": n.Pid, "syscall": e.name, "arch": e.abi.Name})
	if n.Pid == 0 {
		// The trapped thread is not visible in our pid namespace.
		log.Debug("caller not visible from the agent's pid namespace: continue")
		return Continue()
	}
	mem, err := openProcMem(l.ProcRoot, int(n.Pid))
	if err != nil {
		log.WithError(err).Debug("open caller memory: continue")
		return Continue()
	}
	defer mem.Close()
	if err := l.Kernel.IDValid(l.Fd, n.ID); err != nil {
		// The caller is gone; the kernel will not accept any answer.
		log.WithError(err).Debug("notification no longer valid")
		return Continue()
	}
	req := &Request{ID: n.ID, Tid: int(n.Pid), ABI: e.abi, Nr: n.Nr, Args: n.Args, Container: l.Container, Mem: mem}
	defer func() {
		if p := recover(); p != nil {
			log.WithField("panic", p).Errorf("handler panicked, answering with the kernel's value\n%s", debug.Stack())
			resp = Continue()
		}
	}()
	resp = e.handler.Handle(req)
	if resp.Errno != 0 && !validErrno(resp.Errno) {
		log.WithField("errno", resp.Errno).Error("handler returned an impossible errno: continue")
		return Continue()
	}
	log.WithField("answer", resp).Debug("answered")
	return resp
}

// validErrno reports whether errno is one a syscall can return (1..4095).
func validErrno(e syscall.Errno) bool { return e > 0 && e < 4096 }
