package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// TestSeccompagentExec runs `seccompagent exec` in a plain cgroup (no
// runtime: what a systemd unit with MemoryMax=256M CPUQuota=50% gets): the
// command itself and a child it forks see 1 CPU and 256 MiB through musl's
// sysconf and sysinfo. Without an agent nothing runs, unless
// --on-missing-agent=skip.
func TestSeccompagentExec(t *testing.T) {
	testenv.RequireRoot(t)
	bin := requireAgent(t)
	if rootfsErr != nil {
		t.Fatalf("test rootfs (the musl probe) did not build: %v", rootfsErr)
	}
	probe := filepath.Join(rootfsDir, "probe")
	a := startAgent(t)

	cg, err := harness.NewPlainCgroup(harness.CgroupParent+"/exec-"+harness.UniqueID(), memLimit, cpuQuota, cpuPeriod)
	if cg != nil {
		t.Cleanup(func() {
			if err := cg.Remove(); err != nil {
				t.Errorf("remove cgroup: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("plain cgroup: %v", err)
	}
	// The shell moves itself into the cgroup, then becomes
	// `seccompagent exec`, which becomes the command.
	join := "for f in " + strings.Join(cg.Procs, " ") + `; do echo $$ > "$f" || exit 97; done; exec "$@"`
	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", join, "sh", bin, "exec"}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	for _, tc := range []struct {
		name string
		cmd  []string
	}{
		{"command", []string{probe}},
		{"forked child", []string{"/bin/sh", "-c", probe + " & wait"}},
	} {
		out, stderr, err := run(append([]string{"--socket", a.Socket, "--"}, tc.cmd...)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s%s", tc.name, err, stderr, agentLog(a))
		}
		c := checker{t: t, p: harness.ParseProbe(out)}
		c.eq("nprocs_onln", wantCPUs)
		c.eq("affinity_count", wantCPUs)
		c.eq("sysinfo_ret", 0)
		if got := c.uint("totalram") * c.uint("mem_unit"); got != memLimit {
			t.Errorf("%s: sysinfo totalram %d, want %d", tc.name, got, memLimit)
		}
		if got := c.uint("phys_pages") * c.uint("pagesize"); got != memLimit {
			t.Errorf("%s: sysconf(_SC_PHYS_PAGES) × page size = %d, want %d", tc.name, got, memLimit)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", tc.name, out)
		}
	}
	host, _ := os.Hostname()
	deadline := time.Now().Add(5 * time.Second)
	// logrus quotes a value such as the VM's hostname "(none)".
	for !strings.Contains(a.Logs(), "exec-"+host+"-") {
		if time.Now().After(deadline) {
			t.Fatalf("agent log names no exec-%s-PID job%s", host, agentLog(a))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// No agent: a clear error and nothing run; skip runs it as it is.
	missing := filepath.Join(t.TempDir(), "none.sock")
	out, stderr, err := run("--socket", missing, "--", "/bin/echo", "ran")
	if err == nil || strings.Contains(out, "ran") || !strings.Contains(stderr, "not reachable") {
		t.Errorf("no agent: err %v, stdout %q, stderr %q; want a failure naming the socket and nothing run", err, out, stderr)
	}
	out, stderr, err = run("--socket", missing, "--on-missing-agent=skip", "--", "/bin/echo", "ran")
	if err != nil || out != "ran\n" {
		t.Errorf("no agent, skip: err %v, stdout %q, stderr %q", err, out, stderr)
	}
}
