// Command demo shows what seccompagent changes, at a glance: it builds the
// test rootfs and the agent into ./build/demo, starts the agent, runs the
// same runc container (256 MiB, half a CPU) without and with it, running
// busybox nproc, free, uptime and the musl probe, and prints both views side
// by side. When lxcfs is installed it also starts a private LXCFS and runs
// the container a third time through seccompagent-runtime with only
// seccompagent.io/enable=true: the agent paired with LXCFS's files.
//
//	sudo go run ./test/demo     (or: make demo)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

const (
	memLimit  = 256 << 20
	cpuQuota  = 50000
	cpuPeriod = 100000
)

var consumers = []string{"nproc", "free", "uptime", "/probe", "head -n 1 /proc/meminfo", "cat /sys/devices/system/cpu/online"}

// uptimeRE extracts the "up ..." part of busybox uptime's output.
var uptimeRE = regexp.MustCompile(`\bup\s+(.*?),\s+(?:\d+ users?,\s+)?load average`)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// checkPrereqs explains what is missing instead of failing half-way.
func checkPrereqs() error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (it creates containers and cgroups): sudo make demo")
	}
	var missing []string
	for _, tool := range []string{"runc", "musl-gcc", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "busybox (busybox-static)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `make deps-demo` (or `make demo`, which runs it)", strings.Join(missing, ", "))
	}
	return nil
}

// result is one container's view, or why there is none.
type result struct {
	nproc    string
	free     harness.FreeMem
	uptime   string
	load     string
	probe    harness.Probe
	memTotal string // /proc/meminfo's first line
	online   string // /sys/devices/system/cpu/online
	err      error
	skipped  string // why this container did not run
}

func run() error {
	if err := checkPrereqs(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	buildDir := filepath.Join(root, "build", "demo")
	fmt.Printf("building the test rootfs and the agent in %s ...\n", buildDir)
	rootfs := filepath.Join(buildDir, "rootfs")
	if err := harness.BuildRootfs(rootfs); err != nil {
		return err
	}
	bin, err := harness.BuildAgent(buildDir)
	if err != nil {
		return err
	}

	// Sockets, bundles and runtime state live in a temp dir (short paths
	// for the socket); the agent log is kept in the build dir.
	tmp, err := os.MkdirTemp("", "seccompagent-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	defer harness.RemoveCgroupParent()

	fmt.Println("starting the agent ...")
	agent, err := harness.StartAgent(ctx, bin, filepath.Join(tmp, "agent.sock"))
	if err != nil {
		return err
	}
	logCopy := filepath.Join(buildDir, "agent.log")
	defer func() {
		_ = agent.Stop()
		_ = os.WriteFile(logCopy, []byte(agent.Logs()), 0o644)
	}()

	fmt.Println("running the container without and with the agent ...")
	without := runContainer(ctx, filepath.Join(tmp, "without"), rootfs, agent.Socket, nil)
	with := runContainer(ctx, filepath.Join(tmp, "with"), rootfs, agent.Socket, []string{})
	paired := runPaired(ctx, tmp, buildDir, rootfs, agent.Socket)
	if err := agent.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "warning: %v\n", err)
	}

	cpus, _ := harness.HostOnlineCPUs()
	memTotal, _ := harness.HostMemTotal()
	fmt.Printf("\nrunc container limited to %s and %.1f CPU (cpu.cfs_quota_us %d / period %d) on a %d-CPU, %s host:\n\n",
		human(memLimit), float64(cpuQuota)/cpuPeriod, cpuQuota, cpuPeriod, cpus, human(memTotal))
	printTable(without, with, paired)

	if without.err != nil || with.err != nil || paired.err != nil {
		if with.err != nil {
			fmt.Printf("\nagent log (%s):\n%s\n", logCopy, tail(agent.Logs(), 30))
		}
		return errors.New("a container failed: see the table above")
	}
	fmt.Println("\nbusybox free takes total/free/shared from sysinfo(2) but subtracts the page cache it reads")
	fmt.Println("from /proc/meminfo: with the agent alone that file is the host's and \"used\" wraps below zero;")
	fmt.Println("paired with LXCFS (third column) every file and every syscall gives the container's numbers.")
	if paired.skipped != "" {
		fmt.Printf("LXCFS column skipped: %s\n", paired.skipped)
	}
	fmt.Printf("\nagent log: %s\n", logCopy)
	return nil
}

// runPaired runs the container through seccompagent-runtime with a
// private LXCFS (lxcfs -l --enable-cfs, as docs/lxcfs.md says), when lxcfs
// is installed.
func runPaired(ctx context.Context, tmp, buildDir, rootfs, socket string) result {
	if _, err := exec.LookPath("lxcfs"); err != nil {
		return result{skipped: "lxcfs is not installed (`make deps` installs it)"}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return result{skipped: "/dev/fuse is missing (LXCFS needs the fuse module)"}
	}
	wrapper, err := harness.BuildWrapper(buildDir)
	if err != nil {
		return result{err: err}
	}
	fmt.Printf("starting LXCFS (lxcfs %s) and running the container through seccompagent-runtime ...\n", strings.Join(harness.LXCFSFlags, " "))
	lx, err := harness.StartLXCFS(ctx, filepath.Join(tmp, "lxcfs"))
	if err != nil {
		return result{err: err}
	}
	defer lx.Stop()
	settings := filepath.Join(tmp, "runtime.json")
	if err := os.WriteFile(settings, []byte("{}"), 0o644); err != nil {
		return result{err: err}
	}
	return runContainer(ctx, filepath.Join(tmp, "paired"), rootfs, socket, []string{wrapper,
		"--seccompagent-config=" + settings, "--seccompagent-socket=" + socket, "--seccompagent-lxcfs-dir=" + lx.Dir})
}

// runContainer runs the consumers in a limited runc container: without the
// agent when wrapper is nil, with it (listenerPath) when wrapper is empty,
// else through that seccompagent-runtime command line with only
// seccompagent.io/enable=true.
func runContainer(ctx context.Context, dir, rootfs, listener string, wrapper []string) result {
	opts := harness.BundleOptions{
		Args:        harness.SectionedCommand(consumers...),
		MemoryLimit: memLimit,
		CPUQuota:    cpuQuota,
		CPUPeriod:   cpuPeriod,
	}
	switch {
	case wrapper == nil:
	case len(wrapper) == 0:
		opts.ListenerPath = listener
	default:
		opts.Annotations = map[string]string{"seccompagent.io/enable": "true"}
	}
	b, err := harness.NewBundle(dir, rootfs, opts)
	if err != nil {
		return result{err: err}
	}
	if len(wrapper) > 0 {
		b.Wrapper = wrapper
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stdout, stderr, err := harness.RunRunc(ctx, b, "demo-"+harness.UniqueID())
	if err != nil {
		return result{err: fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr))}
	}
	sec := harness.SplitSections(stdout)
	r := result{
		nproc:    strings.TrimSpace(sec["nproc"]),
		probe:    harness.ParseProbe(sec["/probe"]),
		memTotal: strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimSpace(sec["head -n 1 /proc/meminfo"]), "MemTotal:")), " "),
		online:   strings.TrimSpace(sec["cat /sys/devices/system/cpu/online"]),
	}
	r.free, _ = harness.ParseFree(sec["free"])
	// " 08:00:07 up  2:49,  0 users,  load average: ..." → "up 2:49"
	if m := uptimeRE.FindStringSubmatch(sec["uptime"]); m != nil {
		r.uptime = "up " + strings.Join(strings.Fields(m[1]), " ")
	}
	if _, load, ok := strings.Cut(sec["uptime"], "load average: "); ok {
		r.load = strings.TrimSpace(load)
	}
	return r
}

// printTable prints one row per fact: what, without agent, with agent and,
// when LXCFS ran, with agent and LXCFS.
func printTable(without, with, paired result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	if paired.skipped == "" {
		fmt.Fprintln(w, "what\twithout agent\twith agent\twith agent + LXCFS")
		fmt.Fprintln(w, "----\t-------------\t----------\t------------------")
	} else {
		fmt.Fprintln(w, "what\twithout agent\twith agent")
		fmt.Fprintln(w, "----\t-------------\t----------")
	}
	row := func(what string, f func(r result) string) {
		cell := func(r result) string {
			if r.err != nil {
				return "(container failed)"
			}
			if v := f(r); v != "" {
				return v
			}
			return "?"
		}
		if paired.skipped == "" {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", what, cell(without), cell(with), cell(paired))
		} else {
			fmt.Fprintf(w, "%s\t%s\t%s\n", what, cell(without), cell(with))
		}
	}
	row("busybox nproc", func(r result) string { return r.nproc })
	row("busybox free: Mem total", func(r result) string { return kib(r.free.Total) })
	row("busybox free: used", func(r result) string { return usedKiB(r.free) })
	row("busybox free: free", func(r result) string { return kib(r.free.Free) })
	row("busybox uptime", func(r result) string { return r.uptime })
	row("busybox uptime: load average", func(r result) string { return r.load })
	row("/proc/meminfo MemTotal", func(r result) string { return r.memTotal })
	row("/sys/devices/system/cpu/online", func(r result) string { return r.online })
	row("musl sysconf(_SC_NPROCESSORS_ONLN)", func(r result) string { return r.probe["nprocs_onln"] })
	row("musl sysconf(_SC_PHYS_PAGES) × page", func(r result) string {
		pages, err1 := r.probe.Uint("phys_pages")
		size, err2 := r.probe.Uint("pagesize")
		if err1 != nil || err2 != nil {
			return ""
		}
		return human(pages * size)
	})
	row("sysinfo(2) totalram", func(r result) string { return probeBytes(r.probe, "totalram") })
	row("sysinfo(2) freeram", func(r result) string { return probeBytes(r.probe, "freeram") })
	row("sysinfo(2) uptime", func(r result) string {
		if s, ok := r.probe["uptime"]; ok {
			return s + " s"
		}
		return ""
	})
	row("sched_getaffinity(2) CPUs", func(r result) string { return r.probe["affinity_mask"] })
	w.Flush()
	for _, r := range []struct {
		name string
		res  result
	}{{"without agent", without}, {"with agent", with}, {"with agent + LXCFS", paired}} {
		if r.res.err != nil {
			fmt.Printf("\n%s: %v\n", r.name, r.res.err)
		}
	}
}

// probeBytes formats sysinfo field × mem_unit.
func probeBytes(p harness.Probe, key string) string {
	v, err1 := p.Uint(key)
	unit, err2 := p.Uint("mem_unit")
	if err1 != nil || err2 != nil {
		return ""
	}
	return human(v * unit)
}

func kib(v uint64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%d KiB (%s)", v, human(v*1024))
}

// usedKiB shows busybox's "used", flagging a wrapped (negative) value.
func usedKiB(f harness.FreeMem) string {
	if f.Total == 0 {
		return ""
	}
	if f.Used > f.Total {
		return fmt.Sprintf("%d KiB (wrapped: negative)", f.Used)
	}
	return kib(f.Used)
}

// human formats bytes with a binary unit.
func human(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
