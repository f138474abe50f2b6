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
	// p is lent for the call: the receiver reuses it.
	Received(p *Pending)
}

// HelperJournal is a Journal that gives each extra receiver of a loop (see
// Loop.Receivers) a buffer of its own, with the same guarantee as
// RecvBuffer. A loop whose Journal cannot do this runs one receiver: a
// notification received anywhere else could not be answered after a crash.
type HelperJournal interface {
	Journal
	// HelperBuffer returns a buffer like RecvBuffer's, and release, which
	// the helper calls when it ends (every notification it received
	// answered); ok is false when none is left.
	HelperBuffer() (buf []byte, release func(), ok bool)
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
//
// Receivers: one thread (the primary) always waits for the listener's next
// notification. When it takes one and sees another already queued, it
// starts a helper, up to Receivers in all, so that several threads of one
// container are answered at once. A helper waits in poll with a timeout and
// ends after helperIdle without work. How a receiver may wait depends on
// the kernel (see KernelFor): with synchronous wake-up the primary sleeps
// in RECV, where the kernel hands it the caller's CPU; without it every
// RECV must follow a poll that saw a notification, and the poll-then-RECV
// pairs of all receivers are serialized (recvTok), because a RECV that
// loses the race for the only queued notification would block, and on
// those kernels nothing wakes it once the container is gone.
type Loop struct {
	Fd        int
	Container *Container
	Registry  *Registry
	Kernel    Kernel
	// Gate is held for reading while a notification is in flight, so a
	// shutdown can take it for writing and know nothing is half answered.
	Gate *sync.RWMutex
	// Journal, if set, records each notification before it is answered:
	// each receiver receives into a buffer of its own from it.
	Journal Journal
	// Observe, if set, is called after each response (from the receiver
	// that sent it: it must not block).
	Observe func(Outcome)
	// Later, if set, is called by a receiver after each answer is sent,
	// before it waits again: work the caller need not wait for (it is
	// charged to Budget like the answer).
	Later func()
	Log   *logrus.Entry
	// Receivers bounds how many notifications of this listener are
	// answered at once (default 1; helpers need Kernel.Poll).
	Receivers int
	// Budget, if set, bounds the agent time this container's
	// notifications take (shared by the container's listeners).
	Budget *Budget
	// Poller, if set, holds this listener while it is idle on the path
	// without synchronous wake-up (Kernel.WaitReadable set), instead of a
	// thread blocked in poll.
	Poller *Poller

	stopping atomic.Bool
	inflight atomic.Int32 // received notifications being answered
	finished atomic.Bool
	quit     chan struct{} // closed by Stop or when the primary ends
	quitOnce sync.Once
	recvTok  chan struct{} // poll-then-RECV without synchronous wake-up
	tmu      sync.Mutex
	tids     map[int]bool // threads waiting in poll/RECV/budget, for Stop
	helpers  sync.WaitGroup
	nhelpers atomic.Int32
	hot      bool // primary only: a notification came within hotFor
}

// helperIdle is how long a helper receiver waits for work before it ends.
const helperIdle = time.Second

// ErrStopped is what Run returns after Stop.
var ErrStopped = errors.New("notification loop stopped")

// errGoexit is Run's error when its primary receiver never returned: a
// handler or callback called runtime.Goexit.
var errGoexit = errors.New("notification receiver exited without returning (runtime.Goexit)")

// errIdle ends a helper that had nothing to do.
var errIdle = errors.New("idle")

func (l *Loop) init() {
	if l.Gate == nil {
		l.Gate = new(sync.RWMutex)
	}
	l.tmu.Lock()
	defer l.tmu.Unlock()
	if l.quit == nil {
		l.quit = make(chan struct{})
		l.recvTok = make(chan struct{}, 1)
		l.recvTok <- struct{}{}
		l.tids = map[int]bool{}
	}
}

// Run receives and answers notifications until the listener hangs up
// (returns nil), Stop is called (returns ErrStopped) or it fails in a way
// retrying cannot fix (returns the error). It returns only once every
// helper has ended, and it never closes Fd: the caller owns it.
func (l *Loop) Run() error {
	l.init()
	var buf []byte
	if l.Journal != nil {
		buf = l.Journal.RecvBuffer()
	}
	// The primary receives on a goroutine of its own, which ends with
	// it (and so does a thread it holds: see receive).
	errc := make(chan error, 1)
	go func() {
		err := errGoexit // unless receive returns
		defer func() { errc <- err }()
		err = l.receive(false, buf)
	}()
	err := <-errc
	l.finished.Store(true)
	l.wakeAll()
	l.helpers.Wait()
	return err
}

// Stop makes Run return ErrStopped once the notifications being answered,
// if any, have been answered; it never abandons a received notification. It
// returns at once; Run's return says when the loop has stopped. Threads
// blocked in poll, or in RECV before Linux 6.6 (down_interruptible), are
// woken with SIGURG, which the Go runtime tolerates at any time and which
// makes both return EINTR; a loop parked in the Poller is woken by Poller.Wake.
// From 6.6 on RECV waits with ERESTARTSYS, which the runtime's SA_RESTART
// handlers turn into a restart: such a receiver stays blocked, holding
// nothing (see Busy), and the process may exit under it.
func (l *Loop) Stop() {
	l.init()
	l.stopping.Store(true)
	l.wakeAll()
}

func (l *Loop) wakeAll() {
	l.quitOnce.Do(func() { close(l.quit) })
	if l.Poller != nil {
		l.Poller.Wake(l.Fd)
	}
	l.tmu.Lock()
	defer l.tmu.Unlock()
	for tid := range l.tids {
		_ = unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
	}
}

// Busy reports whether any receiver of the loop is answering a notification
// it received. A process may exit while none of its loops is busy: a
// notification received in the instant after this reported false is in that
// receiver's Journal buffer, for the next agent.
func (l *Loop) Busy() bool { return l.inflight.Load() > 0 }

// Stopping reports whether Stop was called.
func (l *Loop) Stopping() bool { return l.stopping.Load() }

func (l *Loop) done() bool { return l.stopping.Load() || l.finished.Load() }

// receive is one receiver thread: the primary (until hang-up, Stop or a
// hard error) or a helper (also until idle). It receives into buf when that
// is a journal's buffer. Its goroutine must end when it returns: a receiver
// that holds a thread of its own leaves it locked, so that the runtime ends
// the thread with the goroutine instead of keeping it idle for good (a
// node where a thousand containers came and went would keep a thousand
// threads).
func (l *Loop) receive(helper bool, buf []byte) error {
	// Stop interrupts a blocking poll or RECV with a signal aimed at the
	// thread, so the goroutine must stay on it. A primary that parks in
	// the Poller never blocks without bound (poll for hotFor, a RECV
	// after a poll that saw a notification, the Poller's wait ends with
	// Stop) and keeps no thread of its own.
	locked := helper || !l.parks()
	if locked {
		runtime.LockOSThread() // for good: see above
		tid := unix.Gettid()
		l.tmu.Lock()
		l.tids[tid] = true
		l.tmu.Unlock()
		defer func() {
			l.tmu.Lock()
			delete(l.tids, tid)
			l.tmu.Unlock()
		}()
	}
	n := new(notif)
	if len(buf) >= NotifSize {
		n = (*notif)(unsafe.Pointer(&buf[0]))
	}
	sc := new(scratch)
	// Each notification is charged the receiver thread's CPU time since
	// the last one was answered: the answer itself, the RECV that brought
	// it and the Go runtime's work on this thread in between (a thread
	// asleep in RECV or in the budget's wait uses none). A primary that
	// parks has no thread of its own: it is charged what it spends on the
	// thread it is pinned to from its first notification until it parks or
	// waits for budget again (CPU clocks of two threads do not compare).
	last, lastAt := threadCPU(), time.Now()
	var served uint
	// A primary that parks is pinned to a thread from its first
	// notification until it parks again (unpin): while it is hot its CPU
	// clock is read as seldom as a locked receiver's.
	pinned := false
	unpin := func() {
		if !pinned {
			return
		}
		if l.Budget != nil {
			l.Budget.Charge(max(threadCPU()-last, 0))
		}
		runtime.UnlockOSThread()
		pinned = false
	}
	defer unpin()
	for {
		if l.stopping.Load() {
			return ErrStopped
		}
		if helper && l.finished.Load() {
			return nil
		}
		if d := l.Budget.Delay(); d > 0 {
			unpin()
			// Over its budget: this container's calls wait in the
			// kernel's queue, nobody else's.
			select {
			case <-time.After(d):
			case <-l.quit:
			}
			continue
		}
		got, hup, err := l.next(helper, n, unpin)
		switch {
		case err != nil:
			return err
		case hup:
			return nil
		case !got:
			continue
		}
		if !locked && !pinned {
			runtime.LockOSThread()
			pinned = true
			last, lastAt = threadCPU(), time.Now()
		}
		l.inflight.Add(1)
		if served++; served%helpCheckEvery == 1 && max(l.Receivers, 1) > 1+int(l.nhelpers.Load()) {
			l.maybeHelp()
		}
		p := &sc.p
		*p = Pending{ID: n.ID, Tid: n.Pid, Arch: n.Arch, Nr: n.Nr, Args: n.Args}
		if l.Journal != nil {
			l.Journal.Received(p)
		}
		l.answerWith(p, sc)
		l.inflight.Add(-1)
		if l.Later != nil {
			l.Later()
		}
		// The CPU clock is read at most every chargeEvery (it is a
		// syscall, not vDSO): the charge is the same, in fewer and
		// larger pieces.
		if at := time.Now(); l.Budget != nil && at.Sub(lastAt) >= chargeEvery {
			now := threadCPU()
			l.Budget.Charge(max(now-last, 0))
			last, lastAt = now, at
		}
	}
}

// next waits for and receives one notification. got=false means look at
// the loop's state again (a signal, a notification withdrawn, a helper's
// poll timed out: then err is errIdle for a helper). hup means every task
// using the filter is gone.
func (l *Loop) next(helper bool, n *notif, park func()) (got, hup bool, err error) {
	timeout := -1
	if helper {
		timeout = int(helperIdle / time.Millisecond)
	}
	if l.Kernel.WaitReadable == nil && !helper {
		// Synchronous wake-up: sleep in RECV.
		return l.recv(n)
	}
	if l.Kernel.WaitReadable != nil {
		var idle <-chan time.Time
		if helper {
			t := time.NewTimer(helperIdle)
			defer t.Stop()
			idle = t.C
		}
		select {
		case <-l.recvTok:
		case <-l.quit:
			return false, false, nil
		case <-idle:
			return false, false, errIdle
		}
		defer func() { l.recvTok <- struct{}{} }()
	}
	var readable bool
	switch {
	case helper:
		readable, hup, err = l.poll(timeout)
	case l.parks():
		if l.hot {
			readable, hup, err = l.poll(hotFor)
		}
		if !readable && !hup && (err == nil || errors.Is(err, unix.EINTR)) {
			l.hot = false
			park()
			var woken bool
			hup, woken, err = l.Poller.Wait(l.Fd, l.quit)
			switch {
			case err != nil:
				// It could not be parked (no fd to spare for it,
				// ErrNoPark, or the runtime's poller refused it):
				// wait here instead, hotFor at a time, looking at
				// the loop's state between. A listener that fails
				// poll(2) too is the loop's error.
				readable, hup, err = l.poll(hotFor)
				if err == nil && !readable && !hup {
					return false, false, nil
				}
			case err == nil && !woken:
				return false, false, nil // quit, or look again
			default:
				readable = err == nil && !hup
			}
		}
		l.hot = readable
	default:
		hup, err = l.Kernel.WaitReadable(l.Fd)
		readable = err == nil && !hup
	}
	switch {
	case errors.Is(err, unix.EINTR):
		return false, false, nil
	case err != nil:
		return false, false, fmt.Errorf("poll seccomp listener: %w", err)
	case hup:
		return false, true, nil
	case !readable:
		return false, false, errIdle
	case l.done():
		return false, false, nil
	}
	return l.recv(n)
}

// parks reports whether the primary waits in the Poller when idle.
func (l *Loop) parks() bool {
	return l.Poller != nil && l.Kernel.WaitReadable != nil && l.Kernel.Poll != nil
}

func (l *Loop) poll(timeout int) (readable, hup bool, err error) {
	if l.Kernel.Poll == nil {
		return false, false, errIdle
	}
	return l.Kernel.Poll(l.Fd, timeout)
}

func (l *Loop) recv(n *notif) (got, hup bool, err error) {
	err = l.Kernel.Recv(l.Fd, n)
	switch {
	case err == nil:
		return true, false, nil
	case errors.Is(err, unix.EINTR):
		// Stop's signal, or any other: look at the flags again.
		return false, false, nil
	case errors.Is(err, unix.ENOENT):
		// The trapped task was killed or signalled before we read
		// the notification, or (Linux 6.6+) the filter lost its last
		// user and a blocked RECV was woken for it.
		return false, l.Kernel.HungUp(l.Fd), nil
	default:
		if l.Kernel.HungUp(l.Fd) {
			return false, true, nil
		}
		return false, false, fmt.Errorf("receive seccomp notification: %w", err)
	}
}

// threadCPU is the CPU time the calling thread has used: what a receiver
// (locked to its thread) spent on a notification, not counting the time it
// waited for a CPU on a busy node.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// helpCheckEvery is how often (in notifications) a receiver that could
// use a helper polls for a queued notification: the poll is a syscall, and
// a queue that builds up stays long enough to be seen at the next check.
const helpCheckEvery = 8

// chargeEvery bounds how long a locked receiver's CPU time goes uncharged
// to the container's Budget.
const chargeEvery = time.Millisecond

// maybeHelp starts a helper receiver when another notification is already
// queued and the loop has room for one more receiver.
func (l *Loop) maybeHelp() {
	if l.Kernel.Poll == nil || l.done() {
		return
	}
	if readable, _, err := l.Kernel.Poll(l.Fd, 0); err != nil || !readable {
		return
	}
	if int(l.nhelpers.Add(1)) >= max(l.Receivers, 1) {
		l.nhelpers.Add(-1)
		return
	}
	var buf []byte
	release := func() {}
	if l.Journal != nil {
		hj, ok := l.Journal.(HelperJournal)
		if ok {
			buf, release, ok = hj.HelperBuffer()
		}
		if !ok {
			l.nhelpers.Add(-1)
			return
		}
	}
	l.helpers.Add(1)
	go func() {
		defer l.helpers.Done()
		defer l.nhelpers.Add(-1)
		defer release()
		if err := l.receive(true, buf); err != nil && err != errIdle && err != ErrStopped {
			l.Log.WithError(err).Warn("helper receiver stopped")
		}
	}()
}

// Answer computes and sends the answer to p. Run calls it for every
// notification it receives; a new agent calls it for the notifications a
// dead one received and never answered (the id check inside makes a stale
// one harmless).
func (l *Loop) Answer(p *Pending) { l.answerWith(p, new(scratch)) }

// scratch is what a receiver reuses for every notification it answers, so
// that an answer allocates nothing: no part of it outlives the answer.
type scratch struct {
	p    Pending
	resp notifResp
	mem  vmWriter
	req  Request
	buf  [scratchSize]byte
}

// scratchSize is Request.Buffer's room: a struct sysinfo, or the CPU mask
// of a kernel built for up to 8192 CPUs.
const scratchSize = 1024

func (l *Loop) answerWith(p *Pending, sc *scratch) {
	if l.Gate == nil {
		l.Gate = new(sync.RWMutex)
	}
	l.Gate.RLock()
	defer l.Gate.RUnlock()

	start := time.Now()
	var o Outcome
	resp := l.answer(p, &o, sc)
	r := &sc.resp
	*r = notifResp{ID: p.ID}
	switch {
	case resp.Continue:
		r.Flags = flagContinue
	case resp.Errno != 0:
		r.Error = -int32(resp.Errno)
	default:
		r.Val = resp.Val
	}
	err := l.Kernel.Send(l.Fd, r)
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

// answer runs the TOCTOU order: compute, check the id is still valid right
// before writing into the thread's memory (vmWriter), write, and only then
// respond. A valid id at that check means the trapped thread was alive, and
// so kept its tid, during the whole computation: its /proc files and cgroups
// were its own. (No check before computing: it would only save the work for
// a caller already gone, and cost every call a syscall.) Every failure short
// of a handler answer, and every write that did not complete, is Continue,
// with its reason in o.
func (l *Loop) answer(n *Pending, o *Outcome, sc *scratch) (resp Response) {
	e, ok := l.Registry.lookup(n.Arch, n.Nr)
	if !ok {
		o.Reason = ReasonUnregistered
		return Continue()
	}
	o.Syscall, o.Arch = e.name, e.abi.Name
	// Per-notification fields cost allocations on every call: only when
	// debug logging would print them (errors add them below).
	debugOn := l.Log.Logger.IsLevelEnabled(logrus.DebugLevel)
	log := l.Log
	if debugOn {
		log = l.noteFields(n, e)
	}
	if n.Tid == 0 {
		// The trapped thread is not visible in our pid namespace.
		log.Debug("caller not visible from the agent's pid namespace: continue")
		o.Reason = ReasonPidNotVisible
		return Continue()
	}
	mem, req := &sc.mem, &sc.req
	*mem = vmWriter{tid: int(n.Tid), fd: l.Fd, id: n.ID, idValid: l.Kernel.IDValid}
	*req = Request{ID: n.ID, Tid: int(n.Tid), ABI: e.abi, Nr: n.Nr, Args: n.Args, Container: l.Container, Mem: mem,
		scratch: sc.buf[:]}
	defer func() {
		if p := recover(); p != nil {
			l.noteFields(n, e).WithField("panic", p).Errorf("handler panicked, answering with the kernel's value\n%s", debug.Stack())
			resp = Continue()
			o.Reason, o.Err = ReasonPanic, fmt.Errorf("panic: %v", p)
		}
	}()
	resp = e.handler.Handle(req)
	if mem.gone != nil {
		// The caller is gone; the kernel will not accept any answer.
		log.WithError(mem.gone).Debug("notification no longer valid")
		o.Reason, o.Err = ReasonGone, mem.gone
		return Continue()
	}
	if mem.failed {
		if !resp.Continue && debugOn {
			log.WithField("answer", resp).Debug("write into the caller did not complete: continue, the kernel answers")
		}
		o.Reason, o.Err = ReasonWrite, &writeError{err: mem.err, errno: mem.errno}
		return Continue()
	}
	if resp.Errno != 0 && !validErrno(resp.Errno) {
		l.noteFields(n, e).WithField("errno", resp.Errno).Error("handler returned an impossible errno: continue")
		o.Reason = ReasonBadErrno
		return Continue()
	}
	if resp.Continue {
		o.Reason = ReasonHandler
	}
	if debugOn {
		log.WithField("answer", resp).Debug("answered")
	}
	return resp
}

func (l *Loop) noteFields(n *Pending, e entry) *logrus.Entry {
	return l.Log.WithFields(logrus.Fields{"id": n.ID, "tid": n.Tid, "syscall": e.name, "arch": e.abi.Name})
}

// IDValid reports whether notification id is still waiting for an answer
// from some holder of fd (SECCOMP_IOCTL_NOTIF_ID_VALID: true only for a
// notification that was received and not yet answered).
func IDValid(fd int, id uint64) bool { return kernelIDValid(fd, id) == nil }

// validErrno reports whether errno is one a syscall can return (1..4095).
func validErrno(e syscall.Errno) bool { return e > 0 && e < 4096 }
