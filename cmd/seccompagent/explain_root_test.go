package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// TestExplainRealNestedCgroup (root): a real nested v1 cgroup on this host —
// parent 256 MiB and quota 50000/100000, child 128 MiB and no quota — with a
// process in the child. explain --json must report the child's memory and
// the parent's CPU count, each attributed to its level.
func TestExplainRealNestedCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	const mem, cpu = "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu"
	for _, d := range []string{mem, cpu} {
		_, err := os.Stat(filepath.Join(d, "cgroup.procs"))
		testenv.Require(t, err == nil, "needs the cgroup v1 "+filepath.Base(d)+" hierarchy at "+d+" (the cgroup v2 tier runs in the VM)")
	}
	parent := fmt.Sprintf("seccompagent-test-%08x", rand.Uint32())
	var made []string
	mk := func(dir string, files map[string]string) {
		t.Helper()
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, dir)
		for _, name := range []string{"cpu.cfs_period_us", "cpu.cfs_quota_us", "memory.limit_in_bytes"} {
			if v, ok := files[name]; ok {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0); err != nil {
					t.Fatalf("write %s: %v", name, err)
				}
			}
		}
	}
	t.Cleanup(func() {
		for i := len(made) - 1; i >= 0; i-- {
			for try := 0; ; try++ {
				err := os.Remove(made[i])
				if err == nil || errors.Is(err, os.ErrNotExist) || try == 50 {
					if err != nil && !errors.Is(err, os.ErrNotExist) {
						t.Errorf("remove cgroup %s: %v", made[i], err)
					}
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	mk(filepath.Join(mem, parent), map[string]string{"memory.limit_in_bytes": "268435456"})
	mk(filepath.Join(mem, parent, "child"), map[string]string{"memory.limit_in_bytes": "134217728"})
	mk(filepath.Join(cpu, parent), map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"})
	mk(filepath.Join(cpu, parent, "child"), map[string]string{"cpu.cfs_quota_us": "-1"})

	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleep.Process.Signal(syscall.SIGKILL)
		sleep.Wait()
	})
	pid := strconv.Itoa(sleep.Process.Pid)
	for _, h := range []string{mem, cpu} {
		if err := os.WriteFile(filepath.Join(h, parent, "child", "cgroup.procs"), []byte(pid), 0); err != nil {
			t.Fatal(err)
		}
	}

	bin := filepath.Join(t.TempDir(), "seccompagent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "explain", "--pid", pid, "--json").Output()
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	var v limits.View
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	child := "/" + parent + "/child"
	if v.Memory.Total != 134217728 || v.Memory.Limit.Source == nil ||
		v.Memory.Limit.Source.Level != 0 || v.Memory.Limit.Source.Cgroup != child ||
		v.Memory.Limit.Source.File != filepath.Join(mem, parent, "child", "memory.limit_in_bytes") {
		t.Errorf("memory: total %d decided by %+v; want 134217728 from the child's memory.limit_in_bytes (level 0)", v.Memory.Total, v.Memory.Limit.Source)
	}
	if !v.CPU.Count.Limited || v.CPU.Count.Value != 1 || v.CPU.Count.Source == nil ||
		v.CPU.Count.Source.Level != 1 || v.CPU.Count.Source.Cgroup != "/"+parent ||
		v.CPU.Count.Source.File != filepath.Join(cpu, parent, "cpu.cfs_quota_us") {
		t.Errorf("cpu: count %+v; want 1 from the parent's cpu.cfs_quota_us (level 1)", v.CPU.Count)
	}

	text, err := exec.Command(bin, "explain", "--pid", pid).Output()
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	for _, want := range []string{"128 MiB", "quota 50000/100000 us", "(level 1, cgroup /" + parent + ")", filepath.Join(cpu, parent, "cpu.cfs_quota_us")} {
		if !strings.Contains(string(text), want) {
			t.Errorf("explain text lacks %q:\n%s", want, text)
		}
	}
}
