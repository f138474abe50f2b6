package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// Views that change underneath a running container: a process that moves
// into a nested cgroup, and `runc update`/`crun update`. The cgroup
// directories are found through the harness (CgroupDir), so the same tests
// run on cgroup v1 here and on v2 in the VM tier.

const (
	// nestedMemLimit is the child cgroup's memory limit and the memory
	// limit `update` sets: half the container's.
	nestedMemLimit = 128 << 20
	// updatedQuota / updatedPeriod: two CPUs' worth.
	updatedQuota  = 200000
	updatedPeriod = 100000
	// updateVisibleWithin is how soon a running container must see an
	// update (the agent re-reads limits at most every 500 ms).
	updateVisibleWithin = time.Second
	// pollInterval spaces the execs that look for an update.
	pollInterval = 50 * time.Millisecond
)

// probeLoop is a container init that runs /probe every 200 ms and
// publishes each complete output atomically at /tmp/probe.out, followed by
// the cgroups it ran in and a sequence number. Every probe run is a child
// of the init, so it runs in whatever cgroup the init is in at that moment.
const probeLoop = `i=0; while :; do i=$((i+1)); /probe >/tmp/probe.tmp; cat /proc/self/cgroup >>/tmp/probe.tmp; ` +
	`echo seq=$i >>/tmp/probe.tmp; mv /tmp/probe.tmp /tmp/probe.out; sleep 0.2; done`

// loopOutput reads the probe loop's latest output through the init's root
// (/proc/<pid>/root/tmp/probe.out) and its sequence number (0: none yet).
func loopOutput(pid int) (string, int) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "root", "tmp", "probe.out"))
	if err != nil {
		return "", 0
	}
	seq, _ := strconv.Atoi(harness.ParseProbe(string(data))["seq"])
	return string(data), seq
}

// waitLoop waits until the probe loop has published output number minSeq
// or later, and returns it.
func waitLoop(t *testing.T, pid, minSeq int) (string, int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, seq := loopOutput(pid)
		if seq >= minSeq {
			return out, seq
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe loop in pid %d did not publish output %d within 10 s (latest %d):\n%s", pid, minSeq, seq, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNestedCgroup: a process that moves into a child cgroup with a
// tighter memory limit (what systemd does inside a container) gets the
// child's memory, while the container's CPU quota, now an ancestor's, still
// caps its CPUs. The child is made and joined from the host side.
func TestNestedCgroup(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	a := startAgent(t)
	b, id := startDetached(t, rt, a, a.Socket, "e2e-nested-", "sh", "-c", probeLoop)
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	pid, err := rt.InitPid(ctx, b, id)
	if err != nil {
		t.Fatal(err)
	}

	out, seq := waitLoop(t, pid, 1)
	before := harness.ParseProbe(out)
	c := checker{t, before}
	c.eq("totalram", memLimit)
	c.eq("affinity_count", wantCPUs)
	c.eq("nprocs_onln", wantCPUs)

	child, err := harness.NestChild(b.CgroupsPath, "nested", nestedMemLimit)
	// Registered after KillDelete, so it runs first: the child goes before
	// the runtime deletes the container (and its cgroup).
	t.Cleanup(func() {
		if child == nil {
			return
		}
		kctx, kcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer kcancel()
		_ = rt.Kill(kctx, b, id, "KILL")
		if err := child.Remove(5 * time.Second); err != nil {
			t.Errorf("removing the child cgroup: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("nesting the container's processes in a child cgroup: %v", err)
	}
	t.Logf("child cgroup (v2=%v): %s", child.V2, strings.Join(child.Dirs, ", "))

	// The loop may be half-way through run seq+1 when the move happened:
	// run seq+2 started after it.
	_, now := loopOutput(pid)
	out, _ = waitLoop(t, pid, max(now, seq)+2)
	t.Logf("probe in the child cgroup:\n%s", out)
	if !strings.Contains(out, ":/nested\n") {
		t.Fatalf("the probe did not run in the child cgroup (its /proc/self/cgroup has no /nested):\n%s", out)
	}
	after := harness.ParseProbe(out)
	c = checker{t, after}
	c.eq("totalram", nestedMemLimit)
	if free := c.int("freeram"); free <= 0 || free > nestedMemLimit {
		t.Errorf("freeram = %d in the child, want 0 < freeram <= %d", free, nestedMemLimit)
	}
	if got := c.int("phys_pages") * c.int("pagesize"); got != nestedMemLimit {
		t.Errorf("musl sysconf phys_pages*pagesize = %d in the child, want %d", got, nestedMemLimit)
	}
	// The child has no quota of its own: the container's 50000/100000
	// (its parent's) must still give one CPU.
	c.eq("affinity_count", wantCPUs)
	c.eq("nprocs_onln", wantCPUs)
	if t.Failed() {
		t.Logf("agent log:\n%s", a.Logs())
	}
}

// pollProbe execs /probe in container id until ok accepts its output or
// updateVisibleWithin has passed since since; only execs started within
// that window count. It returns the accepted output and when the exec that
// saw it started (relative to since), or fails the test with the last
// output.
func pollProbe(t *testing.T, rt harness.Runtime, b *harness.Bundle, id string, since time.Time, what string,
	ok func(harness.Probe) bool) time.Duration {
	t.Helper()
	var last string
	for n := 0; ; n++ {
		started := time.Now()
		if started.Sub(since) > updateVisibleWithin {
			t.Fatalf("%s: not seen within %v after the update (%d execs); last probe:\n%s", what, updateVisibleWithin, n, last)
		}
		ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
		stdout, stderr, err := rt.Exec(ctx, b, id, "/probe")
		cancel()
		if err != nil {
			t.Fatalf("%s exec /probe: %v\n%s", rt, err, stderr)
		}
		last = stdout
		if ok(harness.ParseProbe(stdout)) {
			t.Logf("%s: seen by exec #%d, started %v after the update", what, n+1, started.Sub(since).Round(time.Millisecond))
			return started.Sub(since)
		}
		time.Sleep(pollInterval)
	}
}

// intIs returns a predicate: key == want.
func intIs(key string, want int64) func(harness.Probe) bool {
	return func(p harness.Probe) bool {
		v, err := p.Int(key)
		return err == nil && v == want
	}
}

// TestLiveUpdate: `update` on a running container (memory 256 -> 128 MiB;
// CPU quota 0.5 -> 2 CPUs) is seen by the next call within a second.
func TestLiveUpdate(t *testing.T) {
	hostCPUs, err := harness.HostOnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			testenv.Require(t, hostCPUs >= 2, fmt.Sprintf("needs at least 2 CPUs to see a quota raise, host has %d", hostCPUs))
			a := startAgent(t)
			b, id := startDetached(t, rt, a, a.Socket, "e2e-update-", "sleep", "1000")
			ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
			defer cancel()
			stdout, stderr, err := rt.Exec(ctx, b, id, "/probe")
			if err != nil {
				t.Fatalf("exec /probe: %v\n%s%s", err, stderr, agentLog(a))
			}
			c := checker{t, harness.ParseProbe(stdout)}
			c.eq("totalram", memLimit)
			c.eq("affinity_count", wantCPUs)

			if err := rt.Update(ctx, b, id, "--memory", strconv.Itoa(nestedMemLimit)); err != nil {
				t.Fatal(err)
			}
			pollProbe(t, rt, b, id, time.Now(), "memory 256 -> 128 MiB", intIs("totalram", nestedMemLimit))

			// ceil(200000/100000) = 2 CPUs, never more than the host has.
			want := min(int64(hostCPUs), updatedQuota/updatedPeriod)
			if err := rt.Update(ctx, b, id, "--cpu-quota", strconv.Itoa(updatedQuota), "--cpu-period", strconv.Itoa(updatedPeriod)); err != nil {
				t.Fatal(err)
			}
			pollProbe(t, rt, b, id, time.Now(), fmt.Sprintf("cpu quota %d/%d -> %d/%d", cpuQuota, cpuPeriod, updatedQuota, updatedPeriod),
				func(p harness.Probe) bool { return intIs("affinity_count", want)(p) && intIs("nprocs_onln", want)(p) })
			if t.Failed() {
				t.Logf("agent log:\n%s", a.Logs())
			}
		})
	}
}
