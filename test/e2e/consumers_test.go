package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// The consumer matrix: real programs, unmodified, in one limited runc
// container (256 MiB, quota 50000/100000 on this 2-CPU host), without the
// agent, with it, and with it paired with LXCFS (through seccompagent-runtime,
// only seccompagent.io/enable=true). Each row asserts what the program must
// see and the test rewrites test/consumers.md with what they did see.

// Host programs the matrix runs, with the Debian package that provides each.
const (
	hostNproc   = "/usr/bin/nproc"
	hostPython  = "/usr/bin/python3"
	hostNode    = "/usr/bin/node"
	hostJava    = harness.HostJava
	pkgNproc    = "coreutils"
	pkgPython   = "python3"
	pkgNode     = "nodejs"
	pkgJava     = "openjdk-17-jre-headless"
	muslBin     = harness.ConsumerMuslBin
	glibcProbe  = harness.ConsumerGlibcProbe
	goOld       = harness.ConsumerGo124
	goNew       = harness.ConsumerGo126
	javaClasses = harness.ConsumerJava
)

// Commands, one output section each (no single quotes: SectionedCommand
// strips them from the section names).
const (
	cmdNproc       = "nproc"
	cmdFree        = "free"
	cmdUptime      = "uptime"
	cmdMuslNproc   = muslBin + "nproc"
	cmdMuslFree    = muslBin + "free"
	cmdMuslUptime  = muslBin + "uptime"
	cmdMuslTop     = muslBin + "top -b -n 1 | " + muslBin + "head -n 2"
	cmdCPUInfo     = "grep -c ^processor /proc/cpuinfo"
	cmdProcStat    = `grep -c "^cpu[0-9]" /proc/stat`
	cmdMuslProbe   = "/probe"
	cmdGlibcProbe  = glibcProbe
	cmdCoreNproc   = hostNproc
	cmdPython      = hostPython + " -I " + harness.ConsumerPython
	cmdGoOld       = goOld
	cmdGoNew       = goNew
	cmdNode        = hostNode + " " + harness.ConsumerNode
	cmdJava        = hostJava + " -cp " + javaClasses + " Probe"
	cmdJavaNoCtr   = hostJava + " -XX:-UseContainerSupport -cp " + javaClasses + " Probe"
	javaStartLimit = 2 * time.Minute
)

// consumerSetup is the consumer rootfs, built once per test binary.
type consumerSetup struct {
	rootfs  string
	mounts  []specs.Mount
	err     error // the rootfs itself
	muslErr error // musl busybox (cold build: apt-get source + ~40 s)
	goErr   error
	javaErr error
	glibc   error
}

var (
	consumersOnce sync.Once
	consumerBuild consumerSetup
)

// buildConsumerRootfs builds the consumer rootfs (harness.BuildConsumerRootfs)
// once, or takes the prebuilt one $SECCOMPAGENT_E2E_CONSUMER_ROOTFS names
// (the VM tier), and the mounts of the host's programs.
func buildConsumerRootfs() consumerSetup {
	consumersOnce.Do(func() {
		c, ok := harness.PrebuiltConsumerRootfs()
		if !ok {
			c = harness.BuildConsumerRootfs(filepath.Join(workDir, "consumers-rootfs"), filepath.Join(workDir, "go-consumers"))
		}
		consumerBuild = consumerSetup{rootfs: c.Dir, err: c.Err, muslErr: c.Musl, goErr: c.Go, javaErr: c.Java, glibc: c.Glibc}
		if c.Err == nil {
			consumerBuild.mounts, consumerBuild.err = harness.HostProgramMounts(c.Dir)
		}
	})
	return consumerBuild
}

// consumerEnv is what the checks compare against.
type consumerEnv struct {
	hostCPUs int64
	memTotal int64 // host MemTotal, bytes
	// host uptime around the run without the agent.
	upBefore, upAfter time.Duration
	// time from starting the with-agent container to its end.
	elapsedWith time.Duration
	// cgroupV2: the memory controller is on the unified hierarchy.
	cgroupV2 bool
	kernel   string // uname -r
}

// reading is one value a program printed: a number to check and the text
// to show in the table.
type reading struct {
	v    int64
	show string
	// used is busybox free's "used" column in KiB (free rows only).
	used int64
}

// consumerRow is one line of the matrix.
type consumerRow struct {
	program string // table: program
	asks    string // table: what it asks
	expect  string // table: expected
	cmd     string // the command (section) that prints it
	// need is a host path the program needs ("" for what the test builds)
	// and the Debian package that provides it.
	need, pkg string
	// built is the error of building the program, if the test builds it.
	// A build that fails is a test failure, except for musl busybox
	// (optional: its cold build needs apt and the network), which is a
	// skip outside CI.
	built    func(consumerSetup) error
	optional bool
	read     func(out string) (reading, error)
	check    func(e consumerEnv, withAgent bool, v int64) error
	// lxcfs checks the agent + LXCFS column (nil: the same as with the
	// agent alone, for programs that only ask syscalls); expectLXCFS
	// says what it expects there when that differs.
	lxcfs       func(e consumerEnv, rd reading) error
	expectLXCFS string
}

// Reading helpers -------------------------------------------------------

func keyReading(key string, show func(int64) string) func(string) (reading, error) {
	return func(out string) (reading, error) {
		p := harness.ParseProbe(out)
		n, err := p.Int(key)
		if err != nil {
			return reading{}, fmt.Errorf("%w in %q", err, harness.Trim(out, 300))
		}
		return reading{v: n, show: show(n)}, nil
	}
}

// pagesReading multiplies a probe's page count by its pagesize.
func pagesReading(key string) func(string) (reading, error) {
	return func(out string) (reading, error) {
		p := harness.ParseProbe(out)
		n, err := p.Int(key)
		if err != nil {
			return reading{}, err
		}
		pg, err := p.Int("pagesize")
		if err != nil {
			return reading{}, err
		}
		return reading{v: n * pg, show: fmt.Sprintf("%d pages = %s", n, fmtBytes(n*pg))}, nil
	}
}

func plain(n int64) string { return strconv.FormatInt(n, 10) }

func bytesShow(n int64) string { return fmtBytes(n) }

func nprocReading(out string) (reading, error) {
	n, err := harness.ParseNproc(out)
	return reading{v: int64(n), show: strconv.Itoa(n)}, err
}

func freeReading(out string) (reading, error) {
	f, err := harness.ParseFree(out)
	return reading{int64(f.Total) * 1024, fmt.Sprintf("total %d KiB, used %d", f.Total, f.Used), int64(f.Used)}, err
}

// uptimeShowRE picks the "up ..." part of uptime's output for the table.
var uptimeShowRE = regexp.MustCompile(`\bup\s+(.*?),\s+(?:\d+ users?,\s+)?load`)

func uptimeReading(out string) (reading, error) {
	d, err := harness.ParseUptime(out)
	if err != nil {
		return reading{}, err
	}
	show := strings.TrimSpace(out)
	if m := uptimeShowRE.FindStringSubmatch(out); m != nil {
		show = "up " + strings.Join(strings.Fields(m[1]), " ")
	}
	return reading{v: int64(d), show: show}, nil
}

// topMemRE matches busybox top's first line: "Mem: 123K used, 456K free, ...".
var topMemRE = regexp.MustCompile(`Mem:\s+(\d+)K used,\s+(\d+)K free`)

func topReading(out string) (reading, error) {
	m := topMemRE.FindStringSubmatch(out)
	if m == nil {
		return reading{}, fmt.Errorf("top: no Mem: line in %q", harness.Trim(out, 300))
	}
	used, _ := strconv.ParseInt(m[1], 10, 64)
	free, _ := strconv.ParseInt(m[2], 10, 64)
	return reading{v: (used + free) * 1024, show: fmt.Sprintf("used+free %d KiB", used+free)}, nil
}

// fmtBytes prints n in MiB or GiB with one decimal.
func fmtBytes(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// Checks -----------------------------------------------------------------

// cpusByAgent: host CPUs without the agent, ceil(quota/period) with it.
func cpusByAgent(e consumerEnv, with bool, v int64) error {
	want := e.hostCPUs
	if with {
		want = wantCPUs
	}
	if v != want {
		return fmt.Errorf("got %d CPUs, want %d", v, want)
	}
	return nil
}

// cpusUnchanged: the host's CPUs either way (the program reads a file).
func cpusUnchanged(e consumerEnv, _ bool, v int64) error {
	if v != e.hostCPUs {
		return fmt.Errorf("got %d CPUs, want the host's %d", v, e.hostCPUs)
	}
	return nil
}

// cpusFixed: the same count either way (the program applies the quota itself).
func cpusFixed(want int64) func(consumerEnv, bool, int64) error {
	return func(_ consumerEnv, _ bool, v int64) error {
		if v != want {
			return fmt.Errorf("got %d, want %d", v, want)
		}
		return nil
	}
}

// memByAgent: host MemTotal without the agent, the 256 MiB limit with it.
func memByAgent(e consumerEnv, with bool, v int64) error {
	want := e.memTotal
	if with {
		want = memLimit
	}
	if v != want {
		return fmt.Errorf("got %d bytes, want %d", v, want)
	}
	return nil
}

// memUnchanged: host MemTotal either way (the program reads /proc/meminfo).
func memUnchanged(e consumerEnv, _ bool, v int64) error {
	if v != e.memTotal {
		return fmt.Errorf("got %d bytes, want the host's MemTotal %d", v, e.memTotal)
	}
	return nil
}

// memFixed: exactly the limit either way (the program reads cgroup files).
func memFixed(_ consumerEnv, _ bool, v int64) error {
	if v != memLimit {
		return fmt.Errorf("got %d bytes, want the %d limit", v, memLimit)
	}
	return nil
}

// avphysByAgent: free memory below the host's total without the agent,
// and within the limit with it.
func avphysByAgent(e consumerEnv, with bool, v int64) error {
	limit := e.memTotal
	if with {
		limit = memLimit
	}
	if v <= 0 || v > limit {
		return fmt.Errorf("got %d bytes, want 0 < free <= %d", v, limit)
	}
	if !with && v <= memLimit {
		return fmt.Errorf("got %d bytes of free host memory, want more than the container's %d (is the host that full?)", v, memLimit)
	}
	return nil
}

// uptimeByAgent: the host's uptime without the agent, at most the
// container's lifetime with it (minute resolution for busybox). sysinfo
// rounds uptime up to a whole second (do_sysinfo), which may be the next
// minute: the bounds above are rounded up alike.
func uptimeByAgent(e consumerEnv, with bool, v int64) error {
	d := time.Duration(v)
	ceil := func(x time.Duration) time.Duration { return (x + time.Second - 1).Truncate(time.Second) }
	if with {
		if d > ceil(e.elapsedWith) {
			return fmt.Errorf("uptime %v, want at most the container's %v", d, e.elapsedWith)
		}
		return nil
	}
	if d < e.upBefore.Truncate(time.Minute)-time.Minute || d > ceil(e.upAfter) {
		return fmt.Errorf("uptime %v, want the host's %v..%v", d, e.upBefore, e.upAfter)
	}
	return nil
}

// heapChecks: the JVM's maxMemory. With its container support it sizes the
// heap from memory.limit_in_bytes either way; without it, from
// sysconf(_SC_PHYS_PAGES) (glibc: sysinfo), so the agent's answer decides.
func heapFromLimit(_ consumerEnv, _ bool, v int64) error {
	if v <= 0 || v > memLimit/2 {
		return fmt.Errorf("maxMemory %s, want a heap sized from the 256 MiB limit (at most half of it)", fmtBytes(v))
	}
	return nil
}

func heapByAgent(e consumerEnv, with bool, v int64) error {
	if with {
		return heapFromLimit(e, with, v)
	}
	if v <= memLimit {
		return fmt.Errorf("maxMemory %s, want a heap sized from the host's %s", fmtBytes(v), fmtBytes(e.memTotal))
	}
	return nil
}

// With LXCFS: files turn to the container's numbers too.

// lxcfsCPUs: the quota's CPU count (LXCFS --enable-cfs lists CPU 0 only).
func lxcfsCPUs(e consumerEnv, rd reading) error { return cpusByAgent(e, true, rd.v) }

// lxcfsMem: the limit (LXCFS's /proc/meminfo MemTotal).
func lxcfsMem(e consumerEnv, rd reading) error { return memByAgent(e, true, rd.v) }

// lxcfsFree: busybox free's total is the limit and its "used" (total −
// free − buff/cache, the cache now from LXCFS's meminfo) lies within it.
func lxcfsFree(e consumerEnv, rd reading) error {
	if err := memByAgent(e, true, rd.v); err != nil {
		return err
	}
	if rd.used < 0 || rd.used > rd.v/1024 {
		return fmt.Errorf("used %d KiB, want within [0, %d]", rd.used, rd.v/1024)
	}
	return nil
}

// The matrix -------------------------------------------------------------

func consumerRows(e consumerEnv) []consumerRow {
	muslBuilt := func(s consumerSetup) error { return s.muslErr }
	goBuilt := func(s consumerSetup) error { return s.goErr }
	javaBuilt := func(s consumerSetup) error { return s.javaErr }
	glibcBuilt := func(s consumerSetup) error { return s.glibc }
	cpuAgent := fmt.Sprintf("with: %d (ceil(%d/%d)); without: host's %d", wantCPUs, cpuQuota, cpuPeriod, e.hostCPUs)
	memAgent := fmt.Sprintf("with: 256.0 MiB (the limit); without: host's %s", fmtBytes(e.memTotal))
	unchangedCPUs := fmt.Sprintf("unchanged: host's %d either way", e.hostCPUs)
	unchangedMem := fmt.Sprintf("unchanged: host's %s either way", fmtBytes(e.memTotal))
	upAgent := "with: the container's (since its init started); without: the host's"
	goNewWithout := min(e.hostCPUs, max(2, int64(wantCPUs)))
	lxFree := "total 256.0 MiB and used within it (busybox subtracts LXCFS's buff/cache)"
	lxOnlineCPUs := fmt.Sprintf("%d (LXCFS --enable-cfs: /sys/devices/system/cpu/online is \"0\")", wantCPUs)
	// LXCFS (5.0) cuts /proc/stat to the quota's CPUs only where it can
	// split the container's CPU time by CPU: cgroup v1's
	// cpuacct.usage_all (or usage_percpu). cgroup v2 has no per-CPU usage
	// file, so there it lists every CPU of the cpuset, with the host's
	// times. libuv (Node's os.cpus()) counts those lines.
	lxStat := fmt.Sprintf("%d (LXCFS --enable-cfs: one cpuN line)", wantCPUs)
	lxNodeCPUs := fmt.Sprintf("%d (LXCFS --enable-cfs: one cpuN line in /proc/stat, which libuv counts)", wantCPUs)
	lxStatCheck := lxcfsCPUs
	if e.cgroupV2 {
		lxStat = fmt.Sprintf("still %d on cgroup v2: LXCFS sizes /proc/stat by the quota only from v1's per-CPU "+
			"usage (cpuacct.usage_all), which v2 has no file for, so it lists the cpuset's CPUs", e.hostCPUs)
		lxNodeCPUs = fmt.Sprintf("still %d on cgroup v2: libuv counts /proc/stat's cpuN lines, which LXCFS does not cut there (row above)", e.hostCPUs)
		lxStatCheck = func(e consumerEnv, rd reading) error { return cpusUnchanged(e, true, rd.v) }
	}
	return []consumerRow{
		{program: "busybox 1.35 `nproc` (glibc static, Debian busybox-static)", asks: "sched_getaffinity(2)",
			expect: cpuAgent, cmd: cmdNproc, read: nprocReading, check: cpusByAgent},
		{program: "busybox `free` (glibc)", asks: "sysinfo(2) totalram (used/buff/cache: /proc/meminfo)",
			expect: memAgent, cmd: cmdFree, read: freeReading, check: memByAgent, lxcfs: lxcfsFree, expectLXCFS: lxFree},
		{program: "busybox `uptime` (glibc)", asks: "sysinfo(2) uptime",
			expect: upAgent, cmd: cmdUptime, read: uptimeReading, check: uptimeByAgent},
		{program: "busybox 1.35 `nproc` (musl static, Debian source, = Alpine)", asks: "sched_getaffinity(2)",
			expect: cpuAgent, cmd: cmdMuslNproc, built: muslBuilt, optional: true, read: nprocReading, check: cpusByAgent},
		{program: "busybox `free` (musl)", asks: "sysinfo(2) totalram (used/buff/cache: /proc/meminfo)",
			expect: memAgent, cmd: cmdMuslFree, built: muslBuilt, optional: true, read: freeReading, check: memByAgent,
			lxcfs: lxcfsFree, expectLXCFS: lxFree},
		{program: "busybox `uptime` (musl)", asks: "sysinfo(2) uptime",
			expect: upAgent, cmd: cmdMuslUptime, built: muslBuilt, optional: true, read: uptimeReading, check: uptimeByAgent},
		{program: "busybox `top` Mem: line (musl)", asks: "/proc/meminfo, /proc/stat (files only)",
			expect: unchangedMem + ": a syscall supervisor cannot change /proc files",
			cmd:    cmdMuslTop, built: muslBuilt, optional: true, read: topReading, check: memUnchanged,
			lxcfs: lxcfsMem, expectLXCFS: "256.0 MiB (LXCFS's /proc/meminfo)"},
		{program: "`grep -c ^processor /proc/cpuinfo`", asks: "/proc/cpuinfo (a file)",
			expect: unchangedCPUs, cmd: cmdCPUInfo, read: nprocReading, check: cpusUnchanged,
			lxcfs: lxcfsCPUs, expectLXCFS: fmt.Sprintf("%d (LXCFS --enable-cfs: one processor)", wantCPUs)},
		{program: "`grep -c ^cpu[0-9] /proc/stat`", asks: "/proc/stat (a file)",
			expect: unchangedCPUs, cmd: cmdProcStat, read: nprocReading, check: cpusUnchanged,
			lxcfs: lxStatCheck, expectLXCFS: lxStat},
		{program: "musl 1.2.3 `sysconf(_SC_NPROCESSORS_ONLN)` (/probe)", asks: "sched_getaffinity(2)",
			expect: cpuAgent, cmd: cmdMuslProbe, read: keyReading("nprocs_onln", plain), check: cpusByAgent},
		{program: "musl `sysconf(_SC_NPROCESSORS_CONF)`", asks: "sched_getaffinity(2)",
			expect: cpuAgent, cmd: cmdMuslProbe, read: keyReading("nprocs_conf", plain), check: cpusByAgent},
		{program: "musl `get_nprocs()`", asks: "sched_getaffinity(2)",
			expect: cpuAgent, cmd: cmdMuslProbe, read: keyReading("get_nprocs", plain), check: cpusByAgent},
		{program: "musl `sysconf(_SC_PHYS_PAGES)`", asks: "sysinfo(2) totalram",
			expect: memAgent, cmd: cmdMuslProbe, read: pagesReading("phys_pages"), check: memByAgent},
		{program: "musl `sysconf(_SC_AVPHYS_PAGES)`", asks: "sysinfo(2) freeram",
			expect: "with: ≤ 256 MiB (limit − usage); without: host's free memory",
			cmd:    cmdMuslProbe, read: pagesReading("avphys_pages"), check: avphysByAgent},
		{program: "glibc 2.36 `sysconf(_SC_NPROCESSORS_ONLN)` (probe.c, gcc -static)", asks: "/sys/devices/system/cpu/online (a file)",
			expect: unchangedCPUs, cmd: cmdGlibcProbe, built: glibcBuilt, read: keyReading("nprocs_onln", plain), check: cpusUnchanged,
			lxcfs: lxcfsCPUs, expectLXCFS: lxOnlineCPUs},
		{program: "glibc `sysconf(_SC_NPROCESSORS_CONF)`", asks: "/sys/devices/system/cpu (a directory)",
			expect: unchangedCPUs, cmd: cmdGlibcProbe, built: glibcBuilt, read: keyReading("nprocs_conf", plain), check: cpusUnchanged,
			lxcfs:       func(e consumerEnv, rd reading) error { return cpusUnchanged(e, true, rd.v) },
			expectLXCFS: "still the host's: it counts the kernel's cpuN directories, which no bind mount over single files can change"},
		{program: "glibc `get_nprocs()`", asks: "/sys/devices/system/cpu/online (a file)",
			expect: unchangedCPUs, cmd: cmdGlibcProbe, built: glibcBuilt, read: keyReading("get_nprocs", plain), check: cpusUnchanged,
			lxcfs: lxcfsCPUs, expectLXCFS: lxOnlineCPUs},
		{program: "glibc `sysconf(_SC_PHYS_PAGES)`", asks: "sysinfo(2) totalram",
			expect: memAgent, cmd: cmdGlibcProbe, built: glibcBuilt, read: pagesReading("phys_pages"), check: memByAgent},
		{program: "coreutils 9.1 `nproc` (/usr/bin/nproc)", asks: "sched_getaffinity(2) (gnulib)",
			expect: cpuAgent, cmd: cmdCoreNproc, need: hostNproc, pkg: pkgNproc, read: nprocReading, check: cpusByAgent},
		{program: "Python 3 `len(os.sched_getaffinity(0))`", asks: "sched_getaffinity(2)",
			expect: cpuAgent, cmd: cmdPython, need: hostPython, pkg: pkgPython, read: keyReading("sched_getaffinity", plain), check: cpusByAgent},
		{program: "Python 3 `os.cpu_count()`", asks: "glibc sysconf: /sys/devices/system/cpu/online",
			expect: unchangedCPUs, cmd: cmdPython, need: hostPython, pkg: pkgPython, read: keyReading("cpu_count", plain), check: cpusUnchanged,
			lxcfs: lxcfsCPUs, expectLXCFS: lxOnlineCPUs},
		{program: "Python 3 `os.sysconf('SC_PHYS_PAGES')` × page size", asks: "glibc sysconf: sysinfo(2)",
			expect: memAgent, cmd: cmdPython, need: hostPython, pkg: pkgPython, read: keyReading("phys_bytes", bytesShow), check: memByAgent},
		{program: "Go, go.mod `go 1.24`: `runtime.NumCPU()`", asks: "sched_getaffinity(2) at start",
			expect: cpuAgent, cmd: cmdGoOld, built: goBuilt, read: keyReading("numcpu", plain), check: cpusByAgent},
		{program: "Go, go.mod `go 1.24`: `GOMAXPROCS`", asks: "= NumCPU (containermaxprocs=0)",
			expect: cpuAgent, cmd: cmdGoOld, built: goBuilt, read: keyReading("gomaxprocs", plain), check: cpusByAgent},
		{program: "Go, go.mod `go 1.26`: `runtime.NumCPU()`", asks: "sched_getaffinity(2) at start",
			expect: cpuAgent, cmd: cmdGoNew, built: goBuilt, read: keyReading("numcpu", plain), check: cpusByAgent},
		{program: "Go, go.mod `go 1.26`: `GOMAXPROCS`", asks: "min(sched_getaffinity, max(2, ceil(quota))) — quota read from cgroup files",
			expect: fmt.Sprintf("with: %d (the agent's mask is below Go's floor of 2); without: min(%d CPUs, max(2, 1)) = %d",
				wantCPUs, e.hostCPUs, goNewWithout),
			cmd: cmdGoNew, built: goBuilt, read: keyReading("gomaxprocs", plain),
			check: func(e consumerEnv, with bool, v int64) error {
				want := goNewWithout
				if with {
					want = min(int64(wantCPUs), goNewWithout)
				}
				if v != want {
					return fmt.Errorf("GOMAXPROCS %d, want %d", v, want)
				}
				return nil
			}},
		{program: "Node `os.availableParallelism()`", asks: "sched_getaffinity(2) (libuv)",
			expect: cpuAgent, cmd: cmdNode, need: hostNode, pkg: pkgNode, read: keyReading("available_parallelism", plain), check: cpusByAgent},
		{program: "Node `os.cpus().length`", asks: "/proc/stat cpuN lines (a file; libuv)",
			expect: unchangedCPUs, cmd: cmdNode, need: hostNode, pkg: pkgNode, read: keyReading("cpus_length", plain), check: cpusUnchanged,
			lxcfs: lxStatCheck, expectLXCFS: lxNodeCPUs},
		{program: "Node `os.totalmem()`", asks: "/proc/meminfo (a file)",
			expect: unchangedMem, cmd: cmdNode, need: hostNode, pkg: pkgNode, read: keyReading("totalmem", bytesShow), check: memUnchanged,
			lxcfs: lxcfsMem, expectLXCFS: "256.0 MiB (LXCFS's /proc/meminfo)"},
		{program: "Node `process.constrainedMemory()`", asks: "cgroup memory limit file (libuv)",
			expect: "256.0 MiB either way: libuv reads memory.limit_in_bytes / memory.max itself (memory.max from libuv 1.45 on)",
			cmd:    cmdNode, need: hostNode, pkg: pkgNode,
			read: keyReading("constrained_memory", bytesShow),
			check: func(e consumerEnv, with bool, v int64) error {
				// Debian 12's own node 18 uses the system libuv 1.44,
				// which reads only cgroup v1's memory.limit_in_bytes
				// (memory.max from 1.45 on): 0, "no limit", on v2.
				if v == 0 && e.cgroupV2 {
					return nil
				}
				return memFixed(e, with, v)
			}},
		{program: "OpenJDK 17 `Runtime.availableProcessors()`", asks: "min(sched_getaffinity, cgroup cpu quota): container support reads cgroup files",
			expect: fmt.Sprintf("%d either way: the agent's mask agrees with the JVM's own quota reading", wantCPUs),
			cmd:    cmdJava, need: hostJava, pkg: pkgJava, built: javaBuilt,
			read: keyReading("available_processors", plain), check: cpusFixed(wantCPUs)},
		{program: "OpenJDK 17 `Runtime.maxMemory()`", asks: "memory.limit_in_bytes / memory.max (container support)",
			expect: "the same either way: heap sized from the 256 MiB limit",
			cmd:    cmdJava, need: hostJava, pkg: pkgJava, built: javaBuilt,
			read: keyReading("max_memory", bytesShow), check: heapFromLimit},
		{program: "OpenJDK 17 `-XX:-UseContainerSupport` `availableProcessors()`", asks: "sched_getaffinity(2)",
			expect: cpuAgent, cmd: cmdJavaNoCtr, need: hostJava, pkg: pkgJava, built: javaBuilt,
			read: keyReading("available_processors", plain), check: cpusByAgent},
		{program: "OpenJDK 17 `-XX:-UseContainerSupport` `maxMemory()`", asks: "glibc sysconf(_SC_PHYS_PAGES): sysinfo(2)",
			expect: "with: the same heap as with container support (from 256 MiB); without: from the host's RAM",
			cmd:    cmdJavaNoCtr, need: hostJava, pkg: pkgJava, built: javaBuilt,
			read: keyReading("max_memory", bytesShow), check: heapByAgent},
	}
}

// consumerRun is the output of one matrix container.
type consumerRun struct {
	sections       map[string]string
	stdout, stderr string
	elapsed        time.Duration
}

// runMatrix runs every command in one limited runc container (with the
// cgroup filesystem and the host's /usr mounted read-only) in dir. With a
// wrapper (seccompagent-runtime and its flags) the container only asks for
// seccompagent.io/enable=true and the wrapper sets up the rest.
func runMatrix(dir string, s consumerSetup, cmds []string, agent *harness.Agent, wrapper []string) (consumerRun, error) {
	opts := harness.BundleOptions{
		Args:        harness.SectionedCommand(cmds...),
		MemoryLimit: memLimit,
		CPUQuota:    cpuQuota,
		CPUPeriod:   cpuPeriod,
	}
	switch {
	case wrapper != nil:
		opts.Annotations = map[string]string{"seccompagent.io/enable": "true"}
	case agent != nil:
		opts.ListenerPath = agent.Socket
	}
	b, err := harness.NewBundle(dir, s.rootfs, opts)
	if err != nil {
		return consumerRun{}, err
	}
	b.Wrapper = wrapper
	if err := b.AddMounts(append([]specs.Mount{harness.CgroupMount()}, s.mounts...)...); err != nil {
		return consumerRun{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), javaStartLimit)
	defer cancel()
	start := time.Now()
	stdout, stderr, err := harness.Runc.Run(ctx, b, "consumers-"+harness.UniqueID())
	r := consumerRun{stdout: stdout, stderr: stderr, elapsed: time.Since(start), sections: harness.SplitSections(stdout)}
	if err != nil {
		return r, fmt.Errorf("matrix container failed: %w\nstdout:\n%s\nstderr:\n%s%s", err, stdout, stderr, agentLog(agent))
	}
	return r, nil
}

// sectionKey is SplitSections' name for cmd.
func sectionKey(cmd string) string { return strings.ReplaceAll(cmd, "'", "") }

// TestConsumers runs the consumer matrix and rewrites test/consumers.md.
func TestConsumers(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	s := buildConsumerRootfs()
	if s.err != nil {
		t.Fatalf("consumer rootfs did not build: %v", s.err)
	}
	hostCPUs, err := harness.HostOnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	memTotal, err := harness.HostMemTotal()
	if err != nil {
		t.Fatal(err)
	}
	e := consumerEnv{hostCPUs: int64(hostCPUs), memTotal: int64(memTotal)}
	if _, v2, err := harness.CgroupDir("memory", "/"); err == nil {
		e.cgroupV2 = v2
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		e.kernel = unix.ByteSliceToString(uts.Release[:])
	}
	rows := consumerRows(e)

	// Only the programs this host has (and the test could build) run; the
	// others are reported per row below.
	var cmds []string
	seen := map[string]bool{}
	for _, r := range rows {
		if rowMissing(r, s) != "" || seen[r.cmd] {
			continue
		}
		seen[r.cmd] = true
		cmds = append(cmds, r.cmd)
	}

	warmHostPrograms(t)
	a := startAgent(t)
	lx := requireLXCFS(t)
	// The three containers run side by side (each gets half a CPU; the
	// JVMs take long under TCG in the VM tier): the host's uptime is read
	// around all of them.
	sides := []struct {
		agent   *harness.Agent
		wrapper []string
		run     consumerRun
		err     error
	}{{}, {agent: a}, {agent: a, wrapper: wrapperArgs(t, a, lx.Dir)}}
	e.upBefore, _ = harness.HostUptime()
	var wg sync.WaitGroup
	for i := range sides {
		side, dir := &sides[i], t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			side.run, side.err = runMatrix(dir, s, cmds, side.agent, side.wrapper)
		}()
	}
	wg.Wait()
	e.upAfter, _ = harness.HostUptime()
	for _, side := range sides {
		if side.err != nil {
			t.Fatal(side.err)
		}
		if strings.TrimSpace(side.run.stderr) != "" {
			t.Logf("matrix container stderr:\n%s", side.run.stderr)
		}
	}
	without, with, paired := sides[0].run, sides[1].run, sides[2].run
	e.elapsedWith = max(with.elapsed, paired.elapsed)
	t.Logf("matrix containers: without agent %v, with agent %v, with agent and LXCFS %v", without.elapsed.Round(time.Millisecond),
		with.elapsed.Round(time.Millisecond), paired.elapsed.Round(time.Millisecond))
	t.Logf("without agent:\n%s", without.stdout)
	t.Logf("with agent:\n%s", with.stdout)
	t.Logf("with agent and LXCFS:\n%s", paired.stdout)

	results := make([]rowResult, len(rows))
	for i, r := range rows {
		res := &results[i]
		res.row = r
		t.Run(fmt.Sprintf("%02d", i+1), func(t *testing.T) {
			if r.need != "" {
				if _, err := harness.HostProgram(r.need, r.pkg); err != nil {
					res.note = "not installed (" + r.pkg + ")"
					testenv.Require(t, false, fmt.Sprintf("%s: %v", r.program, err))
				}
			}
			if r.built != nil {
				if err := r.built(s); err != nil {
					res.note = "not built"
					if !r.optional {
						t.Fatalf("%s: %v", r.program, err)
					}
					testenv.Require(t, false, fmt.Sprintf("%s: %v", r.program, err))
				}
			}
			res.ran = true
			for _, side := range []struct {
				name  string
				with  bool
				lxcfs bool
				run   consumerRun
				dst   *reading
				ok    *bool
			}{
				{"without agent", false, false, without, &res.without, &res.withoutOK},
				{"with agent", true, false, with, &res.with, &res.withOK},
				{"with agent and LXCFS", true, true, paired, &res.paired, &res.pairedOK},
			} {
				name := side.name
				out, ok := side.run.sections[sectionKey(r.cmd)]
				if !ok {
					t.Errorf("%s %s: no output section for %q", r.program, name, r.cmd)
					continue
				}
				rd, err := r.read(out)
				if err != nil {
					t.Errorf("%s %s: %v", r.program, name, err)
					*side.dst = reading{show: "unreadable: " + harness.Trim(out, 60)}
					continue
				}
				*side.dst = rd
				check := func() error { return r.check(e, side.with, rd.v) }
				expect := r.expect
				if side.lxcfs && r.lxcfs != nil {
					check = func() error { return r.lxcfs(e, rd) }
					expect = r.expectLXCFS
				}
				if err := check(); err != nil {
					t.Errorf("%s %s: %v (expected %s)", r.program, name, err, expect)
					continue
				}
				*side.ok = true
			}
		})
	}

	// The JVM must agree with itself: with the agent, the heap it sizes
	// from sysinfo (no container support) equals the one it sizes from the
	// cgroup files.
	if p1, p2 := harness.ParseProbe(with.sections[sectionKey(cmdJava)]), harness.ParseProbe(with.sections[sectionKey(cmdJavaNoCtr)]); p1["max_memory"] != "" {
		if p1["max_memory"] != p2["max_memory"] {
			t.Errorf("JVM with the agent: maxMemory %s with container support, %s without: the agent's sysinfo and the JVM's cgroup reading disagree",
				p1["max_memory"], p2["max_memory"])
		}
	}

	writeConsumersMD(t, e, results, versions(with.sections))
}

// warmHostPrograms reads the biggest files the host's programs map
// (node's 99 MB binary, the JDK's lib directory with its 130 MB modules
// image) once, outside the containers: a file page is charged to the
// memory cgroup that first reads it, and these alone exceed a matrix
// container's 256 MiB, which would then evict and read them again and
// again (over 9p in the VM tier, at half a CPU).
func warmHostPrograms(t *testing.T) {
	t.Helper()
	var paths []string
	for _, p := range []string{hostPython, hostNode, hostJava} {
		if real, err := harness.HostPath(p); err == nil {
			paths = append(paths, real)
		}
	}
	if java, err := harness.HostPath(hostJava); err == nil {
		paths = append(paths, filepath.Join(filepath.Dir(filepath.Dir(java)), "lib"))
	}
	start := time.Now()
	n, err := harness.WarmFiles(paths...)
	if err != nil {
		t.Logf("warming the host's programs: %v", err)
	}
	t.Logf("read %s of the host's programs in %v", fmtBytes(n), time.Since(start).Round(time.Millisecond))
}

// rowMissing says why a row's program cannot run here ("" if it can).
func rowMissing(r consumerRow, s consumerSetup) string {
	if r.need != "" {
		if _, err := harness.HostPath(r.need); err != nil {
			return "not installed"
		}
	}
	if r.built != nil && r.built(s) != nil {
		return "not built"
	}
	return ""
}

// rowResult is what one row saw.
type rowResult struct {
	row                         consumerRow
	ran                         bool
	note                        string
	without, with, paired       reading
	withoutOK, withOK, pairedOK bool
}

// versions collects the programs' own version lines for the notes.
func versions(sections map[string]string) []string {
	var out []string
	for _, c := range []struct{ cmd, key, what string }{
		{cmdPython, "python_version", "Python"},
		{cmdNode, "node_version", "Node"},
		{cmdJava, "java_version", "Java"},
		{cmdGoNew, "go_version", "Go toolchain"},
	} {
		if v := harness.ParseProbe(sections[sectionKey(c.cmd)])[c.key]; v != "" {
			out = append(out, c.what+" "+v)
		}
	}
	return out
}

// writeConsumersMD renders the document with this run's section (the
// other cgroup version's is a placeholder) and, when
// $SECCOMPAGENT_CONSUMERS_MD names a file (`make consumers`), writes it
// there, keeping the other version's section from the file. Otherwise the
// table is only logged.
func writeConsumersMD(t *testing.T, e consumerEnv, results []rowResult, vers []string) {
	t.Helper()
	mine, other := harness.SectionCgroupV1, harness.SectionCgroupV2
	if e.cgroupV2 {
		mine, other = other, mine
	}
	section := consumersSection(e, results, vers)
	var b strings.Builder
	fmt.Fprintf(&b, "# What real programs see\n\n")
	fmt.Fprintf(&b, "Generated by `make consumers`, one section per cgroup version: `go test ./test/e2e -run TestConsumers` "+
		"on a cgroup v1 host writes the first, the same test in the cgroup v2 VM tier (`SECCOMPAGENT_VM_RUN=^TestConsumers$ go test ./test/vm`) "+
		"the second; each run rewrites only its own. `make test` runs and asserts both and writes nothing.\n\n")
	fmt.Fprintf(&b, "One runc container limited to 256 MiB and %d/%d µs of CPU (half a CPU), run three times: without the agent, "+
		"with it, and with it paired with LXCFS (`lxcfs %s`; the container created through seccompagent-runtime with only "+
		"`seccompagent.io/enable=true`, which also binds LXCFS's files). "+
		"The container mounts its cgroup filesystem read-only at /sys/fs/cgroup "+
		"(as Docker and Kubernetes do) and the host's /usr read-only (in the VM: the host's /usr, shared read-only over 9p), "+
		"so Debian's own python3, node and java run unmodified. "+
		"Each row is asserted by the test; \"expected\" says what and why.\n\n",
		cpuQuota, cpuPeriod, strings.Join(harness.LXCFSFlags, " "))
	for i, key := range []string{harness.SectionCgroupV1, harness.SectionCgroupV2} {
		if i > 0 {
			b.WriteString("\n")
		}
		body := section
		if key == other {
			body = fmt.Sprintf("## %s\n\nNot generated yet: run `make consumers`.\n", key)
		}
		b.WriteString(harness.Section(key, body))
	}
	b.WriteString(consumersNotes)
	doc := b.String()
	path, err := harness.ConsumersMDPath()
	if err != nil {
		t.Error(err)
		return
	}
	if path == "" {
		t.Logf("%s table (set %s to write it into a file):\n%s", mine, harness.EnvConsumersMD, section)
		return
	}
	if err := harness.WriteConsumersDoc(path, doc, other); err != nil {
		t.Error(err)
		return
	}
	t.Logf("wrote the %s section of %s", mine, path)
}

// consumersSection is this run's section: where it ran, the table and the
// programs' versions.
func consumersSection(e consumerEnv, results []rowResult, vers []string) string {
	var b strings.Builder
	if e.cgroupV2 {
		fmt.Fprintf(&b, "## cgroup v2\n\nIn the VM tier (test/vm: qemu, Debian's kernel %s booted with cgroup_no_v1=all), "+
			"%d CPUs and %s of RAM (%s).\n\n", e.kernel, e.hostCPUs, fmtBytes(e.memTotal), runtime.GOARCH)
	} else {
		fmt.Fprintf(&b, "## cgroup v1\n\nOn a %d-CPU host with %s of RAM (%s, kernel %s, cgroup v1 hybrid).\n\n",
			e.hostCPUs, fmtBytes(e.memTotal), runtime.GOARCH, e.kernel)
	}
	fmt.Fprintf(&b, "| program | what it asks | without agent | with agent | with agent + LXCFS | expected |\n")
	fmt.Fprintf(&b, "| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		without, with, paired := cell(r, r.without, r.withoutOK), cell(r, r.with, r.withOK), cell(r, r.paired, r.pairedOK)
		expect := r.row.expect
		if r.row.expectLXCFS != "" {
			expect += "; with LXCFS: " + r.row.expectLXCFS
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", mdEscape(r.row.program), mdEscape(r.row.asks), without, with, paired, mdEscape(expect))
	}
	if len(vers) > 0 {
		fmt.Fprintf(&b, "\nVersions in this run: %s.\n", strings.Join(vers, ", "))
	}
	return b.String()
}

func cell(r rowResult, rd reading, ok bool) string {
	if !r.ran {
		return "— (" + r.note + ")"
	}
	s := mdEscape(rd.show)
	if !ok {
		s += " **(unexpected)**"
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

const consumersNotes = `
Notes:

- **Files are not syscalls.** busybox ` + "`top`" + `, Node's ` + "`os.cpus()`/`os.totalmem()`" + ` and glibc's
  ` + "`sysconf(_SC_NPROCESSORS_*)`/`get_nprocs()`" + ` (hence Python's ` + "`os.cpu_count()`" + `) read /proc or
  /sys; a seccomp supervisor cannot change what they see. Paired with LXCFS (third column) they
  do: its /proc/meminfo, /proc/cpuinfo, /proc/stat and /sys/devices/system/cpu/online agree with
  the agent's sysinfo(2) and sched_getaffinity(2) (docs/lxcfs.md). Two stay the host's: glibc's
  ` + "`_SC_NPROCESSORS_CONF`" + `, which counts the kernel's cpuN directories, and, on cgroup v2 only,
  /proc/stat's cpuN lines (so Node's ` + "`os.cpus()`" + `): LXCFS cuts them to the quota only from cgroup
  v1's per-CPU usage (cpuacct.usage_all), which v2 has no file for. glibc does use
  sysinfo(2) for ` + "`_SC_PHYS_PAGES`" + `, so every glibc program that sizes itself from physical memory
  (Python's ` + "`os.sysconf`" + `, the JVM without container support) sees the limit.
- **Go.** The go line of the main module's go.mod picks the GODEBUG defaults. With ` + "`go 1.24`" + `,
  GOMAXPROCS = NumCPU = the sched_getaffinity count, so the agent takes it from the host's CPUs to
  the quota. From ` + "`go 1.25`" + ` on (containermaxprocs=1), the runtime also reads the cgroup's CPU
  quota itself, but rounds it up to at least 2: on its own it gives min(CPUs, max(2, ceil(quota))),
  i.e. 2 for half a CPU. The agent's mask is the other term of that min, so with the agent a
  half-CPU container gets GOMAXPROCS 1, below Go's own floor. On hosts with many CPUs both lower
  GOMAXPROCS; on this 2-CPU host only the agent changes it. Go ≥ 1.25 also re-reads both about once
  a second (updatemaxprocs), so every Go program keeps asking the agent.
- **The JVM** (OpenJDK 17, container support on by default) reads the cgroup files itself:
  availableProcessors() = min(sched_getaffinity count, ceil(quota)) and the heap is sized from
  memory.limit_in_bytes / memory.max. With the agent its syscall view (sched_getaffinity, and
  sysinfo behind glibc's _SC_PHYS_PAGES, shown with -XX:-UseContainerSupport) agrees with its
  cgroup view: the same CPU count and the same heap.
- busybox ` + "`free`" + ` takes total/free/shared from sysinfo(2) but subtracts the page cache it reads from
  /proc/meminfo: with the agent alone its "used" subtracts the host's cache from the container's
  total and wraps below zero; with LXCFS the cache is the container's and every column is right,
  on cgroup v1 and v2 alike.
- **cgroup v2** (second section): the same programs, unmodified (the VM's containers run the host's
  /usr, shared read-only), give the same answers, except /proc/stat with LXCFS (above). The JVM,
  Go ≥ 1.25 and libuv read memory.max and cpu.max there instead of the v1 files, and the agent
  reads the same files. "host" in that section is the VM.
`
