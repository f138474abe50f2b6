package notify_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/notify"
	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
	"golang.org/x/sys/unix"
)

// benchChild makes n trapped sysinfo calls on its filtered thread and prints
// the mean time per call in nanoseconds.
func benchChild(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return 20
	}
	var si [sysinfo.NativeSize]byte
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, _, e := unix.Syscall(unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&si[0])), 0, 0); e != 0 {
			fmt.Fprintln(os.Stderr, "sysinfo:", e)
			return 21
		}
	}
	fmt.Println(time.Since(start).Nanoseconds() / int64(n))
	return 0
}

// BenchmarkRoundTrip measures a trapped sysinfo(2) answered by the real
// handler through the real kernel, against the native syscall measured in
// the same run. "sync" uses SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP where the
// kernel has it; "poll" forces the pre-6.6 path (poll, then RECV).
func BenchmarkRoundTrip(b *testing.B) {
	k, err := affinity.ProbeKernel("/")
	if err != nil {
		b.Fatal(err)
	}
	var si unix.Sysinfo_t
	const nativeN = 200000
	start := time.Now()
	for i := 0; i < nativeN; i++ {
		unix.Sysinfo(&si)
	}
	native := float64(time.Since(start).Nanoseconds()) / nativeN

	real, err := limits.NewReader("/proc", "/")
	if err != nil {
		b.Fatal(err)
	}
	// "+cgroups" reads the caller's real cgroup files on every call, as the
	// agent does; the others isolate the protocol cost with fixed limits.
	for _, mode := range []string{"sync", "poll", "sync+cgroups"} {
		b.Run(mode, func(b *testing.B) {
			c := startChild(b, "bench:"+strconv.Itoa(max(b.N, 1000)))
			reg := newRegistry(b, fakeLimits{start: boottime(b)}, k, nil)
			if mode == "sync+cgroups" {
				reg = notify.NewRegistry()
				if err := reg.Register("sysinfo", &sysinfo.Handler{Limits: real, Host: sysinfo.RealHost, ProcRoot: "/proc", Log: testLog()}); err != nil {
					b.Fatal(err)
				}
			}
			done := runLoop(c, reg, mode != "poll")
			b.ResetTimer()
			if err := c.cmd.Wait(); err != nil {
				b.Fatalf("child: %v", err)
			}
			b.StopTimer()
			<-done
			unix.Close(c.fd)
			perCall, err := strconv.ParseFloat(strings.TrimSpace(c.stdout.String()), 64)
			if err != nil {
				b.Fatalf("child output %q", c.stdout.String())
			}
			b.ReportMetric(perCall, "trapped-ns/call")
			b.ReportMetric(native, "native-ns/call")
			b.ReportMetric(perCall/native, "x-native")
		})
	}
}

// TestKernelAnswersWithoutAllocating: once a thread's cgroups are resolved,
// the loop (on the wake-up path the agent chooses) answers its sysinfo with
// the real handler and cgroup reader without allocating (every receiver
// reuses its own scratch): no garbage for the collector to chase per call.
// The agent's own callbacks (Observe, Later, Budget) are not part of it. Two children make few and many calls: the process's
// allocations (a child's start, its loop's, its resolution, the runtime's
// own) must not grow with the calls.
func TestKernelAnswersWithoutAllocating(t *testing.T) {
	if raceDetector {
		t.Skip("allocation counts hold for the plain build, not under -race")
	}
	reader, err := limits.NewReader("/proc", "/")
	if err != nil {
		t.Fatal(err)
	}
	reg := notify.NewRegistry()
	if err := reg.Register("sysinfo", &sysinfo.Handler{Limits: reader, Host: sysinfo.RealHost, ProcRoot: "/proc", Log: testLog()}); err != nil {
		t.Fatal(err)
	}
	// The children run in a cgroup of their own with a memory limit, as a
	// container does (a task in the root cgroup, as this test may be in the
	// VM, has no counter files to keep open: each of its calls resolves).
	testenv.RequireRoot(t)
	cg, err := harness.NewPlainCgroup(harness.CgroupParent+"/notify-allocs-"+harness.UniqueID(), 256<<20, 100000, 100000)
	if cg != nil {
		defer harness.RemoveCgroupParent()
		defer cg.Remove()
	}
	if err != nil {
		t.Fatalf("cgroup for the children: %v", err)
	}
	allocs := func(calls int) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := startChild(t, "bench:"+strconv.Itoa(calls))
		// Its first call waits for the loop, which starts after the move.
		for _, procs := range cg.Procs {
			if err := os.WriteFile(procs, []byte(strconv.Itoa(c.cmd.Process.Pid)), 0); err != nil {
				c.cmd.Process.Kill()
				t.Fatalf("move the child into its cgroup: %v", err)
			}
		}
		done := runLoop(c, reg, true)
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
		waitLoop(t, done)
		runtime.ReadMemStats(&after)
		unix.Close(c.fd)
		return after.Mallocs - before.Mallocs
	}
	const few, many = 1000, 11000
	a, b := allocs(few), allocs(many)
	t.Logf("%d allocations for %d calls, %d for %d", a, few, b, many)
	if b > a && b-a > (many-few)/20 {
		t.Errorf("%d more allocations for %d more calls: an answer allocates (%.2f a call)", b-a, many-few, float64(b-a)/(many-few))
	}
}
