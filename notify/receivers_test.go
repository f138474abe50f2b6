package notify_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/notify"
	"golang.org/x/sys/unix"
)

// threadsEnv makes the re-executed test binary run threadsChild: a
// "threads" child execs itself once its filter is loaded, so that every
// thread of the new process (all made after the exec) is trapped; threads
// of the first child made before the filter was loaded would not be.
const threadsEnv = "SECCOMPAGENT_NOTIFY_THREADS_CHILD"

const (
	childThreads = 6
	threadCalls  = 20
)

func execThreads() int {
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, childEnv+"=") })
	err := unix.Exec("/proc/self/exe", []string{os.Args[0]}, append(env, threadsEnv+"=1"))
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 22
}

// threadsChild makes childThreads threads call sysinfo threadCalls times
// each, all at once, and prints how many calls failed.
func threadsChild() int {
	var failed atomic.Int32
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := 0; i < childThreads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // each on a thread of its own
			start.Wait()
			var si [sysinfo.NativeSize]byte
			for j := 0; j < threadCalls; j++ {
				if _, _, e := unix.Syscall(unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&si[0])), 0, 0); e != 0 {
					failed.Add(1)
				}
			}
		}()
	}
	start.Done()
	wg.Wait()
	fmt.Printf("calls=%d failed=%d\n", childThreads*threadCalls, failed.Load())
	if failed.Load() != 0 {
		return 1
	}
	return 0
}

// TestKernelReceivers runs a process whose threads all call sysinfo at once
// against a loop with one receiver and with four, in both wake-up modes,
// and without synchronous wake-up also with the listener parked in a
// shared Poller while idle.
// The handler takes a few milliseconds, so calls pile up in the kernel's
// queue: one receiver must answer them strictly one at a time, four must
// overlap (never more than four), every call must succeed, and the loop
// (with its helpers) must end when the program does.
func TestKernelReceivers(t *testing.T) {
	poller, err := notify.NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"sync", "poll", "poller"} {
		for _, receivers := range []int{1, 4} {
			t.Run(mode+"/"+string(rune('0'+receivers)), func(t *testing.T) {
				var inflight, peak, calls atomic.Int32
				reg := notify.NewRegistry()
				if err := reg.Register("sysinfo", notify.HandlerFunc(func(*notify.Request) notify.Response {
					n := inflight.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					calls.Add(1)
					time.Sleep(3 * time.Millisecond)
					inflight.Add(-1)
					return notify.Continue() // the kernel's own answer
				})); err != nil {
					t.Fatal(err)
				}
				c := startChild(t, "threads")
				syncWake := mode == "sync" && notify.EnableSyncWakeUp(c.fd)
				if mode == "sync" && !syncWake {
					t.Skip("kernel has no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux < 6.6); the poll case covers it")
				}
				loop := &notify.Loop{Fd: c.fd, Container: &notify.Container{ID: "test"}, Registry: reg,
					Kernel: notify.KernelFor(syncWake), Log: testLog(), Receivers: receivers}
				if mode == "poller" {
					loop.Poller = poller
				}
				done := make(chan error, 1)
				go func() { done <- loop.Run() }()
				if err := c.cmd.Wait(); err != nil {
					t.Fatalf("threads program: %v (%s)", err, c.stdout.String())
				}
				waitLoop(t, done)
				unix.Close(c.fd)
				if !strings.Contains(c.stdout.String(), "failed=0") {
					t.Fatalf("threads program: %s", c.stdout.String())
				}
				if calls.Load() != childThreads*threadCalls {
					t.Errorf("handler saw %d calls, want %d", calls.Load(), childThreads*threadCalls)
				}
				switch p := peak.Load(); {
				case receivers == 1 && p != 1:
					t.Errorf("one receiver answered %d notifications at once", p)
				case receivers > 1 && (p < 2 || p > int32(receivers)):
					t.Errorf("%d receivers answered at most %d notifications at once; want 2..%d", receivers, p, receivers)
				}
			})
		}
	}
}

// TestKernelStopHandsOver stops a loop (four receivers) while a program's
// threads call, at whatever point it is, and lets a second loop on the same
// listener finish: Stop returns ErrStopped without abandoning a received
// notification, so every call of the program succeeds.
func TestKernelStopHandsOver(t *testing.T) {
	poller, err := notify.NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"sync", "poll", "poller"} {
		t.Run(mode, func(t *testing.T) {
			var calls, twice atomic.Int32
			var seen sync.Map
			reg := notify.NewRegistry()
			if err := reg.Register("sysinfo", notify.HandlerFunc(func(req *notify.Request) notify.Response {
				calls.Add(1)
				if _, dup := seen.LoadOrStore(req.ID, true); dup {
					twice.Add(1)
				}
				time.Sleep(time.Millisecond)
				return notify.Continue()
			})); err != nil {
				t.Fatal(err)
			}
			c := startChild(t, "threads")
			syncWake := mode == "sync" && notify.EnableSyncWakeUp(c.fd)
			if mode == "sync" && !syncWake {
				t.Skip("kernel has no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux < 6.6); the poll cases cover it")
			}
			newLoop := func() *notify.Loop {
				l := &notify.Loop{Fd: c.fd, Container: &notify.Container{ID: "test"}, Registry: reg,
					Kernel: notify.KernelFor(syncWake), Log: testLog(), Receivers: 4}
				if mode == "poller" {
					l.Poller = poller
				}
				return l
			}
			first := newLoop()
			done := make(chan error, 1)
			go func() { done <- first.Run() }()
			for calls.Load() < 10 {
				time.Sleep(time.Millisecond)
			}
			first.Stop()
			select {
			case err := <-done:
				if err != notify.ErrStopped {
					t.Fatalf("stopped loop returned %v, want ErrStopped", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("loop did not stop")
			}
			second := newLoop()
			done2 := make(chan error, 1)
			go func() { done2 <- second.Run() }()
			if err := c.cmd.Wait(); err != nil {
				t.Fatalf("threads program: %v (%s)", err, c.stdout.String())
			}
			waitLoop(t, done2)
			unix.Close(c.fd)
			// Every call reached a handler once; a call can reach one more
			// time: the child is a Go program, whose runtime preempts its
			// threads with SIGURG, and a signal while the agent holds a
			// notification withdraws it and the kernel restarts the call
			// with a new id. The same id twice would be a real fault.
			if !strings.Contains(c.stdout.String(), "failed=0") || calls.Load() < childThreads*threadCalls || twice.Load() != 0 {
				t.Fatalf("threads program: %s; handler saw %d calls (%d ids twice), want %d, each id once", c.stdout.String(), calls.Load(), twice.Load(), childThreads*threadCalls)
			}
		})
	}
}

// countingRegistry answers sysinfo with the kernel's own call (Continue),
// counting the calls.
func countingRegistry(t *testing.T, calls *atomic.Int32) *notify.Registry {
	t.Helper()
	reg := notify.NewRegistry()
	if err := reg.Register("sysinfo", notify.HandlerFunc(func(*notify.Request) notify.Response {
		calls.Add(1)
		return notify.Continue()
	})); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestKernelPollerParks: a listener whose calls come further apart than
// hotFor is parked in the Poller between them; every call still reaches
// the handler (and Later after each answer), a hang-up of a parked
// listener ends the loop, so does Stop, and no fd or goroutine is left
// behind; the same when no fd is left to park with.
func TestKernelPollerParks(t *testing.T) {
	poller, err := notify.NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ end, fds string }{
		{"hang-up", "fds"}, {"stop", "fds"}, {"hang-up", "no-fds"}, {"stop", "no-fds"},
	} {
		end := tc.end
		t.Run(tc.fds+"/"+end, func(t *testing.T) {
			var parks atomic.Int32
			if tc.fds == "no-fds" {
				// Out of fds: the loop cannot park and waits on a
				// thread of its own; nothing else changes.
				defer notify.SetDupFd(func(int) (int, error) { return -1, unix.EMFILE })()
			} else {
				defer notify.SetDupFd(func(fd int) (int, error) {
					d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
					if err == nil {
						parks.Add(1)
					}
					return d, err
				})()
			}
			fdsBefore, goroutinesBefore := openFds(t), runtime.NumGoroutine()
			var calls, answered, later atomic.Int32
			reg := countingRegistry(t, &calls)
			c := startChild(t, "sparse")
			loop := &notify.Loop{Fd: c.fd, Container: &notify.Container{ID: "test"}, Registry: reg,
				Kernel: notify.KernelFor(false), Log: testLog(), Poller: poller}
			// Every notification is answered (the child's Go runtime
			// also calls sched_getaffinity now and then: unregistered
			// here, answered CONTINUE), and Later runs after each.
			loop.Observe = func(notify.Outcome) { answered.Add(1) }
			loop.Later = func() {
				if later.Add(1) > answered.Load() {
					t.Errorf("Later ran before its call was answered")
				}
			}
			done := make(chan error, 1)
			go func() { done <- loop.Run() }()
			for calls.Load() < 3 {
				select {
				case err := <-done:
					t.Fatalf("loop ended after %d calls: %v", calls.Load(), err)
				case <-time.After(10 * time.Millisecond):
				}
			}
			// The child waits for stdin now, its listener parked.
			time.Sleep(100 * time.Millisecond)
			if end == "stop" {
				loop.Stop()
				select {
				case err := <-done:
					if err != notify.ErrStopped {
						t.Fatalf("Run after Stop = %v, want ErrStopped", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Stop did not end a loop parked in the Poller")
				}
			}
			c.stdin.Close()
			if err := c.cmd.Wait(); err != nil {
				t.Fatalf("child: %v", err)
			}
			if end == "hang-up" {
				waitLoop(t, done)
			}
			unix.Close(c.fd)
			// Calls 120 ms apart, hot for 50 ms: parked before each.
			if tc.fds == "fds" && parks.Load() < 3 {
				t.Errorf("parked %d times for 3 calls 120 ms apart", parks.Load())
			}
			if later.Load() != answered.Load() || calls.Load() != 3 {
				t.Errorf("Later ran %d times for %d answers; %d sysinfo calls, want 3", later.Load(), answered.Load(), calls.Load())
			}
			checkLeaks(t, fdsBefore, goroutinesBefore)
		})
	}
}

// TestPollErrIsNotHangUp: POLLERR without POLLHUP (what seccomp_notify_poll
// returns when a signal interrupts its lock; here the write end of a pipe
// whose reader is gone) makes the loop look again: not a hang-up, not a
// notification to receive; POLLHUP is a hang-up.
func TestPollErrIsNotHangUp(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[0])
	defer unix.Close(p[1])
	k := notify.KernelFor(false)
	if hup, err := k.WaitReadable(p[1]); hup || err != unix.EINTR {
		t.Errorf("WaitReadable on POLLERR: hup %v, err %v; want false, EINTR (look again)", hup, err)
	}
	if readable, hup, err := k.Poll(p[1], 0); readable || hup || err != nil {
		t.Errorf("Poll on POLLERR: readable %v, hup %v, err %v; want false, false, nil", readable, hup, err)
	}
	if k.HungUp(p[1]) {
		t.Error("HungUp on POLLERR alone")
	}
	poller, err := notify.NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	if hup, woken, err := poller.Wait(p[1], make(chan struct{})); hup || woken || err != nil {
		t.Errorf("Poller.Wait on POLLERR: hup %v, woken %v, err %v; want false, false, nil", hup, woken, err)
	}
	// The read end of a pipe whose writer is gone: POLLHUP.
	var q [2]int
	if err := unix.Pipe2(q[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(q[1])
	defer unix.Close(q[0])
	if hup, err := k.WaitReadable(q[0]); !hup || err != nil {
		t.Errorf("WaitReadable on POLLHUP: hup %v, err %v; want true, nil", hup, err)
	}
	if !k.HungUp(q[0]) {
		t.Error("HungUp on POLLHUP: false")
	}
	if hup, woken, err := poller.Wait(q[0], make(chan struct{})); !hup || !woken || err != nil {
		t.Errorf("Poller.Wait on POLLHUP: hup %v, woken %v, err %v; want true, true, nil", hup, woken, err)
	}
}

// TestKernelLoopThreadsEnd: a loop that holds a thread of its own (its
// primary blocked in poll or RECV) gives it back to the system when it
// ends: sixteen containers that came and went leave no idle threads of
// theirs behind. The handler runs on the receiver's thread and notes it.
func TestKernelLoopThreadsEnd(t *testing.T) {
	const loops = 16
	var mu sync.Mutex
	tids := map[int]bool{}
	reg := notify.NewRegistry()
	if err := reg.Register("sysinfo", notify.HandlerFunc(func(*notify.Request) notify.Response {
		mu.Lock()
		tids[unix.Gettid()] = true
		mu.Unlock()
		return notify.Continue()
	})); err != nil {
		t.Fatal(err)
	}
	alive := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for tid := range tids {
			// The runtime never ends the main thread: a goroutine that
			// exits locked to it leaves it parked (one thread at most).
			if tid == os.Getpid() {
				continue
			}
			if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err == nil {
				n++
			}
		}
		return n
	}
	f, _ := features()
	var children []*startedChild
	var dones []<-chan error
	for range loops {
		c := startChild(t, "idle")
		children = append(children, c)
		k, _ := f.KernelFor(c.fd)
		loop := &notify.Loop{Fd: c.fd, Container: &notify.Container{ID: "test"}, Registry: reg, Kernel: k, Log: testLog()}
		done := make(chan error, 1)
		go func() { done <- loop.Run() }()
		dones = append(dones, done)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(tids)
		mu.Unlock()
		if n == loops {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d receiver threads for %d loops, each holding one and answering one call", n, loops)
		}
		time.Sleep(time.Millisecond)
	}
	for i, c := range children {
		c.stdin.Close()
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
		waitLoop(t, dones[i])
		unix.Close(c.fd)
	}
	deadline = time.Now().Add(5 * time.Second)
	for alive() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d loops' receiver threads still exist after the loops ended", alive(), loops)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
