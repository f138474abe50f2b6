package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

const (
	memLimit  = 256 << 20 // bytes: 268435456
	cpuQuota  = 50000     // µs per period: half a CPU
	cpuPeriod = 100000
	// wantCPUs is ceil(quota/period) = ceil(0.5).
	wantCPUs = 1

	containerTimeout = 60 * time.Second

	einval = 22
	efault = 14
)

// consumers are the programs every limited container runs, in order.
var consumers = []string{"nproc", "free", "uptime", "/probe"}

// view is what the consumers in one container reported.
type view struct {
	nproc  int
	free   harness.FreeMem
	uptime time.Duration // busybox uptime (minute resolution)
	probe  harness.Probe
	stdout string
	// started is taken just before the runtime was invoked; elapsed is the
	// time from then until the container's output was complete.
	started time.Time
	elapsed time.Duration
}

// limitedBundle writes a bundle limited to 256 MiB and half a CPU.
func limitedBundle(t *testing.T, args []string, listener string) *harness.Bundle {
	t.Helper()
	b, err := harness.NewBundle(t.TempDir(), rootfsDir, harness.BundleOptions{
		Args:         args,
		MemoryLimit:  memLimit,
		CPUQuota:     cpuQuota,
		CPUPeriod:    cpuPeriod,
		ListenerPath: listener,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runConsumers runs the consumers in a limited container with rt and parses
// their output. Any failure is fatal, with the runtime's stderr and (when an
// agent is given) the agent's log.
func runConsumers(t *testing.T, rt harness.Runtime, agent *harness.Agent) view {
	t.Helper()
	listener := ""
	if agent != nil {
		listener = agent.Socket
	}
	b := limitedBundle(t, harness.SectionedCommand(consumers...), listener)
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	v := view{started: time.Now()}
	stdout, stderr, err := rt.Run(ctx, b, "e2e-"+harness.UniqueID())
	v.elapsed = time.Since(v.started)
	v.stdout = stdout
	if err != nil {
		t.Fatalf("%s container failed: %v\nstdout:\n%s\nstderr:\n%s%s", rt, err, stdout, stderr, agentLog(agent))
	}
	sec := harness.SplitSections(stdout)
	for _, c := range consumers {
		if _, ok := sec[c]; !ok {
			t.Fatalf("no output section for %q in:\n%s\nstderr:\n%s", c, stdout, stderr)
		}
	}
	if v.nproc, err = harness.ParseNproc(sec["nproc"]); err != nil {
		t.Fatal(err)
	}
	if v.free, err = harness.ParseFree(sec["free"]); err != nil {
		t.Fatal(err)
	}
	if v.uptime, err = harness.ParseUptime(sec["uptime"]); err != nil {
		t.Fatal(err)
	}
	v.probe = harness.ParseProbe(sec["/probe"])
	t.Logf("%s container output (%v):\n%s", rt, v.elapsed.Round(time.Millisecond), stdout)
	return v
}

// agentLog formats the agent's log for a failure message.
func agentLog(a *harness.Agent) string {
	if a == nil {
		return ""
	}
	return "\nagent log:\n" + a.Logs()
}

// startAgent starts the agent on a socket in a temp dir; it is stopped at
// the end of the test, and its log is printed if the test failed.
func startAgent(t *testing.T) *harness.Agent {
	t.Helper()
	bin := requireAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	a, err := harness.StartAgent(ctx, bin, filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatalf("agent did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("stopping agent: %v", err)
		}
		if t.Failed() {
			t.Logf("agent log (%s):\n%s", a.LogPath, a.Logs())
		}
	})
	return a
}

// checker collects probe values and reports mismatches without stopping.
type checker struct {
	t *testing.T
	p harness.Probe
}

func (c checker) int(key string) int64 {
	c.t.Helper()
	v, err := c.p.Int(key)
	if err != nil {
		c.t.Error(err)
	}
	return v
}

func (c checker) uint(key string) uint64 {
	c.t.Helper()
	v, err := c.p.Uint(key)
	if err != nil {
		c.t.Error(err)
	}
	return v
}

func (c checker) eq(key string, want int64) {
	c.t.Helper()
	if got, err := c.p.Int(key); err != nil {
		c.t.Error(err)
	} else if got != want {
		c.t.Errorf("probe %s = %d, want %d", key, got, want)
	}
}

// checkKernelErrors checks the error paths every answer (real or agent's)
// must give: EINVAL for a 4-byte mask on 64-bit, EFAULT for sysinfo(NULL).
func checkKernelErrors(c checker) {
	c.t.Helper()
	c.eq("sysinfo_ret", 0)
	c.eq("affinity_len4_ret", -1)
	c.eq("affinity_len4_errno", einval)
	c.eq("sysinfo_null_ret", -1)
	c.eq("sysinfo_null_errno", efault)
}

// TestControlWithoutAgent runs the limited container without a listener:
// every consumer must see the host, which proves the harness measures what
// the agent will change (and that the limits alone change nothing).
func TestControlWithoutAgent(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			hostCPUs, err := harness.HostOnlineCPUs()
			if err != nil {
				t.Fatal(err)
			}
			memTotal, err := harness.HostMemTotal()
			if err != nil {
				t.Fatal(err)
			}
			upBefore, _ := harness.HostUptime()
			v := runConsumers(t, rt, nil)
			upAfter, _ := harness.HostUptime()
			c := checker{t, v.probe}

			if v.nproc != hostCPUs {
				t.Errorf("nproc = %d, want the host's %d online CPUs", v.nproc, hostCPUs)
			}
			c.eq("nprocs_onln", int64(hostCPUs))
			c.eq("affinity_count", int64(hostCPUs))
			if got := c.uint("totalram") * c.uint("mem_unit"); got != memTotal {
				t.Errorf("sysinfo totalram*mem_unit = %d, want host MemTotal %d", got, memTotal)
			}
			if pg := uint64(c.int("pagesize")); pg == 0 || uint64(c.int("phys_pages")) != memTotal/pg {
				t.Errorf("musl sysconf phys_pages = %d, want host MemTotal/pagesize = %d", c.int("phys_pages"), memTotal/max(pg, 1))
			}
			if v.free.Total != memTotal/1024 {
				t.Errorf("free total = %d KiB, want host MemTotal %d KiB", v.free.Total, memTotal/1024)
			}
			// Host uptime: the probe's (seconds, rounded up) lies within the
			// host's /proc/uptime before and after the run.
			up := time.Duration(c.int("uptime")) * time.Second
			if up < upBefore-time.Second || up > upAfter+time.Second {
				t.Errorf("probe uptime = %v, want the host's %v..%v", up, upBefore, upAfter)
			}
			if v.uptime < upBefore.Truncate(time.Minute)-time.Minute || v.uptime > upAfter {
				t.Errorf("busybox uptime = %v, want the host's %v..%v (minute resolution)", v.uptime, upBefore, upAfter)
			}
			checkKernelErrors(c)
		})
	}
}

// TestWithAgent runs the same limited container with the agent listening:
// every consumer must see 1 CPU, 256 MiB and the container's own uptime.
func TestWithAgent(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			a := startAgent(t)
			v := runConsumers(t, rt, a)
			c := checker{t, v.probe}

			if v.nproc != wantCPUs {
				t.Errorf("busybox nproc = %d, want %d (quota %d/%d)", v.nproc, wantCPUs, cpuQuota, cpuPeriod)
			}
			c.eq("nprocs_onln", wantCPUs)
			if ret := c.int("affinity_ret"); ret <= 0 || ret%8 != 0 || ret > 128 {
				t.Errorf("sched_getaffinity(0, 128) returned %d, want a whole number of longs in 8..128", ret)
			}
			c.eq("affinity_count", wantCPUs)
			if got := c.int("phys_pages") * c.int("pagesize"); got != memLimit {
				t.Errorf("musl sysconf phys_pages*pagesize = %d, want %d", got, memLimit)
			}
			if got := c.uint("totalram") * c.uint("mem_unit"); got != memLimit {
				t.Errorf("sysinfo totalram*mem_unit = %d, want %d", got, memLimit)
			}
			if free := c.uint("freeram") * c.uint("mem_unit"); free > memLimit {
				t.Errorf("sysinfo freeram*mem_unit = %d, more than the %d limit", free, memLimit)
			}

			f := v.free
			if f.Total != memLimit/1024 {
				t.Errorf("busybox free total = %d KiB, want %d", f.Total, memLimit/1024)
			}
			// busybox free's total/free/shared columns are sysinfo's; its
			// used, buff/cache and available mix in /proc/meminfo, which a
			// syscall supervisor cannot change (inside the container it is
			// the host's unless LXCFS or similar virtualizes it), so only
			// the sysinfo columns are the agent's to get right.
			if f.Free > f.Total {
				t.Errorf("busybox free free = %d KiB > total %d KiB", f.Free, f.Total)
			}
			probeFree := c.uint("freeram") * c.uint("mem_unit") / 1024
			if d := int64(f.Free) - int64(probeFree); d > 16<<10 || d < -16<<10 {
				t.Errorf("busybox free free = %d KiB, probe's sysinfo freeram = %d KiB: the two disagree by more than 16 MiB", f.Free, probeFree)
			}

			// Container uptime: at most the time since we started the
			// runtime (+1 s rounding up, +1 s slack).
			limit := v.elapsed + 2*time.Second
			if up := time.Duration(c.int("uptime")) * time.Second; up > limit {
				t.Errorf("probe uptime = %v, want < %v (time since the container started + 2 s)", up, limit)
			}
			if v.uptime > v.elapsed {
				t.Errorf("busybox uptime = %v, want at most %v since the container started", v.uptime, v.elapsed)
			}
			checkKernelErrors(c)
		})
	}
}

// execSettle is how long the exec tests let the container run before
// exec'ing into it, so that uptime "since the container start" and "since
// the exec" differ clearly.
const execSettle = 3 * time.Second

// runExec starts a limited `sleep 1000` container, waits execSettle, execs
// /probe in it and returns the probe's output, the time since the runtime
// was invoked and the time the exec took.
func runExec(t *testing.T, rt harness.Runtime, agent *harness.Agent) (harness.Probe, time.Duration) {
	t.Helper()
	listener := ""
	if agent != nil {
		listener = agent.Socket
	}
	started := time.Now()
	b, id := startDetached(t, rt, agent, listener, "e2e-exec-", "sleep", "1000")
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	time.Sleep(execSettle)
	stdout, stderr, err := rt.Exec(ctx, b, id, "/probe")
	elapsed := time.Since(started)
	if err != nil {
		o, e := b.DetachedOutput(id)
		t.Fatalf("%s exec /probe: %v\nstdout:\n%s\nstderr:\n%s\ncontainer stdout:\n%s\ncontainer stderr:\n%s%s",
			rt, err, stdout, stderr, o, e, agentLog(agent))
	}
	t.Logf("%s exec /probe:\n%s", rt, stdout)
	if strings.TrimSpace(stderr) != "" {
		t.Logf("exec stderr:\n%s", stderr)
	}
	return harness.ParseProbe(stdout), elapsed
}

// TestExecWithoutAgent is the control for TestExecWithAgent: an exec'd
// process sees the host.
func TestExecWithoutAgent(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			hostCPUs, err := harness.HostOnlineCPUs()
			if err != nil {
				t.Fatal(err)
			}
			memTotal, _ := harness.HostMemTotal()
			p, _ := runExec(t, rt, nil)
			c := checker{t, p}
			c.eq("nprocs_onln", int64(hostCPUs))
			c.eq("affinity_count", int64(hostCPUs))
			if got := c.uint("totalram") * c.uint("mem_unit"); got != memTotal {
				t.Errorf("sysinfo totalram*mem_unit = %d, want host MemTotal %d", got, memTotal)
			}
			checkKernelErrors(c)
		})
	}
}

// TestExecWithAgent execs /probe into a running container with the agent:
// the exec'd process (its own listener connection and fd) sees the same
// limits, and its uptime counts from the container's start, not the exec.
func TestExecWithAgent(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			a := startAgent(t)
			p, elapsed := runExec(t, rt, a)
			c := checker{t, p}
			c.eq("nprocs_onln", wantCPUs)
			c.eq("affinity_count", wantCPUs)
			if got := c.int("phys_pages") * c.int("pagesize"); got != memLimit {
				t.Errorf("musl sysconf phys_pages*pagesize = %d, want %d", got, memLimit)
			}
			if got := c.uint("totalram") * c.uint("mem_unit"); got != memLimit {
				t.Errorf("sysinfo totalram*mem_unit = %d, want %d", got, memLimit)
			}
			up := time.Duration(c.int("uptime")) * time.Second
			if min := execSettle - time.Second; up < min {
				t.Errorf("exec'd probe uptime = %v, want ≥ %v: it must count from the container's start (%v before the exec), not the exec", up, min, execSettle)
			}
			if limit := elapsed + 2*time.Second; up > limit {
				t.Errorf("exec'd probe uptime = %v, want < %v (time since the container started + 2 s)", up, limit)
			}
			checkKernelErrors(c)
		})
	}
}

// startDetached starts a limited container running args with rt (listener
// "" for none) and kills and deletes it when the test ends.
func startDetached(t *testing.T, rt harness.Runtime, agent *harness.Agent, listener, idPrefix string, args ...string) (*harness.Bundle, string) {
	t.Helper()
	b := limitedBundle(t, args, listener)
	id := idPrefix + harness.UniqueID()
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	if err := rt.StartDetached(ctx, b, id); err != nil {
		t.Fatalf("%s run -d: %v%s", rt, err, agentLog(agent))
	}
	t.Cleanup(func() {
		if err := rt.KillDelete(b, id); err != nil {
			t.Errorf("kill/delete: %v", err)
		}
	})
	return b, id
}
