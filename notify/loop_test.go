package notify

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// fakeKernel replays notifications and records responses, so the loop's
// decisions can be checked without a filter.
type fakeKernel struct {
	queue   []notif
	invalid map[uint64]bool
	sent    []notifResp
}

func (f *fakeKernel) seam() Kernel {
	return Kernel{
		Recv: func(fd int, n *notif) error {
			if len(f.queue) == 0 {
				return unix.ENOENT
			}
			*n, f.queue = f.queue[0], f.queue[1:]
			return nil
		},
		IDValid: func(fd int, id uint64) error {
			if f.invalid[id] {
				return unix.ENOENT
			}
			return nil
		},
		Send: func(fd int, r *notifResp) error { f.sent = append(f.sent, *r); return nil },
		// The loop ends when the queue is drained, as when the last
		// task of a container exits.
		HungUp: func(int) bool { return len(f.queue) == 0 },
	}
}

func TestLoopDecisions(t *testing.T) {
	reg := newRegistry(ABIs) // x32 included whatever this kernel runs
	self := uint32(os.Getpid())
	mustRegister := func(name string, h Handler) {
		if err := reg.Register(name, h); err != nil {
			t.Fatal(err)
		}
	}
	mustRegister("sysinfo", HandlerFunc(func(*Request) Response { panic("boom") }))
	mustRegister("sched_getaffinity", HandlerFunc(func(req *Request) Response {
		if req.ABI.Name == "i386" {
			return Fail(syscall.Errno(5000)) // impossible errno
		}
		// Like the real handlers: the answer is written into the caller
		// (here this process), and a failed write means Continue.
		var mask [32]byte
		if req.Mem.Write(uint64(uintptr(unsafe.Pointer(&mask[0]))), mask[:]) != nil {
			return Continue()
		}
		return Return(32)
	}))
	fk := &fakeKernel{invalid: map[uint64]bool{4: true}}
	nr := func(name string, abi ABI) int32 {
		for k, e := range reg.m {
			if e.name == name && e.abi.Name == abi.Name && k.Audit == abi.Audit {
				return k.Nr
			}
		}
		t.Fatalf("%s/%s not registered", name, abi.Name)
		return 0
	}
	fk.queue = []notif{
		{ID: 1, Pid: self, Arch: AMD64.Audit, Nr: nr("sysinfo", AMD64)},           // panics -> continue
		{ID: 2, Pid: self, Arch: AMD64.Audit, Nr: nr("sched_getaffinity", AMD64)}, // answered
		{ID: 3, Pid: self, Arch: AMD64.Audit, Nr: 0},                              // read(2): not ours -> continue
		{ID: 4, Pid: self, Arch: AMD64.Audit, Nr: nr("sched_getaffinity", AMD64)}, // id no longer valid -> continue
		{ID: 5, Pid: 0, Arch: AMD64.Audit, Nr: nr("sched_getaffinity", AMD64)},    // caller invisible -> continue
		{ID: 6, Pid: self, Arch: I386.Audit, Nr: nr("sched_getaffinity", I386)},   // impossible errno -> continue
		{ID: 7, Pid: self, Arch: X32.Audit, Nr: nr("sched_getaffinity", X32)},     // x32 dispatch
		{ID: 8, Pid: self, Arch: 0xdead, Nr: nr("sched_getaffinity", AMD64)},      // unknown arch -> continue
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	var seen []Outcome
	l := &Loop{Fd: -1, Container: &Container{ID: "c"}, Registry: reg, Kernel: fk.seam(), Log: logrus.NewEntry(log),
		Observe: func(o Outcome) { seen = append(seen, o) }}
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
	// What the observer was told, in order (ids 1..8).
	wantSeen := []struct{ syscall, arch, reason, resp string }{
		{"sysinfo", "x86_64", ReasonPanic, "continue"},
		{"sched_getaffinity", "x86_64", "", "return 32"},
		{"", "", ReasonUnregistered, "continue"},
		{"sched_getaffinity", "x86_64", ReasonGone, "continue"},
		{"sched_getaffinity", "x86_64", ReasonPidNotVisible, "continue"},
		{"sched_getaffinity", "i386", ReasonBadErrno, "continue"},
		{"sched_getaffinity", "x32", "", "return 32"},
		{"", "", ReasonUnregistered, "continue"},
	}
	if len(seen) != len(wantSeen) {
		t.Fatalf("observer called %d times, want %d", len(seen), len(wantSeen))
	}
	for i, w := range wantSeen {
		o := seen[i]
		if o.Syscall != w.syscall || o.Arch != w.arch || o.Reason != w.reason || o.Response.String() != w.resp || o.Duration <= 0 {
			t.Errorf("id %d: observed %s/%s %q %s in %v; want %s/%s %q %s", i+1,
				o.Syscall, o.Arch, o.Reason, o.Response, o.Duration, w.syscall, w.arch, w.reason, w.resp)
		}
	}
	want := map[uint64]notifResp{
		1: {ID: 1, Flags: flagContinue},
		2: {ID: 2, Val: 32},
		3: {ID: 3, Flags: flagContinue},
		4: {ID: 4, Flags: flagContinue},
		5: {ID: 5, Flags: flagContinue},
		6: {ID: 6, Flags: flagContinue},
		7: {ID: 7, Val: 32},
		8: {ID: 8, Flags: flagContinue},
	}
	if len(fk.sent) != len(want) {
		t.Fatalf("%d responses, want %d: %+v", len(fk.sent), len(want), fk.sent)
	}
	for _, r := range fk.sent {
		if r != want[r.ID] {
			t.Errorf("id %d: response %+v, want %+v", r.ID, r, want[r.ID])
		}
	}
}

func TestLoopStopsOnUnexpectedError(t *testing.T) {
	calls := 0
	k := Kernel{
		Recv:   func(int, *notif) error { calls++; return unix.EBADF },
		HungUp: func(int) bool { return false },
	}
	l := &Loop{Fd: -1, Registry: NewRegistry(), Kernel: k, Log: logrus.NewEntry(logrus.New())}
	if err := l.Run(); err == nil || calls != 1 {
		t.Fatalf("Run() = %v after %d receives; want an error at once, no spinning", err, calls)
	}
}

// A write that does not complete makes the loop answer Continue whatever the
// handler says, and the id is checked again right before writing.
func TestLoopWriteFailureIsContinue(t *testing.T) {
	reg := NewRegistry()
	self := uint32(os.Getpid())
	var buf [8]byte
	fk := &fakeKernel{invalid: map[uint64]bool{}}
	if err := reg.Register("sysinfo", HandlerFunc(func(req *Request) Response {
		switch req.ID {
		case 1: // unmapped destination: the kernel must answer
			if err := req.Mem.Write(0, []byte{1}); err == nil || errors.Is(err, syscall.EFAULT) {
				t.Errorf("Write(NULL) = %v, want an error that is not EFAULT", err)
			}
			return Fail(syscall.EFAULT)
		case 2: // the caller goes away after the first check
			fk.invalid[2] = true
			if err := req.Mem.Write(uint64(uintptr(unsafe.Pointer(&buf[0]))), []byte{7}); !errors.Is(err, ErrKernelAnswers) {
				t.Errorf("Write after the id became invalid = %v, want ErrKernelAnswers", err)
			}
			return Return(0)
		default: // a plain write into this process
			if err := req.Mem.Write(uint64(uintptr(unsafe.Pointer(&buf[1]))), []byte{9}); err != nil {
				t.Errorf("Write: %v", err)
			}
			return Return(0)
		}
	})); err != nil {
		t.Fatal(err)
	}
	var nr int32
	for k, e := range reg.m {
		if e.abi.Name == AMD64.Name && k.Audit == AMD64.Audit {
			nr = k.Nr
		}
	}
	fk.queue = []notif{{ID: 1, Pid: self, Arch: AMD64.Audit, Nr: nr}, {ID: 2, Pid: self, Arch: AMD64.Audit, Nr: nr},
		{ID: 3, Pid: self, Arch: AMD64.Audit, Nr: nr}}
	log := logrus.New()
	log.SetOutput(io.Discard)
	l := &Loop{Fd: -1, Registry: reg, Kernel: fk.seam(), Log: logrus.NewEntry(log)}
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
	want := []notifResp{{ID: 1, Flags: flagContinue}, {ID: 2, Flags: flagContinue}, {ID: 3}}
	if len(fk.sent) != len(want) {
		t.Fatalf("responses %+v, want %+v", fk.sent, want)
	}
	for i := range want {
		if fk.sent[i] != want[i] {
			t.Errorf("response %d: %+v, want %+v", i, fk.sent[i], want[i])
		}
	}
	if buf[0] != 0 || buf[1] != 9 {
		t.Errorf("buffer %v: want nothing written after the id became invalid, 9 at [1]", buf[:2])
	}
}

// On a kernel without the x32 ABI the registry has no x32 entries, so an x32
// notification is answered with Continue (the kernel's ENOSYS).
func TestRunnableABIs(t *testing.T) {
	names := func(abis []ABI) (s []string) {
		for _, a := range abis {
			s = append(s, a.Name)
		}
		return s
	}
	if got := names(runnableABIs(func() bool { return true })); len(got) != 3 {
		t.Errorf("with x32: %v, want x86_64 i386 x32", got)
	}
	without := runnableABIs(func() bool { return false })
	if got := names(without); len(got) != 2 || got[0] != "x86_64" || got[1] != "i386" {
		t.Errorf("without x32: %v, want x86_64 i386", got)
	}
	reg := newRegistry(without)
	if err := reg.Register("sysinfo", HandlerFunc(func(*Request) Response { return Return(0) })); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.lookup(X32.Audit, 99|0x40000000); ok {
		t.Error("x32 sysinfo registered on a kernel without x32")
	}
	if _, ok := reg.lookup(AMD64.Audit, 99); !ok {
		t.Error("x86_64 sysinfo not registered")
	}
	fk := &fakeKernel{queue: []notif{{ID: 1, Pid: uint32(os.Getpid()), Arch: X32.Audit, Nr: 99 | 0x40000000}}}
	log := logrus.New()
	log.SetOutput(io.Discard)
	l := &Loop{Fd: -1, Registry: reg, Kernel: fk.seam(), Log: logrus.NewEntry(log)}
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
	if len(fk.sent) != 1 || fk.sent[0] != (notifResp{ID: 1, Flags: flagContinue}) {
		t.Errorf("x32 sysinfo without x32: %+v, want continue", fk.sent)
	}
}

// orphanedKernel is a listener whose container has ended: poll reports
// EPOLLHUP at once; RECV returns ENOENT where the kernel wakes it on
// orphaning, and on Linux 6.6-6.10 never returns (until release, for the
// test's own cleanup).
type orphanedKernel struct {
	wakes   bool
	recvs   chan struct{}
	release chan struct{}
}

func (o *orphanedKernel) prims() Kernel {
	return Kernel{
		Recv: func(int, *notif) error {
			o.recvs <- struct{}{}
			if o.wakes {
				return unix.ENOENT
			}
			<-o.release
			return unix.EBADF
		},
		WaitReadable: func(int) (bool, error) { return true, nil },
		HungUp:       func(int) bool { return true },
	}
}

func runWithin(l *Loop, d time.Duration) (done bool, err error) {
	c := make(chan error, 1)
	go func() { c <- l.Run() }()
	select {
	case err := <-c:
		return true, err
	case <-time.After(d):
		return false, nil
	}
}

// The decision of Features.KernelFor against fake kernels: on 6.6-6.10
// (sync wake-up accepted, an orphaned filter does not wake RECV) the loop
// must poll, and then it ends with its container; blocking in RECV there
// would hang, which the fake reproduces.
func TestFeaturesKernelForOrphanedFilter(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	syncAccepted := func() bool { return true }
	for _, tc := range []struct {
		name      string
		f         Features
		wakes     bool
		wantBlock bool
	}{
		{"6.6-6.10: poll before RECV", Features{SyncWakeUp: true, OrphanWakesRecv: false}, false, false},
		{"6.11+: block in RECV", Features{SyncWakeUp: true, OrphanWakesRecv: true}, true, true},
		{"before 6.6: poll", Features{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &orphanedKernel{wakes: tc.wakes, recvs: make(chan struct{}, 10), release: make(chan struct{})}
			defer close(o.release)
			enable := syncAccepted
			if !tc.f.SyncWakeUp {
				enable = func() bool { return false }
			}
			k, block := tc.f.kernelWith(o.prims(), enable)
			if block != tc.wantBlock {
				t.Fatalf("blocks in RECV: %v, want %v", block, tc.wantBlock)
			}
			l := &Loop{Fd: -1, Registry: NewRegistry(), Kernel: k, Log: logrus.NewEntry(log)}
			done, err := runWithin(l, 5*time.Second)
			if !done || err != nil {
				t.Fatalf("loop did not end with its container (done %v, err %v)", done, err)
			}
		})
	}
	t.Run("the fake 6.6-6.10 kernel hangs a loop that blocks in RECV", func(t *testing.T) {
		o := &orphanedKernel{recvs: make(chan struct{}, 10), release: make(chan struct{})}
		k := o.prims()
		k.WaitReadable = nil
		l := &Loop{Fd: -1, Registry: NewRegistry(), Kernel: k, Log: logrus.NewEntry(log)}
		c := make(chan error, 1)
		go func() { c <- l.Run() }()
		<-o.recvs
		select {
		case <-c:
			t.Fatal("the loop ended although RECV never returned")
		case <-time.After(50 * time.Millisecond):
		}
		close(o.release)
		<-c
	})
}

func TestParseProbe(t *testing.T) {
	for _, tc := range []struct {
		out         string
		sync, wakes bool
		ok          bool
	}{
		{"woken sync=1\n", true, true, true},
		{"blocked sync=1\n", true, false, true},
		{"blocked sync=0\n", false, false, true},
		{"", false, false, false},
		{"woken\n", false, false, false},
		{"maybe sync=1", false, false, false},
	} {
		sync, wakes, err := parseProbe(tc.out)
		if (err == nil) != tc.ok || sync != tc.sync || wakes != tc.wakes {
			t.Errorf("parseProbe(%q) = %v, %v, %v", tc.out, sync, wakes, err)
		}
	}
}

// TestLoopObserveWrite: a write into the caller that fails is a fail-open
// with reason write and process_vm_writev's errno reachable through
// errors.Is (EFAULT here: address 0 is never mapped); a handler's own
// continue is reported as such.
func TestLoopObserveWrite(t *testing.T) {
	self := uint32(os.Getpid())
	for _, c := range []struct {
		name   string
		h      HandlerFunc
		reason string
		errno  syscall.Errno
	}{
		{"unmapped destination", func(req *Request) Response {
			_ = req.Mem.Write(0, []byte{1})
			return Return(0)
		}, ReasonWrite, syscall.EFAULT},
		{"handler continue", func(*Request) Response { return Continue() }, ReasonHandler, 0},
	} {
		reg := NewRegistry()
		if err := reg.Register("sysinfo", c.h); err != nil {
			t.Fatal(err)
		}
		var nr int32
		for k, e := range reg.m {
			if e.abi.Name == AMD64.Name && k.Audit == AMD64.Audit {
				nr = k.Nr
			}
		}
		fk := &fakeKernel{queue: []notif{{ID: 1, Pid: self, Arch: AMD64.Audit, Nr: nr}}}
		var seen []Outcome
		log := logrus.New()
		log.SetOutput(io.Discard)
		l := &Loop{Fd: -1, Registry: reg, Kernel: fk.seam(), Log: logrus.NewEntry(log),
			Observe: func(o Outcome) { seen = append(seen, o) }}
		if err := l.Run(); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || seen[0].Reason != c.reason || !seen[0].Response.Continue {
			t.Fatalf("%s: observed %+v; want one continue, reason %q", c.name, seen, c.reason)
		}
		if c.errno != 0 && !errors.Is(seen[0].Err, c.errno) {
			t.Errorf("%s: error %v does not match %v", c.name, seen[0].Err, c.errno)
		}
		if c.errno == 0 && seen[0].Err != nil {
			t.Errorf("%s: error %v, want none", c.name, seen[0].Err)
		}
	}
}
