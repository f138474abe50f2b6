package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// The pairing with LXCFS: containers created through seccompagent-runtime
// with only seccompagent.io/enable=true, on a host where LXCFS runs with the
// documented flags (harness.LXCFSFlags). The tests start their own lxcfs on
// a private mount point and point the wrapper at it (lxcfs-dir).

var (
	pairWrapperOnce sync.Once
	pairWrapperBin  string
	pairWrapperErr  error
)

// requireLXCFS starts a private LXCFS for the test (stopped at cleanup).
func requireLXCFS(t *testing.T) *harness.LXCFS {
	t.Helper()
	testenv.RequireCommand(t, "lxcfs")
	_, err := os.Stat("/dev/fuse")
	testenv.Require(t, err == nil, "/dev/fuse missing: LXCFS needs the fuse module")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	l, err := harness.StartLXCFS(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("stopping lxcfs: %v", err)
		}
		if t.Failed() {
			t.Logf("lxcfs log:\n%s", harness.Trim(l.Logs(), 4000))
		}
	})
	return l
}

// wrapperArgs builds seccompagent-runtime (once) and returns its argv for a
// container served by agent a with LXCFS at lxcfsDir.
func wrapperArgs(t *testing.T, a *harness.Agent, lxcfsDir string) []string {
	t.Helper()
	pairWrapperOnce.Do(func() {
		if p := os.Getenv("SECCOMPAGENT_E2E_WRAPPER"); p != "" {
			pairWrapperBin = p
			return
		}
		pairWrapperBin, pairWrapperErr = harness.BuildWrapper(filepath.Join(workDir, "bin"))
	})
	if pairWrapperErr != nil {
		t.Fatal(pairWrapperErr)
	}
	settings := filepath.Join(t.TempDir(), "runtime.json")
	if err := os.WriteFile(settings, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{pairWrapperBin, "--seccompagent-config=" + settings, "--seccompagent-socket=" + a.Socket,
		"--seccompagent-lxcfs-dir=" + lxcfsDir}
}

// pairedBundle is a 256 MiB, half-CPU bundle that goes through the wrapper
// and asks for nothing but seccompagent.io/enable=true.
func pairedBundle(t *testing.T, rootfs string, wrapper []string, ann map[string]string, args []string, mounts ...specs.Mount) *harness.Bundle {
	t.Helper()
	annotations := map[string]string{"seccompagent.io/enable": "true"}
	for k, v := range ann {
		annotations[k] = v
	}
	b, err := harness.NewBundle(t.TempDir(), rootfs, harness.BundleOptions{
		Args: args, MemoryLimit: memLimit, CPUQuota: cpuQuota, CPUPeriod: cpuPeriod, Annotations: annotations,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Wrapper = wrapper
	if len(mounts) > 0 {
		if err := b.AddMounts(mounts...); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// Commands of the pairing containers, one section each.
const (
	lxMeminfo     = "cat /proc/meminfo"
	lxLoadavg     = "cat /proc/loadavg"
	lxOnline      = "cat /sys/devices/system/cpu/online"
	lxGlibcFree   = "free"
	lxBusyboxUp   = "uptime"
	lxMountsProcs = "grep -c lxcfs /proc/self/mountinfo"
	lxGlibcProbe  = "/glibc-probe"
	// The musl probe once more, run first, under a name of its own.
	lxLoadsBefore = ": before the first read of /proc/loadavg; " + cmdMuslProbe
)

// checkFree: busybox free shows the limit as total, and used and free
// within it.
func checkFree(t *testing.T, name, out string) {
	t.Helper()
	f, err := harness.ParseFree(out)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if f.Total != memLimit/1024 || f.Used > f.Total || f.Free > f.Total {
		t.Errorf("%s: total %d used %d free %d KiB; want total %d and used, free within it", name, f.Total, f.Used, f.Free, memLimit/1024)
	}
}

// TestLXCFSConformance: in a container created through the wrapper with
// only seccompagent.io/enable=true, sysinfo(2) from static musl and static
// glibc callers agrees with the container's own /proc files the way a
// kernel conformance suite checks it, busybox free's columns are all the
// container's, and glibc's sysconf(_SC_NPROCESSORS_ONLN) (sysfs) says what
// sched_getaffinity says. Needs only the test rootfs: it runs in the cgroup
// v2 VM too.
func TestLXCFSConformance(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			lx := requireLXCFS(t)
			a := startAgent(t)
			// The second command reads /proc/loadavg: LXCFS starts a
			// container's average at its first read, the agent at attach;
			// the first says where the agent's stood then.
			cmds := []string{lxLoadsBefore, lxLoadavg, cmdMuslProbe, lxGlibcProbe, lxMeminfo, lxOnline, lxGlibcFree, lxMountsProcs}
			b := pairedBundle(t, rootfsDir, wrapperArgs(t, a, lx.Dir), nil, harness.SectionedCommand(cmds...))
			ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
			defer cancel()
			out, stderr, err := rt.Run(ctx, b, "lxcfs-"+harness.UniqueID())
			if err != nil {
				t.Fatalf("container: %v\n%s\n%s%s", err, out, stderr, agentLog(a))
			}
			t.Logf("container output:\n%s", out)
			sec := harness.SplitSections(out)
			// 8 /proc files and cpu/online (ocihook.LXCFSFiles; this
			// binary is built without cgo for the VM, so it does not
			// import the modifier).
			if n, _ := strconv.Atoi(strings.TrimSpace(sec[lxMountsProcs])); n != 9 {
				t.Errorf("%d lxcfs mounts in the container, want 9 (8 /proc files and cpu/online)", n)
			}
			checkFree(t, "busybox free (glibc)", sec[lxGlibcFree])
			if n, err := harness.ParseProbe(sec[lxGlibcProbe]).Int("nprocs_onln"); err != nil || n != wantCPUs {
				t.Errorf("glibc sysconf(_SC_NPROCESSORS_ONLN) = %d (%v), want %d", n, err, wantCPUs)
			}
			if got := strings.TrimSpace(sec[lxOnline]); got != "0" {
				t.Errorf("/sys/devices/system/cpu/online = %q, want \"0\" (LXCFS --enable-cfs: one CPU, as the agent's mask)", got)
			}
			before, err := sysinfoLoads(sec[lxLoadsBefore])
			if err != nil {
				t.Fatalf("the probe before LXCFS's first read: %v", err)
			}
			for _, caller := range []string{cmdMuslProbe, lxGlibcProbe} {
				if err := conformance(sec[caller], sec[lxMeminfo], before); err != nil {
					t.Errorf("%s: sysinfo(2) disagrees with the container's files: %v", caller, err)
				}
			}
		})
	}
}

// TestLXCFSPairing: the programs of the consumer matrix that read files see
// the container: musl busybox free (= Alpine's) with a sane "used", Python's
// os.cpu_count() and Node's os.totalmem(). Needs the host's interpreters
// (not in the VM).
func TestLXCFSPairing(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			s := buildConsumerRootfs()
			if s.err != nil {
				t.Fatalf("consumer rootfs did not build: %v", s.err)
			}
			testenv.Require(t, s.muslErr == nil, fmt.Sprintf("musl busybox not built: %v", s.muslErr))
			_, err := harness.HostProgram(hostPython, pkgPython)
			testenv.Require(t, err == nil, fmt.Sprint(err))
			_, err = harness.HostProgram(hostNode, pkgNode)
			testenv.Require(t, err == nil, fmt.Sprint(err))
			lx := requireLXCFS(t)
			a := startAgent(t)
			cmds := []string{cmdMuslFree, cmdPython, cmdNode}
			b := pairedBundle(t, s.rootfs, wrapperArgs(t, a, lx.Dir), nil, harness.SectionedCommand(cmds...),
				append([]specs.Mount{harness.CgroupMount()}, s.mounts...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, stderr, err := rt.Run(ctx, b, "lxcfs-"+harness.UniqueID())
			if err != nil {
				t.Fatalf("container: %v\n%s\n%s%s", err, out, stderr, agentLog(a))
			}
			t.Logf("container output:\n%s", out)
			sec := harness.SplitSections(out)
			checkFree(t, "busybox free (musl)", sec[sectionKey(cmdMuslFree)])
			if n, err := harness.ParseProbe(sec[sectionKey(cmdPython)]).Int("cpu_count"); err != nil || n != wantCPUs {
				t.Errorf("Python os.cpu_count() = %d (%v), want %d", n, err, wantCPUs)
			}
			if n, err := harness.ParseProbe(sec[sectionKey(cmdNode)]).Int("totalmem"); err != nil || n != memLimit {
				t.Errorf("Node os.totalmem() = %d (%v), want %d", n, err, memLimit)
			}
		})
	}
}

// conformance checks a probe's sysinfo(2) against /proc/uptime (which the
// probe reads just before the call), /proc/loadavg (just after) and
// /proc/meminfo, the way a kernel conformance suite does: totalram ×
// mem_unit = MemTotal, totalswap × mem_unit = SwapTotal, uptime at most 2 s
// above /proc/uptime and never below, each load within 0.1 of the file's.
func conformance(probe, meminfo string, before [3]float64) error {
	p := harness.ParseProbe(probe)
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if ret, err := p.Int("sysinfo_ret"); err != nil || ret != 0 {
		return fmt.Errorf("sysinfo returned %d (%v)", ret, err)
	}
	unit, err := p.Uint("mem_unit")
	if err != nil {
		return err
	}
	for _, c := range []struct{ field, key string }{{"totalram", "MemTotal"}, {"totalswap", "SwapTotal"}} {
		v, err := p.Uint(c.field)
		if err != nil {
			return err
		}
		kb, err := meminfoField(meminfo, c.key)
		if err != nil {
			return err
		}
		if v*unit != kb*1024 {
			add("%s × mem_unit = %d, /proc/meminfo %s = %d", c.field, v*unit, c.key, kb*1024)
		}
	}
	up, err := p.Int("uptime")
	if err != nil {
		return err
	}
	f := strings.Fields(p["proc_uptime"])
	if len(f) < 1 {
		return fmt.Errorf("the probe read no /proc/uptime: %q", p["proc_uptime"])
	}
	fileUp, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return fmt.Errorf("/proc/uptime %q: %w", p["proc_uptime"], err)
	}
	if d := float64(up) - fileUp; d < 0 || d > 2 {
		add("uptime %d s, /proc/uptime %.2f s (want 0..2 s above)", up, fileUp)
	}
	if err := loadsAgreeSince(probe, before); err != nil {
		add("%v", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// loadsAgree checks each of a probe's sysinfo loads (scaled by 1<<16)
// against the /proc/loadavg it read right after: within 0.1, or within
// what one sample of every task of the container moves that average by,
// if more. The two averages come from two samplers every 5 s, the agent's
// and LXCFS's, whose phases differ: in the moment between their samples
// one has counted the container's running tasks and the other not yet (a
// container running its commands for two seconds: 0.16 against 0.00 for
// two tasks, in a CI run).
func loadsAgree(probe string) error { return loadsAgreeSince(probe, [3]float64{}) }

// sysinfoLoads are a probe's sysinfo loads as floats.
func sysinfoLoads(probe string) ([3]float64, error) {
	var out [3]float64
	f := strings.Fields(harness.ParseProbe(probe)["loads"])
	if len(f) != 3 {
		return out, fmt.Errorf("loads %q", f)
	}
	for i := range 3 {
		l, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return out, fmt.Errorf("loads %q", f)
		}
		out[i] = float64(l) / 65536
	}
	return out, nil
}

// loadsAgreeSince is loadsAgree for averages that started at different
// times: the agent's at attach, LXCFS's at the container's first read of
// /proc/loadavg (docs/lxcfs.md). before is what the agent said just before
// that first read (the container's setup, which LXCFS never sampled); it
// is taken off the agent's loads, which differ from LXCFS's by no more
// than that, decayed, plus their sampling phases.
func loadsAgreeSince(probe string, before [3]float64) error {
	p := harness.ParseProbe(probe)
	loadavg := p["proc_loadavg"]
	loads := strings.Fields(p["loads"])
	fileLoads := strings.Fields(loadavg)
	if len(loads) != 3 || len(fileLoads) < 3 {
		return fmt.Errorf("loads %q, /proc/loadavg %q", p["loads"], loadavg)
	}
	procs, err := p.Int("procs")
	if err != nil {
		return err
	}
	var errs []string
	for i, window := range []float64{60, 300, 900} {
		l, err1 := strconv.ParseUint(loads[i], 10, 64)
		fl, err2 := strconv.ParseFloat(fileLoads[i], 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("loads %q, /proc/loadavg %q", p["loads"], loadavg)
		}
		v := float64(l) / 65536
		// One 5 s sample of procs tasks, and rounding.
		tol := max(0.1, float64(procs)*(1-math.Exp(-5/window))+0.01)
		if d := v - fl; d > before[i]+tol || d < -tol {
			errs = append(errs, fmt.Sprintf("sysinfo load %d = %.2f (%.2f of it before LXCFS began), /proc/loadavg %.2f; %d tasks: within %.2f", i, v, before[i], fl, procs, tol))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func meminfoField(meminfo, key string) (uint64, error) {
	for _, line := range strings.Split(meminfo, "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/meminfo %q", key, harness.Trim(meminfo, 200))
}

// loadRE reads busybox uptime's "load average: 0.15, 0.03, 0.01".
var loadRE = regexp.MustCompile(`load average: ([0-9.]+), ([0-9.]+), ([0-9.]+)`)

func uptimeLoad1(out string) (float64, error) {
	m := loadRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("uptime: no load average in %q", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

// TestLXCFSLoadAverage: busybox uptime shows the container's own load
// average while the host is loaded. Two containers run side by side for
// 12 s (two or three 5 s samples; the busy one until LXCFS has sampled it
// too): one keeps a thread in state D (/dstate: a load of 1 that costs no
// CPU, so the test loads no one else), one sleeps. The loaded one's
// average rises (and agrees with LXCFS's /proc/loadavg within 0.1, their
// sampling phases apart); the idle one stays near 0 while the host's,
// which counts the D thread too, does not.
func TestLXCFSLoadAverage(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			lx := requireLXCFS(t)
			a := startAgent(t)
			wrapper := wrapperArgs(t, a, lx.Dir)
			// The first read of /proc/loadavg makes LXCFS start averaging
			// this container (from 0, as the agent does at attach).
			script := func(busy bool) []string {
				wait := "cat /proc/loadavg >/dev/null; sleep 12"
				if busy {
					// After 12 s in D, wait (up to 30 s more) until
					// LXCFS has counted the task in a sample: its
					// sampler thread was seen not to run for longer
					// than 12 s in CI ("0/1" running/total).
					wait = "cat /proc/loadavg >/dev/null; /dstate 60 & sleep 12; i=0; " +
						"while [ $i -lt 30 ]; do case \"$(cat /proc/loadavg)\" in *' 0/'*) ;; *) break ;; esac; sleep 1; i=$((i+1)); done"
				}
				return harness.SectionedCommand(wait, lxBusyboxUp, lxLoadavg, cmdMuslProbe)
			}
			type result struct {
				out, stderr string
				err         error
			}
			var wg sync.WaitGroup
			res := map[bool]*result{true: {}, false: {}}
			for _, busy := range []bool{true, false} {
				b := pairedBundle(t, rootfsDir, wrapper, nil, script(busy))
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					r := res[busy]
					r.out, r.stderr, r.err = rt.Run(ctx, b, "load-"+harness.UniqueID())
				}()
			}
			wg.Wait()
			hostLoad, err := os.ReadFile("/proc/loadavg")
			if err != nil {
				t.Fatal(err)
			}
			for busy, r := range res {
				if r.err != nil {
					t.Fatalf("container (busy %v): %v\n%s\n%s%s", busy, r.err, r.out, r.stderr, agentLog(a))
				}
				t.Logf("busy %v:\n%s", busy, r.out)
			}
			host1, _ := strconv.ParseFloat(strings.Fields(string(hostLoad))[0], 64)
			busySec, idleSec := harness.SplitSections(res[true].out), harness.SplitSections(res[false].out)
			busy1, err := uptimeLoad1(busySec[lxBusyboxUp])
			if err != nil {
				t.Fatal(err)
			}
			idle1, err := uptimeLoad1(idleSec[lxBusyboxUp])
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("load1: busy container %.2f, idle container %.2f, host %.2f", busy1, idle1, host1)
			if busy1 < 0.1 || busy1 > 1.5 {
				t.Errorf("loaded container: uptime load1 %.2f, want 0.1..1.5 (one thread in D for 12 s)", busy1)
			}
			if idle1 > 0.09 {
				t.Errorf("idle container: uptime load1 %.2f, want below 0.09 (its own, not the host's %.2f)", idle1, host1)
			}
			if host1 < idle1+0.1 {
				t.Errorf("host load1 %.2f is not above the idle container's %.2f: the host was not loaded", host1, idle1)
			}
			// sysinfo and LXCFS's file agree on each container's load,
			// read back to back by one program. busybox uptime and cat
			// ran as two processes, with one of LXCFS's or the agent's
			// 5 s samples possibly in between: they are shown, not
			// compared. The busy container's are compared only once
			// LXCFS has counted its D task at all (its running count):
			// LXCFS's sampler was seen to stall for over 40 s in CI,
			// which says nothing of the agent's.
			compare := map[string]map[string]string{"idle": idleSec, "busy": busySec}
			if f := strings.Fields(busySec[lxLoadavg]); len(f) < 4 {
				t.Errorf("no /proc/loadavg output: %q", busySec[lxLoadavg])
			} else if strings.HasPrefix(f[3], "0/") {
				t.Logf("LXCFS never counted the busy container's D task (%q after 42 s): its sampler did not run; loads not compared", busySec[lxLoadavg])
				delete(compare, "busy")
			}
			for name, sec := range compare {
				if err := loadsAgree(sec[cmdMuslProbe]); err != nil {
					t.Errorf("%s container: %v", name, err)
				}
			}
		})
	}
}

// TestLXCFSRequired: seccompagent.io/lxcfs=true without an LXCFS mount
// fails the container's creation, naming the annotation and the missing
// mount; a bad value is refused the same way.
func TestLXCFSRequired(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			a := startAgent(t)
			missing := filepath.Join(t.TempDir(), "no-lxcfs")
			wrapper := wrapperArgs(t, a, missing)
			for _, tc := range []struct {
				value string
				want  []string
			}{
				{"true", []string{"seccompagent.io/lxcfs", "no fuse.lxcfs mount at " + missing}},
				{"sometimes", []string{`seccompagent.io/lxcfs="sometimes"`, "auto, true or false"}},
			} {
				b := pairedBundle(t, rootfsDir, wrapper, map[string]string{"seccompagent.io/lxcfs": tc.value}, []string{"echo", "started"})
				ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
				out, stderr, err := rt.Run(ctx, b, "lxreq-"+harness.UniqueID())
				cancel()
				if err == nil || strings.Contains(out, "started") {
					t.Errorf("lxcfs=%s: the container started (err %v, out %q)", tc.value, err, out)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("lxcfs=%s: error %q does not name %q", tc.value, stderr, w)
					}
				}
			}
		})
	}
}

// TestLXCFSRestart pins down what docs/lxcfs.md says about LXCFS going
// away under a running container: the files bound from it fail with
// ENOTCONN until the container restarts, the agent's answers do not change,
// and a container that requires LXCFS is refused while no mount is there.
func TestLXCFSRestart(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	lx := requireLXCFS(t)
	a := startAgent(t)
	wrapper := wrapperArgs(t, a, lx.Dir)
	b := pairedBundle(t, rootfsDir, wrapper, nil, []string{"sleep", "1000"})
	id := "lxrestart-" + harness.UniqueID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*containerTimeout)
	defer cancel()
	if err := rt.StartDetached(ctx, b, id); err != nil {
		t.Fatalf("run -d: %v%s", err, agentLog(a))
	}
	t.Cleanup(func() {
		if err := rt.KillDelete(b, id); err != nil {
			t.Errorf("kill/delete: %v", err)
		}
	})
	out, stderr, err := rt.Exec(ctx, b, id, "head", "-n", "1", "/proc/meminfo")
	if err != nil || !strings.Contains(out, "262144 kB") {
		t.Fatalf("before: /proc/meminfo %q %q (%v), want MemTotal 262144 kB", out, stderr, err)
	}
	if err := lx.Stop(); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = rt.Exec(ctx, b, id, "head", "-n", "1", "/proc/meminfo")
	if err == nil || !strings.Contains(stderr+out, "Transport endpoint is not connected") {
		t.Errorf("after lxcfs stopped: /proc/meminfo %q %q (%v), want ENOTCONN", out, stderr, err)
	}
	out, _, err = rt.Exec(ctx, b, id, "/probe")
	if total, perr := harness.ParseProbe(out).Uint("totalram"); err != nil || perr != nil || total != memLimit {
		t.Errorf("after lxcfs stopped: sysinfo totalram %d (%v, %v), want %d from the agent", total, err, perr, memLimit)
	}
	req := pairedBundle(t, rootfsDir, wrapper, map[string]string{"seccompagent.io/lxcfs": "true"}, []string{"true"})
	if _, stderr, err := rt.Run(ctx, req, "lxreq-"+harness.UniqueID()); err == nil || !strings.Contains(stderr, "no fuse.lxcfs mount at "+lx.Dir) {
		t.Errorf("lxcfs=true with LXCFS gone: err %v, stderr %q; want a refusal naming the mount", err, stderr)
	}
}
