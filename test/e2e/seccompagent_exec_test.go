package e2e

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	if rootfsErr != nil {
		t.Fatalf("test rootfs (the musl probe) did not build: %v", rootfsErr)
	}
	probe := filepath.Join(rootfsDir, "probe")
	a := startAgent(t)
	run := plainCgroupExec(t)
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

// plainCgroupExec makes a plain cgroup (256 MiB, quota 0.5, removed at the
// end) and returns a function running `seccompagent exec ARGS` in it: a shell
// moves itself into the cgroup, then becomes `seccompagent exec`, which
// becomes the command.
func plainCgroupExec(t *testing.T) func(args ...string) (string, string, error) {
	t.Helper()
	bin := requireAgent(t)
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
	join := "for f in " + strings.Join(cg.Procs, " ") + `; do echo $$ > "$f" || exit 97; done; exec "$@"`
	return func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", join, "sh", bin, "exec"}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
}

// TestSeccompagentExecI386: the filter `seccompagent exec` installs traps the
// i386 calls too (sysinfo is 116 there, struct compat_sysinfo): an i386
// program it runs in the plain cgroup sees 256 MiB and 1 CPU.
func TestSeccompagentExecI386(t *testing.T) {
	testenv.RequireRoot(t)
	if rootfsErr != nil {
		t.Fatalf("test rootfs (with /compat32, notify/testdata/compat.c built -m32) did not build: %v", rootfsErr)
	}
	bin := filepath.Join(rootfsDir, "compat32")
	if err := exec.Command(bin).Run(); err != nil {
		// A kernel without ia32 emulation: the VM tier (6.1) runs this.
		testenv.SkipWithoutKernelFeature(t, false, "IA32_EMULATION", "exec of a static i386 program: "+err.Error())
	}
	a := startAgent(t)
	run := plainCgroupExec(t)
	stdout, stderr, err := run("--socket", a.Socket, "--", bin)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stderr, agentLog(a))
	}
	// Lines: name ret errno hex-bytes (notify/testdata/compat.c).
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			got[f[0]] = f[1:]
		}
	}
	le32 := func(hexs string, off int) uint32 {
		b, err := hex.DecodeString(hexs[2*off : 2*off+8])
		if err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint32(b)
	}
	si := got["sysinfo"]
	if len(si) != 3 || si[0] != "0" {
		t.Fatalf("i386 sysinfo: %q\n%s", si, stdout)
	}
	// struct compat_sysinfo: totalram at byte 16, mem_unit at 52.
	if total, unit := le32(si[2], 16), le32(si[2], 52); uint64(total)*uint64(unit) != memLimit {
		t.Errorf("i386 sysinfo totalram %d × mem_unit %d, want %d", total, unit, memLimit)
	}
	aff := got["aff_128"]
	if len(aff) != 3 {
		t.Fatalf("i386 sched_getaffinity: %q", aff)
	}
	mask, _ := hex.DecodeString(aff[2])
	n, _ := strconv.Atoi(aff[0])
	cpus := 0
	for _, b := range mask[:min(n, len(mask))] {
		cpus += bits.OnesCount8(b)
	}
	if cpus != wantCPUs {
		t.Errorf("i386 sched_getaffinity shows %d CPUs (%q), want %d", cpus, aff, wantCPUs)
	}
}
