package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/seccompagent/seccompagent/limits"
)

const fixtures = "../../limits/testdata/"

// explainFixture runs `explain` on a fixture tree, as an operator would.
func explainFixture(t *testing.T, fixture, pid string, extra ...string) string {
	t.Helper()
	var out, errOut strings.Builder
	args := append([]string{"--pid", pid, "--proc", fixtures + fixture + "/proc", "--root", fixtures + fixture}, extra...)
	if err := runExplain(args, &out, &errOut); err != nil {
		t.Fatalf("explain %v: %v (stderr %q)", args, err, errOut.String())
	}
	return out.String()
}

func TestExplainText(t *testing.T) {
	for _, tc := range []struct {
		fixture, pid string
		lines        []string // each must appear, in this order (spaces collapsed)
	}{
		{"v1-hybrid", "100", []string{
			"pid 100 cgroups hybrid",
			"CPUs (sched_getaffinity) 1 ", "quota 50000/100000 us, limited by " + fixtures + "v1-hybrid/sys/fs/cgroup/cpu/parent/cpu.cfs_quota_us (level 1, cgroup /parent)",
			"cpuset ", "0-1 (2)", "read from " + fixtures + "v1-hybrid/sys/fs/cgroup/cpuset/parent/child/cpuset.effective_cpus (level 0, cgroup /parent/child)",
			"memory total (totalram) 128 MiB ", "2 GiB", "limited by " + fixtures + "v1-hybrid/sys/fs/cgroup/memory/parent/child/memory.limit_in_bytes (level 0, cgroup /parent/child)",
			"memory used 50 MiB",
			"memory free (freeram) 78 MiB",
			"shared (sharedram) 8 KiB",
			"swap total (totalswap) 0 B 1 GiB no swap accounting in this cgroup",
			"tasks (procs) 7 counted in " + fixtures + "v1-hybrid/sys/fs/cgroup/pids/parent/child/pids.current (level 0, cgroup /parent/child)",
		}},
		{"v2", "306", []string{
			"pid 306 cgroups v2",
			"CPUs (sched_getaffinity) all ", "4 ", "no limit: host value (no CPU quota at any level)",
			"memory total (totalram) 2 GiB ", "no limit: host value (no memory limit below the host's RAM)",
			"swap total (totalswap) 1 GiB 1 GiB no limit: host value (no swap limit)",
		}},
		{"v1-mountroot", "500", []string{
			"CPUs (sched_getaffinity) 3 4 quota 250000/100000 us, limited by " + fixtures + "v1-mountroot/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us (level 1, cgroup /docker/abc)",
			"memory free (freeram) 1023.9 MiB",
			"tasks (procs) host's no limit: host value (no pids cgroup below the root)",
		}},
	} {
		out := explainFixture(t, tc.fixture, tc.pid)
		// Column widths depend on the values: compare with runs of
		// spaces collapsed to one.
		rest := strings.Join(strings.Fields(out), " ")
		for _, want := range tc.lines {
			i := strings.Index(rest, want)
			if i < 0 {
				t.Errorf("%s pid %s: output lacks %q after the previous match:\n%s", tc.fixture, tc.pid, want, out)
				break
			}
			rest = rest[i+len(want):]
		}
		if strings.Contains(out, "level up") || strings.Contains(out, "%!") {
			t.Errorf("%s: stray formatting:\n%s", tc.fixture, out)
		}
	}
}

// TestExplainJSON: --json is exactly the limits.View, indented.
func TestExplainJSON(t *testing.T) {
	out := explainFixture(t, "v2", "300", "--json")
	var got limits.View
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output is not a View: %v\n%s", err, out)
	}
	r, err := limits.NewReader(fixtures+"v2/proc", fixtures+"v2")
	if err != nil {
		t.Fatal(err)
	}
	want, err := r.View(300)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("--json = %+v, want %+v", got, *want)
	}
	if !strings.Contains(out, "\n  \"cpu\": {\n") || !strings.Contains(out, `"file": "`+fixtures+`v2/sys/fs/cgroup/kubepods/pod1/cpu.max"`) {
		t.Errorf("--json is not the indented stable format:\n%s", out)
	}
}

func TestExplainErrors(t *testing.T) {
	var out, errOut strings.Builder
	if err := runExplain(nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "--pid") {
		t.Errorf("no --pid: err = %v, want a message asking for --pid", err)
	}
	err := runExplain([]string{"--pid", "303", "--proc", fixtures + "v2/proc", "--root", fixtures + "v2"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "pid 303") || !strings.Contains(err.Error(), "bad-cpu-max/cpu.max") {
		t.Errorf("malformed cpu.max: err = %v, want it to name the pid and the file", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB",
		134217728: "128 MiB", 1<<30 - 4096: "1023.9 MiB", 2 << 30: "2 GiB",
		9223372036854771712: "7.9 EiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
