package main

// The VM part (-only vm): issue 10 asks for the tight loop within 1.5× of
// the reference on Linux 6.1 too, where there is no synchronous wake-up
// and the agent takes its poll path, and on cgroup v2. This machine runs
// neither, so the bench boots test/vm's image (Debian's 6.1 kernel,
// cgroup_no_v1=all, runc, the agent) with three more files in it (this
// program, refsup, callbench in the containers' rootfs) and runs itself
// there with -guest: the same interleaved rounds of the same runc
// containers (256 MiB, 0.5 CPU) and callbench, for native calls, refsup
// and the agent. The guest prints one line per run; the host keeps each
// best median, as on the host, and reports the ratios of the same VM run.
// TCG makes every figure many times the host's: only the ratios mean
// anything.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/vm"
	"golang.org/x/sys/unix"
)

const (
	// The VM's noise is other work on the host taking the emulated CPUs'
	// threads for a while: more, shorter rounds give each figure a
	// better chance of a quiet one than longer runs would (a trapped call
	// takes a few hundred µs under TCG; 3000 of them fix a median well).
	// 10 rounds: about 75 s of VM on a quiet host.
	defaultVMRounds = 10
	defaultVMCalls  = 3000
	vmCPUs          = 2
	vmMemoryMiB     = 2048
	vmTimeout       = 40 * time.Minute
	// vmSilence: the guest prints a line per container run and its init
	// a heartbeat every 15 s; a console quiet this long is a stalled
	// guest (test/vm boots it once more).
	vmSilence = 2 * time.Minute

	// guestStuckAfter: a container run this long in the VM is reported
	// as stuck (reportStuck); its timeout is 3 minutes.
	guestStuckAfter = 90 * time.Second

	// vmClock makes the guest keep time with the TSC, read in the vDSO,
	// as real nodes do (the TSC or kvm-clock). TCG's CPU does not claim
	// an invariant TSC, so the guest would otherwise choose the HPET,
	// which the vDSO cannot read (Linux 5.6+): every clock read would
	// be a system call and an emulated device access, for the kernel's
	// own sysinfo too (1.9 against 1.0 µs here) and for each of the
	// agent's time stamps (about 15 µs a call), a cost no node has.
	// TCG's TSC is the virtual clock of the whole machine, the same for
	// every vCPU.
	vmClock = "clocksource=tsc tsc=reliable"

	// Paths in the VM of what the vm step adds to test/vm's image.
	guestBench  = "opt/seccompagent/bin/bench"
	guestRefsup = "opt/seccompagent/bin/refsup"
)

// vmTools are the commands test/vm needs to build its image and boot it.
var vmTools = []string{"qemu-system-x86_64", "runc", "crun", "jq", "lxcfs", "depmod", "ldd", "apt-get", "dpkg-deb"}

// vm builds the image, boots it, runs the guest part and adds its rows.
func (b *bench) vm(root string, rounds, calls int) error {
	var missing []string
	for _, t := range vmTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox (busybox-static)")
	}
	if len(missing) > 0 {
		b.add(row{figure: "VM (Linux 6.1, cgroup v2)", value: "not run: missing " + strings.Join(missing, ", ")})
		return fmt.Errorf("the VM needs %s: run `make deps`", strings.Join(missing, ", "))
	}
	start := time.Now()
	// The kernel package is shared with the VM test tier (build/vm/kernel).
	kernel, err := vm.FindKernel(b.ctx, filepath.Join(root, "build", "vm", "kernel"))
	if err != nil {
		return fmt.Errorf("the VM's kernel (Debian's linux-image-amd64, fetched with apt-get download into build/vm/kernel): %w", err)
	}
	dir := filepath.Join(root, "build", "vm-bench")
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	benchBin := filepath.Join(dir, "bin", "bench")
	fmt.Fprintf(os.Stderr, "  building the VM image (Linux %s) in %s ...\n", kernel.Version, dir)
	cmd := exec.CommandContext(b.ctx, harness.GoTool(), "build", "-o", benchBin, "./test/bench")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./test/bench for the VM: %w\n%s", err, out)
	}
	builder := &vm.Builder{ModuleRoot: root, Dir: dir, Kernel: kernel, Extra: map[string]string{
		guestBench:  benchBin,
		guestRefsup: b.refsup,
		strings.TrimPrefix(vm.GuestRootfs, "/") + "/callbench": b.callbench,
	}}
	img, err := builder.Build(b.ctx)
	if err != nil {
		return fmt.Errorf("building the VM image: %w", err)
	}
	built := time.Since(start)
	fmt.Fprintf(os.Stderr, "  booting it in qemu (TCG, %d vCPUs): %d rounds of %d calls per figure ...\n", vmCPUs, rounds, calls)
	busy0, qemu0 := hostBusy(), childrenCPU()
	res, err := vm.RunCommand(b.ctx, vm.CommandOptions{
		Qemu:      "qemu-system-x86_64",
		Image:     img,
		Dir:       dir,
		Command:   fmt.Sprintf("/%s -guest -vm-rounds %d -vm-calls %d", guestBench, rounds, calls),
		CPUs:      vmCPUs,
		MemoryMiB: vmMemoryMiB,
		Cmdline:   vmClock,
		Timeout:   vmTimeout,
		Silence:   vmSilence,
		Progress:  func(line string) { fmt.Fprintf(os.Stderr, "  vm| %s\n", line) },
	})
	if err != nil {
		return err
	}
	// The VM's noise: the host's CPUs busy with anything but this qemu
	// (the only child process meanwhile) take its vCPUs' threads away.
	others := max(0, ((hostBusy()-busy0)-(childrenCPU()-qemu0)).Seconds()/res.Took.Seconds())
	if res.ExitCode != 0 {
		return fmt.Errorf("the bench in the VM exited with status %d (console: %s, the agent's log: %s)",
			res.ExitCode, filepath.Join(dir, "console.log"), filepath.Join(dir, "run", "agent.log"))
	}
	g, err := parseGuest(res.Output)
	if err == nil && len(g.medians["agent/sysinfo"]) != rounds {
		err = fmt.Errorf("%d rounds, not the %d asked for", len(g.medians["agent/sysinfo"]), rounds)
	}
	if err != nil {
		return fmt.Errorf("the bench's output in the VM (%s): %w", filepath.Join(dir, "run", "command.out"), err)
	}
	b.vmRows(g, rounds, calls, built, res.Took, others)
	return nil
}

// vmRows adds the VM's figures, labelled "<kernel> VM (<mode>)".
func (b *bench) vmRows(g *guestRun, rounds, calls int, built, took time.Duration, others float64) {
	label := g.label()
	ref := "ref-" + g.mode
	b.notes = append(b.notes, fmt.Sprintf("%s: Linux %s in qemu (TCG, no KVM: every figure is many times the host's, only ratios count), "+
		"%d vCPUs keeping time with the TSC (vmClock), cgroup %s, the same runc containers; best median of %d rounds of %d calls; VM run %s (boot to poweroff) after a %s image build; "+
		"other work on the host meanwhile: %.1f of its %d CPUs (it slows the vCPUs unevenly: the ratios move with it)",
		label, g.kernel, g.cpus, g.cgroup, rounds, calls, took.Round(time.Second), built.Round(time.Second), others, runtime.NumCPU()))
	for _, sc := range []string{"sysinfo", "affinity"} {
		name := map[string]string{"sysinfo": "sysinfo", "affinity": "sched_getaffinity"}[sc]
		native, r, agent := g.best("native/"+sc), g.best(ref+"/"+sc), g.best("agent/"+sc)
		b.add(row{figure: label + ": native " + name + " (no filter)", value: us(native)})
		b.add(row{figure: label + ": C reference, " + g.mode + ": " + name, value: us(r),
			ref: us(native), ratio: ratio(r/native) + " native"})
		lo, hi := g.spread("agent/"+sc, ref+"/"+sc)
		q := agent / r
		b.add(row{figure: label + ": agent, tight loop: " + name + " (median)", value: us(agent),
			ref:   fmt.Sprintf("%s %s (per round %.2f–%.2f×)", us(r), ref, lo, hi),
			ratio: ratio(q), target: "≤ 1.5×", ok: verdict(q <= 1.5)})
		if sc == "sysinfo" {
			b.countersRows(label+":", agent, r, g.best(ref+counters+"/sysinfo"), ref)
		}
		// What the agent's CPU went to: callbench makes calls + calls/10
		// + 100 calls per run (its warm-up included).
		if cpu, ok := g.average(g.agentCPU, "agent/"+sc); ok {
			perCall := cpu / float64(calls+calls/10+100)
			mean, _ := g.average(g.means, "agent/"+sc)
			refMean, _ := g.average(g.means, ref+"/"+sc)
			b.add(row{figure: label + ":   agent CPU per call, all threads (mean of rounds)", value: us(perCall),
				ref: fmt.Sprintf("mean call %s (%s: %s)", us(mean), ref, us(refMean))})
		}
	}
}

// average is the mean over rounds of m[key]; false if the guest printed
// none.
func (g *guestRun) average(m map[string][]float64, key string) (float64, bool) {
	v := m[key]
	if len(v) == 0 {
		return 0, false
	}
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v)), true
}

// guestRun is what the bench printed in the VM.
type guestRun struct {
	kernel string // uname -r
	mode   string // the reference's wake-up mode there: "sync" or "plain"
	cgroup string // "v2" or "v1"
	cpus   int
	// medians holds each round's median, in round order, by
	// "supervisor/syscall" (native, agent, ref-<mode>; sysinfo, affinity);
	// means the mean calls and agentCPU the agent's CPU time (ns, all
	// its threads) during each run, when the guest printed them.
	medians, means, agentCPU map[string][]float64
}

// parseGuest reads the guest's stdout: "key=value" header lines, then one
// "tight round=R sup=S call=C median_ns=N" line per container run. Every
// supervisor must have a median for both calls in every round.
func parseGuest(out string) (*guestRun, error) {
	g := &guestRun{medians: map[string][]float64{}, means: map[string][]float64{}, agentCPU: map[string][]float64{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "tight "); ok {
			kv := map[string]string{}
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				kv[k] = v
			}
			round, err := strconv.Atoi(kv["round"])
			if err != nil {
				return nil, fmt.Errorf("%q: round: %w", line, err)
			}
			ns, err := strconv.ParseFloat(kv["median_ns"], 64)
			if err != nil || ns <= 0 {
				return nil, fmt.Errorf("%q: no positive median_ns", line)
			}
			key := kv["sup"] + "/" + kv["call"]
			if len(g.medians[key]) != round-1 {
				return nil, fmt.Errorf("%q: round %d after %d rounds of %s", line, round, len(g.medians[key]), key)
			}
			g.medians[key] = append(g.medians[key], ns)
			for k, m := range map[string]map[string][]float64{"mean_ns": g.means, "agent_cpu_ns": g.agentCPU} {
				if v, err := strconv.ParseFloat(kv[k], 64); err == nil {
					m[key] = append(m[key], v)
				}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		switch {
		case !ok:
		case k == "kernel":
			g.kernel = v
		case k == "mode":
			g.mode = v
		case k == "cgroup":
			g.cgroup = v
		case k == "cpus":
			g.cpus, _ = strconv.Atoi(v)
		}
	}
	if g.kernel == "" || (g.mode != "sync" && g.mode != "plain") {
		return nil, fmt.Errorf("no kernel= and mode=sync|plain lines in:\n%s", out)
	}
	rounds := -1
	for _, sup := range []string{"native", "agent", "ref-" + g.mode, "ref-" + g.mode + counters} {
		for _, call := range []string{"sysinfo", "affinity"} {
			if strings.HasSuffix(sup, counters) && call != "sysinfo" {
				continue
			}
			n := len(g.medians[sup+"/"+call])
			if n == 0 || (rounds >= 0 && n != rounds) {
				return nil, fmt.Errorf("%s/%s: %d rounds (others: %d)", sup, call, n, rounds)
			}
			rounds = n
		}
	}
	return g, nil
}

// label names the VM's rows after its kernel and wake-up mode: "6.1 VM (plain)".
func (g *guestRun) label() string {
	v := g.kernel
	if parts := strings.SplitN(v, ".", 3); len(parts) >= 2 {
		v = parts[0] + "." + parts[1]
	}
	return v + " VM (" + g.mode + ")"
}

// best is the smallest of key's medians.
func (g *guestRun) best(key string) float64 { return slices.Min(g.medians[key]) }

// spread is the lowest and highest ratio a/ref within one round.
func (g *guestRun) spread(a, ref string) (lo, hi float64) {
	for i, v := range g.medians[a] {
		q := v / g.medians[ref][i]
		if i == 0 || q < lo {
			lo = q
		}
		if i == 0 || q > hi {
			hi = q
		}
	}
	return lo, hi
}

// runGuest is the bench inside the VM (-guest): refsup in the kernel's
// best wake-up mode, the agent in its default mode, and rounds of tight
// loops, one stdout line per run (parseGuest) and progress on stderr (the
// console, which the host follows).
func runGuest(rounds, calls int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{ctx: ctx, rootfs: vm.GuestRootfs, refsup: "/" + guestRefsup, sockets: map[string]string{"native": ""}}
	var err error
	if b.tmp, err = os.MkdirTemp("", "seccompagent-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	defer harness.RemoveCgroupParent()
	mode := "plain"
	if exec.Command(b.refsup, "--probe").Run() == nil {
		mode = "sync"
	}
	for _, m := range []string{mode, mode + counters} {
		sock := filepath.Join(b.tmp, "ref-"+m+".sock")
		ref, err := startRef(ctx, b.refsup, sock, m)
		if err != nil {
			return err
		}
		defer stopProcess(ref)
		b.sockets["ref-"+m] = sock
	}
	b.agent, err = harness.StartAgentWith(ctx, vm.GuestAgent, filepath.Join(b.tmp, "agent.sock"),
		harness.AgentOptions{Args: []string{"--log-level", "info"}})
	if err != nil {
		return err
	}
	defer func() {
		_ = b.agent.Stop()
		// The agent's log goes to the host with the results.
		if dir := os.Getenv("VM_RESULTS"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, "agent.log"), []byte(b.agent.Logs()), 0o644)
		}
	}()
	b.sockets["agent"] = b.agent.Socket
	// A run takes seconds to a minute under TCG; one that has not ended
	// after stuckAfter is stuck (so far only ever with the agent): say
	// where, before its timeout kills the container.
	b.stuckAfter = guestStuckAfter
	b.stuck = func() { reportStuck(b.agent) }

	var uts unix.Utsname
	_ = unix.Uname(&uts)
	cg := "v1"
	if harness.CgroupUnified() {
		cg = "v2"
	}
	fmt.Printf("kernel=%s\nmode=%s\ncgroup=%s\ncpus=%d\n", unix.ByteSliceToString(uts.Release[:]), mode, cg, runtime.NumCPU())
	start := time.Now()
	// The agent's CPU time since the previous run: its cost for the calls
	// of an agent run, its idle background otherwise.
	cpu0 := must(b.agentCPU())
	err = b.tightRounds(rounds, calls, []string{"native", "agent", "ref-" + mode, "ref-" + mode + counters}, func(r int, sup, sc string, p harness.Probe) error {
		med, err := p.Int("tight_median_ns")
		if err != nil {
			return err
		}
		mean, _ := p.Int("tight_mean_ns")
		cpu := must(b.agentCPU())
		fmt.Printf("tight round=%d sup=%s call=%s median_ns=%d mean_ns=%d agent_cpu_ns=%d\n", r+1, sup, sc, med, mean, cpu-cpu0)
		fmt.Fprintf(os.Stderr, "vm-bench: round %d/%d %s %s: median %s, mean %s (%s)\n",
			r+1, rounds, sup, sc, us(float64(med)), us(float64(mean)), time.Since(start).Round(time.Second))
		cpu0 = cpu
		return nil
	})
	if exited, werr := b.agent.Exited(); exited {
		err = errors.Join(err, fmt.Errorf("the agent exited during the bench: %v\n%s", werr, b.agent.Logs()))
	}
	return err
}

// reportStuck prints, on the guest's stderr (the console), the state, wait
// channel, syscall (/proc/<tid>/syscall: number and arguments) and kernel
// stack of every callbench thread, then sends the agent SIGQUIT: the Go
// runtime writes every goroutine's stack to its log (which the host gets)
// and exits, so that the run ends.
func reportStuck(a *harness.Agent) {
	say := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "vm-bench: stuck: "+format+"\n", args...) }
	say("a container has run for %v", guestStuckAfter)
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*")
	for _, t := range tasks {
		if comm, _ := os.ReadFile(filepath.Join(t, "comm")); strings.TrimSpace(string(comm)) != "callbench" {
			continue
		}
		read := func(name string) string {
			data, err := os.ReadFile(filepath.Join(t, name))
			if err != nil {
				return err.Error()
			}
			return strings.TrimSpace(string(data))
		}
		state := ""
		for _, line := range strings.Split(read("status"), "\n") {
			if strings.HasPrefix(line, "State:") {
				state = strings.TrimSpace(strings.TrimPrefix(line, "State:"))
			}
		}
		say("%s: state %s, wchan %s, syscall %s", t, state, read("wchan"), read("syscall"))
		for _, line := range strings.Split(read("stack"), "\n") {
			say("%s:   %s", t, line)
		}
	}
	if exited, _ := a.Exited(); !exited {
		say("SIGQUIT to the agent (pid %d): its goroutines go to its log", a.Pid())
		_ = syscall.Kill(a.Pid(), syscall.SIGQUIT)
	}
}

// hostBusy is the time the host's CPUs have spent busy (/proc/stat: all
// but idle and iowait), 0 if unreadable.
func hostBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 0
	}
	busy, _ := parseProcStatBusy(string(data), clockTick(auxv))
	return busy
}

// clockTick is the USER_HZ /proc/stat counts in: AT_CLKTCK of an auxv
// (pairs of native words), 0 if absent.
func clockTick(auxv []byte) int64 {
	const atClkTck = 17
	for i := 0; i+16 <= len(auxv); i += 16 {
		if binary.NativeEndian.Uint64(auxv[i:]) == atClkTck {
			return int64(binary.NativeEndian.Uint64(auxv[i+8:]))
		}
	}
	return 0
}

// parseProcStatBusy reads the "cpu" line of /proc/stat (ticks of hz:
// user nice system idle iowait irq softirq steal, guest time already
// counted in user) and returns the busy time.
func parseProcStatBusy(stat string, hz int64) (time.Duration, error) {
	if hz <= 0 {
		return 0, errors.New("no clock tick rate (AT_CLKTCK)")
	}
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: no cpu line: %q", line)
	}
	var busy int64
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / time.Duration(hz), nil
}

// childrenCPU is the CPU time of this process's waited-for children.
func childrenCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_CHILDREN, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// lockDir takes dir/.lock (flock, released when this process ends at the
// latest): two benches in one checkout would boot their VMs on the same
// image and results share.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another bench is running its VM in %s: wait for it to end", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}
