package notify_test

// Tier 2: the real kernel. The test binary re-executes itself; the child
// installs a SCMP_ACT_NOTIFY filter on one locked thread, passes the listener
// fd back over a socketpair and makes the trapped calls, while this process
// serves them with the real handlers over fake limits.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/notify"
	"github.com/seccompagent/seccompagent/test/testenv"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const childEnv = "SECCOMPAGENT_NOTIFY_TEST_CHILD"

// envI386Program names a prebuilt static i386 build of testdata/compat.c.
const envI386Program = "SECCOMPAGENT_NOTIFY_I386_PROGRAM"

func TestMain(m *testing.M) {
	if os.Getenv(threadsEnv) != "" {
		os.Exit(threadsChild()) // re-executed by a "threads" child, filter inherited
	}
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// result is one trapped call as the child saw it.
type result struct {
	Name  string `json:"name"`
	Ret   int64  `json:"ret"`
	Errno int    `json:"errno"`
	Buf   []byte `json:"buf,omitempty"`
	Extra []byte `json:"extra,omitempty"`
}

// child runs in the re-executed process. fd 3 is the socketpair end.
func child(mode string) int {
	runtime.LockOSThread() // the filter is installed on this thread only
	if mode == "writes" {
		return writesChild() // measures the kernel first, then installs the filter
	}
	if rc := installFilter(); rc != 0 {
		return rc
	}
	var out []result
	call := func(name string, nr uintptr, a0, a1, a2 uintptr) (int64, int) {
		r, _, e := unix.Syscall(nr, a0, a1, a2)
		if e != 0 {
			return -1, int(e)
		}
		return int64(r), 0
	}
	page := os.Getpagesize()
	switch mode {
	case "hang":
		var si [sysinfo.NativeSize]byte
		call("sysinfo", unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&si[0])), 0, 0)
		return 0
	case "idle":
		// One answered call, then wait for the parent's word (stdin).
		var si [sysinfo.NativeSize]byte
		if _, errno := call("sysinfo", unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&si[0])), 0, 0); errno != 0 {
			return 23
		}
		io.ReadAll(os.Stdin)
		return 0
	case "sparse":
		// Calls further apart than a loop stays hot: each finds its
		// listener parked. Then wait for the parent's word (stdin).
		for range 3 {
			time.Sleep(120 * time.Millisecond)
			var si [sysinfo.NativeSize]byte
			if _, errno := call("sysinfo", unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&si[0])), 0, 0); errno != 0 {
				return 23
			}
		}
		io.ReadAll(os.Stdin)
		return 0
	case "calls":
	default:
		if n, ok := strings.CutPrefix(mode, "bench:"); ok {
			return benchChild(n)
		}
		if mode == "threads" {
			return execThreads()
		}
		if path, ok := strings.CutPrefix(mode, "exec:"); ok {
			// The filter survives execve: the program runs trapped.
			err := unix.Exec(path, []string{path}, os.Environ())
			fmt.Fprintln(os.Stderr, "exec:", err)
			return 22
		}
		return 15
	}

	// sysinfo into a normal buffer.
	var si [sysinfo.NativeSize]byte
	ret, errno := call("sysinfo", unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&si[0])), 0, 0)
	out = append(out, result{Name: "sysinfo", Ret: ret, Errno: errno, Buf: si[:]})

	ret, errno = call("sysinfo", unix.SYS_SYSINFO, 0, 0, 0)
	out = append(out, result{Name: "sysinfo_null", Ret: ret, Errno: errno})

	// Two pages: read-only then PROT_NONE-after-writable cases.
	mem, err := unix.Mmap(-1, 0, 3*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 16
	}
	for i := range mem {
		mem[i] = 0xAA
	}
	ro := mem[0:page]
	if err := unix.Mprotect(ro, unix.PROT_READ); err != nil {
		return 17
	}
	ret, errno = call("sysinfo", unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&ro[0])), 0, 0)
	out = append(out, result{Name: "sysinfo_readonly", Ret: ret, Errno: errno, Buf: append([]byte(nil), ro[:sysinfo.NativeSize]...)})
	// Partial writes, stack growth and races: TestKernelWrites.

	aff := func(name string, pid int, length int, p uintptr) {
		buf := make([]byte, 256)
		for i := range buf {
			buf[i] = 0xEE
		}
		if p == 1 {
			p = uintptr(unsafe.Pointer(&buf[0]))
		}
		ret, errno := call(name, unix.SYS_SCHED_GETAFFINITY, uintptr(pid), uintptr(length), p)
		out = append(out, result{Name: name, Ret: ret, Errno: errno, Buf: buf})
	}
	aff("aff_128", 0, 128, 1)
	aff("aff_8", 0, 8, 1)
	aff("aff_4", 0, 4, 1)
	aff("aff_12", 0, 12, 1)
	aff("aff_null", 0, 128, 0)
	aff("aff_self_tid", unix.Gettid(), 128, 1)
	aff("aff_nopid", 0x3fffffff, 128, 1)
	aff("aff_negative", -1, 128, 1)
	aff("aff_init", 1, 128, 1)
	// Narrow this thread's own mask to its highest CPU: the answer must
	// keep that bit and never set a lower one. (Our own
	// sched_getaffinity is trapped now, so use the count taken at start.)
	if hi := runtime.NumCPU() - 1; hi > 0 {
		var one unix.CPUSet
		one.Set(hi)
		if err := unix.SchedSetaffinity(0, &one); err == nil {
			aff("aff_narrowed", 0, 128, 1)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 19
	}
	return 0
}

// installFilter installs the notify filter on the calling (locked) thread
// and sends the listener fd to the parent; it returns a child exit code, 0
// when done.
func installFilter() int {
	filter, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new filter:", err)
		return 10
	}
	// i386 callers (an exec'd -m32 program) go through the same filter.
	// x32 callers too, where the kernel runs them (TestKernelWrites
	// compares an x32 sysinfo with the kernel's own answer).
	for _, arch := range []seccomp.ScmpArch{seccomp.ArchX86, seccomp.ArchX32} {
		if err := filter.AddArch(arch); err != nil {
			fmt.Fprintln(os.Stderr, "add arch:", err)
			return 11
		}
	}
	for _, name := range []string{"sysinfo", "sched_getaffinity"} {
		nr, err := seccomp.GetSyscallFromName(name)
		if err == nil {
			err = filter.AddRule(nr, seccomp.ActNotify)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "add rule:", err)
			return 11
		}
	}
	if err := filter.Load(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 12
	}
	nfd, err := filter.GetNotifFd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "notif fd:", err)
		return 13
	}
	if err := unix.Sendmsg(3, []byte{'x'}, unix.UnixRights(int(nfd)), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "send fd:", err)
		return 14
	}
	unix.Close(int(nfd))
	return 0
}

// fakeLimits is a container with 256 MiB (100 MiB used), 1 CPU by quota,
// 7 tasks, started 5 s ago.
type fakeLimits struct{ start time.Duration }

func (fakeLimits) ThreadCPU(int, int) (limits.CPU, error) {
	return limits.CPU{Count: limits.Value{Value: 1, Limited: true}}, nil
}
func (fakeLimits) MemoryAndPids(int, int) (limits.Memory, limits.Pids, error, error) {
	return limits.Memory{Total: 256 << 20, Usage: 100 << 20, Shmem: 1 << 20, SwapTotal: 64 << 20, SwapUsage: 4 << 20},
		limits.Pids{Current: limits.Value{Value: 7, Limited: true}}, nil, nil
}
func (f fakeLimits) StartTime(int) (time.Duration, error) { return f.start, nil }

type startedChild struct {
	cmd    *exec.Cmd
	fd     int
	stdout *strings.Builder
	stdin  io.WriteCloser
}

func startChild(t testing.TB, mode string) *startedChild {
	t.Helper()
	testenv.Require(t, seccompNotifySupported(), "kernel or libseccomp lacks seccomp user notification (needs Linux >= 5.0, libseccomp >= 2.5)")
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "child-sock")
	defer theirs.Close()
	defer unix.Close(pair[0])
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{theirs}
	out := new(strings.Builder)
	cmd.Stdout = out
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	// Not a timing assertion: a bound for a child that never sends (the
	// "writes" child measures the kernel for a while first).
	_ = unix.SetsockoptTimeval(pair[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 120})
	_, oobn, _, _, err := unix.Recvmsg(pair[0], buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not send its listener fd: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("bad control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("bad rights: %v", err)
	}
	return &startedChild{cmd: cmd, fd: fds[0], stdout: out, stdin: stdin}
}

func seccompNotifySupported() bool {
	api, err := seccomp.GetAPI()
	return err == nil && api >= 5
}

// testLog logs every notification at Debug with -v and
// SECCOMPAGENT_NOTIFY_TEST_DEBUG=1 (thousands of lines for the race tests).
func testLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() && os.Getenv("SECCOMPAGENT_NOTIFY_TEST_DEBUG") == "1" {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l)
}

func boottime(t testing.TB) time.Duration {
	d, err := sysinfo.RealHost.Boottime()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newRegistry(t testing.TB, lim fakeLimits, k affinity.Kernel, extra notify.Handler) *notify.Registry {
	t.Helper()
	reg := notify.NewRegistry()
	var si notify.Handler = &sysinfo.Handler{Limits: lim, Host: sysinfo.RealHost, ProcRoot: "/proc", Log: testLog()}
	if extra != nil {
		si = extra
	}
	if err := reg.Register("sysinfo", si); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register("sched_getaffinity", &affinity.Handler{Limits: lim, Kernel: k, ProcRoot: "/proc", Log: testLog()}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// features are the agent's start-up probes, run once per test binary (a
// failed probe leaves the zero Features: the poll path).
var features = sync.OnceValues(notify.ProbeFeatures)

// runLoop serves c's listener with reg; agentChoice picks the path as the
// agent does (Features.KernelFor: block in RECV with synchronous wake-up
// where the kernel wakes a blocked RECV once the filter is orphaned), false
// forces the poll-then-RECV path.
func runLoop(c *startedChild, reg *notify.Registry, agentChoice bool) <-chan error {
	k := notify.KernelFor(false)
	if agentChoice {
		f, _ := features()
		k, _ = f.KernelFor(c.fd)
	}
	loop := &notify.Loop{Fd: c.fd, Container: &notify.Container{ID: "test", InitPid: c.cmd.Process.Pid},
		Registry: reg, Kernel: k, Log: testLog()}
	done := make(chan error, 1)
	go func() { done <- loop.Run() }()
	return done
}

func waitLoop(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("loop ended with an error: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loop did not end after its last task exited (EPOLLHUP not handled)")
	}
}

func TestKernelHandlers(t *testing.T) {
	// "agent": the path the agent's probes choose (block in RECV with
	// synchronous wake-up where that is safe);
	// "poll": the path older kernels take (poll for EPOLLIN/EPOLLHUP, then RECV).
	for _, mode := range []string{"agent", "poll"} {
		t.Run(mode, func(t *testing.T) { testKernelHandlers(t, mode == "agent") })
	}
}

func testKernelHandlers(t *testing.T, agentChoice bool) {
	k, err := affinity.ProbeKernel("/")
	if err != nil {
		t.Fatal(err)
	}
	lim := fakeLimits{start: boottime(t) - 5*time.Second}
	fdsBefore := openFds(t)
	goroutinesBefore := runtime.NumGoroutine()

	c := startChild(t, "calls")
	done := runLoop(c, newRegistry(t, lim, k, nil), agentChoice)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	waitLoop(t, done)
	unix.Close(c.fd)

	var res []result
	if err := json.Unmarshal([]byte(c.stdout.String()), &res); err != nil {
		t.Fatalf("child output %q: %v", c.stdout.String(), err)
	}
	got := map[string]result{}
	for _, r := range res {
		got[r.Name] = r
	}
	le := func(b []byte, off int) uint64 {
		var v uint64
		for i := 7; i >= 0; i-- {
			v = v<<8 | uint64(b[off+i])
		}
		return v
	}

	t.Run("sysinfo", func(t *testing.T) {
		r := got["sysinfo"]
		if r.Ret != 0 || r.Errno != 0 {
			t.Fatalf("ret %d errno %d", r.Ret, r.Errno)
		}
		if up := le(r.Buf, 0); up < 5 || up > 7 {
			t.Errorf("uptime %d, want 5..7 (container started 5 s before the call)", up)
		}
		for _, f := range []struct {
			name string
			off  int
			want uint64
		}{{"totalram", 32, 256 << 20}, {"freeram", 40, 156 << 20}, {"sharedram", 48, 1 << 20}, {"bufferram", 56, 0},
			{"totalswap", 64, 64 << 20}, {"freeswap", 72, 60 << 20}, {"totalhigh", 88, 0}, {"freehigh", 96, 0}} {
			if v := le(r.Buf, f.off); v != f.want {
				t.Errorf("%s = %d, want %d", f.name, v, f.want)
			}
		}
		if procs := uint16(r.Buf[80]) | uint16(r.Buf[81])<<8; procs != 7 {
			t.Errorf("procs = %d, want 7", procs)
		}
		if unit := uint32(le(r.Buf, 104)); unit != 1 {
			t.Errorf("mem_unit = %d, want 1", unit)
		}
	})
	t.Run("sysinfo_efault", func(t *testing.T) {
		if r := got["sysinfo_null"]; r.Errno != int(unix.EFAULT) {
			t.Errorf("NULL buffer: ret %d errno %d, want EFAULT", r.Ret, r.Errno)
		}
		r := got["sysinfo_readonly"]
		if r.Errno != int(unix.EFAULT) {
			t.Errorf("read-only buffer: ret %d errno %d, want EFAULT", r.Ret, r.Errno)
		}
		for i, b := range r.Buf {
			if b != 0xAA {
				t.Fatalf("read-only buffer was written at byte %d: a forced write (FOLL_FORCE) must not leak through", i)
			}
		}
	})
	t.Run("sched_getaffinity", func(t *testing.T) {
		check := func(name string, wantRet int64, wantErrno syscall.Errno) result {
			t.Helper()
			r := got[name]
			if r.Ret != wantRet || r.Errno != int(wantErrno) {
				t.Errorf("%s: ret %d errno %d, want ret %d errno %d", name, r.Ret, r.Errno, wantRet, wantErrno)
			}
			return r
		}
		count := func(b []byte) (n int) {
			for _, x := range b {
				for ; x != 0; x &= x - 1 {
					n++
				}
			}
			return
		}
		r := check("aff_128", int64(k.MaskSize), 0)
		if n := count(r.Buf[:k.MaskSize]); n != 1 {
			t.Errorf("aff_128: %d CPUs in the mask, want 1 (quota)", n)
		}
		for i := k.MaskSize; i < len(r.Buf); i++ {
			if r.Buf[i] != 0xEE {
				t.Fatalf("aff_128: byte %d past the returned length was written", i)
			}
		}
		check("aff_8", 8, 0)
		check("aff_4", -1, unix.EINVAL)
		check("aff_12", -1, unix.EINVAL)
		check("aff_null", -1, unix.EFAULT)
		check("aff_self_tid", int64(k.MaskSize), 0)
		check("aff_nopid", -1, unix.ESRCH)
		check("aff_negative", -1, unix.ESRCH)
		check("aff_init", int64(k.MaskSize), 0)
		if r, ok := got["aff_narrowed"]; ok {
			hi := runtime.NumCPU() - 1
			if n := count(r.Buf[:k.MaskSize]); n != 1 || r.Buf[hi/8]&(1<<(hi%8)) == 0 {
				t.Errorf("narrowed thread: mask %x, want only CPU %d (never set a bit, never renumber)", r.Buf[:k.MaskSize], hi)
			}
		} else if runtime.NumCPU() > 1 {
			t.Error("narrowed-mask case did not run")
		}
	})

	checkLeaks(t, fdsBefore, goroutinesBefore)
}

// blockingHandler holds the notification until released, so the test can
// kill the caller while it is in flight.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
	inner   notify.Handler
}

func (b *blockingHandler) Handle(req *notify.Request) notify.Response {
	close(b.entered)
	<-b.release
	return b.inner.Handle(req)
}

func TestKernelCallerKilledMidNotification(t *testing.T) {
	k, err := affinity.ProbeKernel("/")
	if err != nil {
		t.Fatal(err)
	}
	lim := fakeLimits{start: boottime(t)}
	fdsBefore := openFds(t)
	goroutinesBefore := runtime.NumGoroutine()

	c := startChild(t, "hang")
	bh := &blockingHandler{entered: make(chan struct{}), release: make(chan struct{}),
		inner: &sysinfo.Handler{Limits: lim, Host: sysinfo.RealHost, ProcRoot: "/proc", Log: testLog()}}
	done := runLoop(c, newRegistry(t, lim, k, bh), true)
	select {
	case <-bh.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the child's sysinfo never reached the handler")
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
	close(bh.release)
	waitLoop(t, done)
	unix.Close(c.fd)
	checkLeaks(t, fdsBefore, goroutinesBefore)
}

func TestReceiveStateRejectsBadPeers(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		fds     int
		want    string
	}{
		{"empty", "", 0, notify.ErrNoData.Error()},
		{"not json", "hello", 1, "decode container state"},
		{"no seccompFd", `{"ociVersion":"1.0.2","fds":["other"],"pid":1,"state":{"ociVersion":"1.0.2","id":"x","status":"creating","pid":1,"bundle":"/b"}}`, 1, "no \"seccompFd\""},
		{"two fds", `{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":1,"state":{"ociVersion":"1.0.2","id":"x","status":"creating","pid":1,"bundle":"/b"}}`, 2, "exactly one fd"},
		{"no fd", `{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":1,"state":{"ociVersion":"1.0.2","id":"x","status":"creating","pid":1,"bundle":"/b"}}`, 0, "exactly one fd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := openFds(t)
			a, b := unixPair(t)
			var files []int
			for i := 0; i < tc.fds; i++ {
				p := make([]int, 2)
				if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
					t.Fatal(err)
				}
				unix.Close(p[1])
				files = append(files, p[0])
			}
			var oob []byte
			if len(files) > 0 {
				oob = unix.UnixRights(files...)
			}
			if tc.payload != "" || oob != nil {
				if _, _, err := a.WriteMsgUnix([]byte(tc.payload), oob, nil); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range files {
				unix.Close(f)
			}
			a.Close()
			_, err := notify.ReceiveState(b, time.Second)
			b.Close()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if after := openFds(t); after != before {
				t.Fatalf("fds leaked: %d open before, %d after", before, after)
			}
		})
	}
}

// TestReceiveStateSilentPeer: a peer that connects and sends nothing gets
// a timeout error, not a crash (Go returns n = -1 with the error).
func TestReceiveStateSilentPeer(t *testing.T) {
	a, b := unixPair(t)
	defer a.Close()
	defer b.Close()
	_, err := notify.ReceiveState(b, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err = %v, want a read timeout", err)
	}
}

func TestReceiveStateAcceptsRuncAndCrun(t *testing.T) {
	// runc 1.1.5 sends compact JSON with ociVersion 1.0.2-dev; crun 1.8.1
	// pretty JSON with 0.2.0. Both carry annotations.
	for _, payload := range []string{
		`{"ociVersion":"1.0.2-dev","fds":["seccompFd"],"pid":4242,"metadata":"","state":{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":4242,"bundle":"/b","annotations":{"seccompagent.io/cpus":"2"}}}`,
		"{\n  \"ociVersion\": \"0.2.0\",\n  \"fds\": [\n    \"seccompFd\"\n  ],\n  \"pid\": 4243,\n  \"state\": {\n    \"ociVersion\": \"0.2.0\",\n    \"id\": \"c2\",\n    \"status\": \"creating\",\n    \"pid\": 4243,\n    \"bundle\": \"/b\",\n    \"annotations\": {\"seccompagent.io/cpus\": \"2\"}\n  }\n}\n",
	} {
		a, b := unixPair(t)
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(p[1])
		if _, _, err := a.WriteMsgUnix([]byte(payload), unix.UnixRights(p[0]), nil); err != nil {
			t.Fatal(err)
		}
		unix.Close(p[0])
		a.Close()
		got, err := notify.ReceiveState(b, time.Second)
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got.State.State.Annotations["seccompagent.io/cpus"] != "2" || got.State.Pid == 0 {
			t.Errorf("state not decoded: %+v", got.State)
		}
		flags, err := unix.FcntlInt(uintptr(got.Fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("received fd is not close-on-exec (flags %d, %v)", flags, err)
		}
		unix.Close(got.Fd)
	}
}

func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(p[0]), conn(p[1])
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

var leakMu sync.Mutex

func checkLeaks(t *testing.T, fds, goroutines int) {
	t.Helper()
	leakMu.Lock()
	defer leakMu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for {
		f, g := openFds(t), runtime.NumGoroutine()
		if f <= fds && g <= goroutines {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("leak: fds %d -> %d, goroutines %d -> %d\n%s", fds, f, goroutines, g, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKernelCompatI386 runs a real i386 program under the filter: compat
// syscall numbers, struct compat_sysinfo and 4-byte longs for the length
// check.
//
// The program is built with gcc -m32 (gcc-multilib: a missing package fails
// under CI) unless $SECCOMPAGENT_NOTIFY_I386_PROGRAM names a prebuilt one (the
// VM tier, which has no gcc, gets it built on the host). A kernel that cannot
// execute i386 binaries (CONFIG_IA32_EMULATION off, or ia32_emulation=false on
// the command line) is a kernel feature the host lacks: the test skips, and
// the VM tier, whose Debian kernel has it, must pass it.
func TestKernelCompatI386(t *testing.T) {
	bin := os.Getenv(envI386Program)
	if bin == "" {
		gcc := testenv.RequireCommand(t, "gcc")
		bin = t.TempDir() + "/compat"
		out, err := exec.Command(gcc, "-m32", "-static", "-O2", "-o", bin, "testdata/compat.c").CombinedOutput()
		testenv.Require(t, err == nil, "cannot build an i386 program (gcc-multilib, from `make deps`): "+strings.TrimSpace(string(out)))
	}
	if err := exec.Command(bin).Run(); err != nil {
		// execve says ENOEXEC ("exec format error") when no binfmt
		// handler takes the file: for a valid static i386 ELF that
		// means the kernel has no ia32 emulation. Any other failure is
		// a real one.
		if !errors.Is(err, syscall.ENOEXEC) {
			t.Fatalf("running the i386 program %s without the filter: %v", bin, err)
		}
		testenv.SkipWithoutKernelFeature(t, false, "IA32_EMULATION", "execve of a static i386 program: "+err.Error())
	}
	k, err := affinity.ProbeKernel("/")
	if err != nil {
		t.Fatal(err)
	}
	lim := fakeLimits{start: boottime(t) - 90*time.Second}
	c := startChild(t, "exec:"+bin)
	done := runLoop(c, newRegistry(t, lim, k, nil), true)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	waitLoop(t, done)
	unix.Close(c.fd)

	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(c.stdout.String()), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 {
			got[f[0]] = f[1:]
		}
	}
	u32 := func(hexs string, off int) uint32 {
		var v uint32
		fmt.Sscanf(hexs[2*off:2*off+8], "%08x", &v)
		// bytes are little-endian
		return v>>24 | (v>>8)&0xff00 | (v<<8)&0xff0000 | v<<24
	}
	si := got["sysinfo"]
	if len(si) != 3 || si[0] != "0" {
		t.Fatalf("sysinfo: %q", si)
	}
	for _, f := range []struct {
		name string
		off  int
		want uint32
	}{{"totalram", 16, 256 << 20}, {"freeram", 20, 156 << 20}, {"sharedram", 24, 1 << 20}, {"bufferram", 28, 0},
		{"totalswap", 32, 64 << 20}, {"freeswap", 36, 60 << 20}, {"mem_unit", 52, 1}, {"_f", 56, 0}, {"_f", 60, 0}} {
		if v := u32(si[2], f.off); v != f.want {
			t.Errorf("compat sysinfo %s = %d, want %d (raw %s)", f.name, v, f.want, si[2])
		}
	}
	if up := u32(si[2], 0); up < 90 || up > 92 {
		t.Errorf("compat uptime %d, want 90..92", up)
	}
	if procs := u32(si[2], 40) & 0xffff; procs != 7 {
		t.Errorf("compat procs %d, want 7", procs)
	}
	if r := got["sysinfo_null"]; len(r) < 2 || r[1] != "14" {
		t.Errorf("sysinfo(NULL): %q, want EFAULT (14)", r)
	}
	if r := got["aff_4"]; len(r) != 3 || r[0] != "4" || !strings.HasSuffix(r[2], "eeeeeeee") {
		t.Errorf("sched_getaffinity(len 4) on i386: %q, want 4 bytes written (compat long is 4 bytes)", r)
	}
	if r := got["aff_6"]; len(r) < 2 || r[1] != "22" {
		t.Errorf("sched_getaffinity(len 6) on i386: %q, want EINVAL (22)", r)
	}
	if r := got["aff_128"]; len(r) != 3 || r[0] != strconv.Itoa(k.MaskSize) {
		t.Errorf("sched_getaffinity(len 128) on i386: %q, want %d", r, k.MaskSize)
	}
}

// TestKernelProbeFeatures runs the agent's start-up probes and checks what
// can be checked independently; TestKernelLoopEndsWithContainer then proves
// that the path they choose releases the loop when the container ends.
func TestKernelProbeFeatures(t *testing.T) {
	testenv.Require(t, seccompNotifySupported(), "kernel or libseccomp lacks seccomp user notification (needs Linux >= 5.0, libseccomp >= 2.5)")
	f, err := features()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	t.Logf("kernel features: %+v", f)
	if f.X32 != notify.KernelRunsX32() {
		t.Errorf("X32 %v, but the x32 getpid says %v", f.X32, notify.KernelRunsX32())
	}
	c := startChild(t, "hang")
	defer func() {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		unix.Close(c.fd)
	}()
	if got := notify.EnableSyncWakeUp(c.fd); got != f.SyncWakeUp {
		t.Errorf("SyncWakeUp %v, but SET_FLAGS on a listener says %v", f.SyncWakeUp, got)
	}
	if f.OrphanWakesRecv && !f.SyncWakeUp {
		t.Logf("a blocked RECV is woken on orphaning although there is no sync wake-up: the loop polls anyway")
	}
}

// TestKernelLoopEndsWithContainer: with the path the agent chooses, the
// loop's goroutine (and the thread it holds in RECV or poll) and the
// listener fd are released when the container's last task exits, with the
// loop idle at that moment (the case 6.6-6.10 get wrong when blocking in
// RECV).
func TestKernelLoopEndsWithContainer(t *testing.T) {
	k, err := affinity.ProbeKernel("/")
	if err != nil {
		t.Fatal(err)
	}
	f, err := features()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	lim := fakeLimits{start: boottime(t)}
	fdsBefore, goroutinesBefore := openFds(t), runtime.NumGoroutine()
	c := startChild(t, "idle")
	kern, blocks := f.KernelFor(c.fd)
	t.Logf("features %+v: loop blocks in RECV: %v", f, blocks)
	loop := &notify.Loop{Fd: c.fd, Container: &notify.Container{ID: "test", InitPid: c.cmd.Process.Pid},
		Registry: newRegistry(t, lim, k, nil), Kernel: kern, Log: testLog()}
	done := make(chan error, 1)
	go func() { done <- loop.Run() }()
	// The child answers one call, then sleeps until told to exit: the
	// loop is idle in RECV (or poll) when the filter loses its user.
	if _, err := c.stdin.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	waitLoop(t, done)
	unix.Close(c.fd)
	checkLeaks(t, fdsBefore, goroutinesBefore)
}
