package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

const esrch = 3

// i386Runnable reports whether this kernel executes i386 programs
// (CONFIG_IA32_EMULATION, and not disabled with ia32_emulation=0): it runs
// the rootfs's static /affinity32 on the host.
func i386Runnable(t *testing.T) (bool, string) {
	t.Helper()
	err := exec.Command(filepath.Join(rootfsDir, "affinity32"), "1").Run()
	if errors.Is(err, syscall.ENOEXEC) {
		return false, "exec of a static i386 program: " + err.Error()
	}
	if err != nil {
		t.Fatalf("running %s/affinity32 on the host: %v", rootfsDir, err)
	}
	return true, ""
}

// TestAffinityPids: sched_getaffinity with pid = the caller's own tid, its
// tgid, another thread of its process and its parent all give the
// container's view, and a pid of another container (its host pid, which
// names nothing in this container's pid namespace) gives ESRCH, for x86_64
// and i386 callers, runc and crun. The same programs without the agent
// give the kernel's answers (the host's CPUs, ESRCH), measured in the same
// run. On kernels before 6.11 (the VM tier's 6.1) the agent translates
// these pids through /proc NSpid lines.
func TestAffinityPids(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			hostCPUs, err := harness.HostOnlineCPUs()
			if err != nil {
				t.Fatal(err)
			}
			if hostCPUs < 2 {
				t.Fatalf("the host has %d CPU: the container's 1-CPU view cannot be told from the host's", hostCPUs)
			}
			a := startAgent(t)
			ob, oid := startDetached(t, rt, a, a.Socket, "e2e-other-", "sleep", "1000")
			ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
			defer cancel()
			other, err := rt.InitPid(ctx, ob, oid)
			if err != nil {
				t.Fatal(err)
			}
			arg := strconv.Itoa(other)
			cmds := map[string]string{"amd64": "/affinity " + arg, "i386": "/affinity32 " + arg}
			script := harness.SectionedCommand(cmds["amd64"], cmds["i386"])
			run := func(listener string) map[string]string {
				b := limitedBundle(t, script, listener)
				stdout, stderr, err := rt.Run(ctx, b, "e2e-pids-"+harness.UniqueID())
				if err != nil {
					t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s%s", rt, err, stdout, stderr, agentLog(a))
				}
				t.Logf("%s (listener %q):\n%s", rt, listener, stdout)
				return harness.SplitSections(stdout)
			}
			kernel, agent := run(""), run(a.Socket)
			i386ok, why := i386Runnable(t)
			for _, abi := range []string{"amd64", "i386"} {
				t.Run(abi, func(t *testing.T) {
					if abi == "i386" {
						testenv.SkipWithoutKernelFeature(t, i386ok, "IA32_EMULATION", why)
					}
					k := checker{t, harness.ParseProbe(kernel[cmds[abi]])}
					c := checker{t, harness.ParseProbe(agent[cmds[abi]])}
					for _, p := range []checker{k, c} {
						if p.int("tid_pid") != p.int("tgid_pid") || p.int("thread_pid") == p.int("tid_pid") || p.int("parent_pid") <= 0 {
							t.Fatalf("implausible pids from %s: tid %d tgid %d thread %d parent %d", cmds[abi],
								p.int("tid_pid"), p.int("tgid_pid"), p.int("thread_pid"), p.int("parent_pid"))
						}
					}
					for _, cs := range []string{"self", "tid", "tgid", "thread", "parent"} {
						k.eq(cs+"_errno", 0)
						k.eq(cs+"_count", int64(hostCPUs))
						c.eq(cs+"_errno", 0)
						c.eq(cs+"_ret", k.int(cs+"_ret"))
						c.eq(cs+"_count", wantCPUs)
					}
					k.eq("other_ret", -1)
					k.eq("other_errno", esrch)
					c.eq("other_ret", -1)
					c.eq("other_errno", esrch)
				})
			}
		})
	}
}

// TestUptimeTimeNamespace: a process of the container unshares a time
// namespace with a boottime offset (/timens, test/probe/timens.c); its
// child's sysinfo uptime must differ from the container's by the offset,
// exactly as the kernel's own clocks in the same processes differ, while
// the unsharing process itself keeps the container's uptime; a process
// whose own namespace's offset the kernel shows nowhere gets the kernel's
// answer. Without the agent, the same program shows the kernel's answers.
func TestUptimeTimeNamespace(t *testing.T) {
	const offset = 100000 // seconds
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			_, err := os.Readlink("/proc/self/ns/time")
			testenv.SkipWithoutKernelFeature(t, err == nil, "TIME_NS", fmt.Sprint(err))
			a := startAgent(t)
			ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
			defer cancel()
			run := func(listener string) (checker, time.Duration) {
				b, err := harness.NewBundle(t.TempDir(), rootfsDir, harness.BundleOptions{
					Args:         []string{"/timens", strconv.Itoa(offset)},
					MemoryLimit:  memLimit,
					CPUQuota:     cpuQuota,
					CPUPeriod:    cpuPeriod,
					ListenerPath: listener,
					ExtraCaps:    []string{"CAP_SYS_ADMIN", "CAP_SYS_TIME"},
				})
				if err != nil {
					t.Fatal(err)
				}
				started := time.Now()
				stdout, stderr, err := rt.Run(ctx, b, "e2e-timens-"+harness.UniqueID())
				elapsed := time.Since(started)
				if err != nil {
					t.Fatalf("%s /timens: %v\nstdout:\n%s\nstderr:\n%s%s", rt, err, stdout, stderr, agentLog(a))
				}
				t.Logf("%s /timens (listener %q):\n%s", rt, listener, stdout)
				c := checker{t, harness.ParseProbe(stdout)}
				c.eq("done", 1)
				for _, g := range []string{"before", "after", "child", "nested", "fresh"} {
					c.eq(g+"_sysinfo_errno", 0)
				}
				return c, elapsed
			}
			// seconds of a boottime_ns value, rounded up like do_sysinfo.
			clock := func(c checker, g string) int64 {
				ns := c.int(g + "_boottime_ns")
				return int64(math.Ceil(float64(ns) / 1e9))
			}
			near := func(what string, got, want int64) {
				t.Helper()
				if d := got - want; d < -1 || d > 1 {
					t.Errorf("%s = %d, want %d ± 1 s", what, got, want)
				}
			}
			k, _ := run("")
			// The kernel: sysinfo's uptime is each process's own clock.
			for _, g := range []string{"before", "after", "child", "nested", "fresh"} {
				near("without the agent, "+g+"_uptime", k.int(g+"_uptime"), clock(k, g))
			}
			near("without the agent, child_uptime − before_uptime", k.int("child_uptime")-k.int("before_uptime"), offset)

			c, elapsed := run(a.Socket)
			before := c.int("before_uptime")
			if limit := int64(elapsed/time.Second) + 2; before > limit {
				t.Errorf("before_uptime = %d s, want the container's (≤ %d s)", before, limit)
			}
			near("after_uptime (the unsharing process's own clock is the container's)", c.int("after_uptime"), before)
			// The offset, as the kernel's clocks in the same processes show it.
			kernelDelta := clock(c, "child") - clock(c, "before")
			near("child_uptime − before_uptime", c.int("child_uptime")-before, kernelDelta)
			near("child_uptime − before_uptime", c.int("child_uptime")-before, offset)
			// After an unshare(CLONE_NEWTIME) a task's own namespace's
			// offset shows in no timens_offsets. The grandchild's first
			// call comes then: the agent cannot know the offset and lets
			// the kernel answer, which is the clock.
			near("fresh_uptime (the kernel's answer)", c.int("fresh_uptime"), clock(c, "fresh"))
			// The child keeps its namespace through its own unshare, so
			// the offset the agent learned from its earlier call still
			// holds (kept for deltaTTL, handlers/sysinfo/timens.go): the
			// container's uptime with the offset, as before.
			near("nested_uptime (the same thread, the offset it had)", c.int("nested_uptime"), c.int("child_uptime"))
		})
	}
}

// TestCgroupPathReuse: a container ends and another starts at once in the
// same cgroup path with a different memory limit (a systemd unit restarted
// with a new MemoryMax=, a pod sandbox recreated). The second container's
// sysinfo must show its own limit, which the test reads from the kernel's
// cgroup file in the same run, although the first one's was cached by the
// agent moments before (limits are cached by cgroup identity, not path).
func TestCgroupPathReuse(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			a := startAgent(t)
			ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
			defer cancel()
			path := harness.CgroupParent + "/reuse-" + harness.UniqueID()
			// The first container runs /probe and ends (its runtime removes
			// the cgroup); the second is made at once in the same path and
			// runs sleep, so the test can read the kernel's limit from its
			// cgroup and exec /probe into it.
			var last time.Time
			run := func(limit int64, detached bool) (*harness.Bundle, string, harness.Probe) {
				args := []string{"/probe"}
				if detached {
					args = []string{"sleep", "1000"}
				}
				b, err := harness.NewBundle(t.TempDir(), rootfsDir, harness.BundleOptions{
					Args: args, MemoryLimit: limit, CPUQuota: cpuQuota, CPUPeriod: cpuPeriod,
					ListenerPath: a.Socket, CgroupsPath: path,
				})
				if err != nil {
					t.Fatal(err)
				}
				id := "e2e-reuse-" + harness.UniqueID()
				if detached {
					if err := rt.StartDetached(ctx, b, id); err != nil {
						t.Fatalf("%s run -d: %v%s", rt, err, agentLog(a))
					}
					t.Cleanup(func() {
						if err := rt.KillDelete(b, id); err != nil {
							t.Errorf("kill/delete: %v", err)
						}
					})
					return b, id, nil
				}
				stdout, stderr, err := rt.Run(ctx, b, id)
				last = time.Now()
				if err != nil {
					t.Fatalf("%s /probe: %v\nstdout:\n%s\nstderr:\n%s%s", rt, err, stdout, stderr, agentLog(a))
				}
				if left := b.LeftoverCgroups(); len(left) != 0 {
					t.Fatalf("%s left its cgroup behind (%v): the next container would not get a new one", rt, left)
				}
				return b, id, harness.ParseProbe(stdout)
			}
			_, _, p := run(memLimit, false)
			c := checker{t, p}
			if got := c.uint("totalram") * c.uint("mem_unit"); got != memLimit {
				t.Fatalf("first container: totalram %d, want %d", got, memLimit)
			}
			const second = memLimit / 2
			b, id, _ := run(second, true)
			stdout, stderr, err := rt.Exec(ctx, b, id, "/probe")
			since := time.Since(last)
			if err != nil {
				t.Fatalf("%s exec /probe: %v\n%s\n%s%s", rt, err, stdout, stderr, agentLog(a))
			}
			kernel, err := harness.CgroupMemoryLimit(path)
			if err != nil {
				t.Fatal(err)
			}
			if kernel != second {
				t.Fatalf("the kernel's limit for %s is %d, want %d", path, kernel, second)
			}
			c = checker{t, harness.ParseProbe(stdout)}
			if got := c.uint("totalram") * c.uint("mem_unit"); got != uint64(kernel) {
				t.Errorf("second container in the same cgroup path: totalram %d, want the kernel's %d (the first container's %d was served)", got, kernel, memLimit)
			}
			t.Logf("second container's sysinfo %v after the first's (the agent caches limits for 500 ms)", since.Round(time.Millisecond))
		})
	}
}
