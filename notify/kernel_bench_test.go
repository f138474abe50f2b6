package notify_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/notify"
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
