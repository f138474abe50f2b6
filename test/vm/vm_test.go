package vm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

const (
	// vmTimeout is the hard limit for one VM run (boot + tests); qemu is
	// killed by its pid after it.
	vmTimeout   = 14 * time.Minute
	vmCPUs      = 2 // the with-agent tests need more CPUs than the quota allows
	vmMemoryMiB = 2048
	// vmSilence: a console quiet this long (the guest's init prints a
	// heartbeat every 15 s) means the guest stalled.
	vmSilence = 2 * time.Minute
)

// Settings (environment of `go test ./test/vm/`).
const (
	// envRun / envSkip override the e2e tests run in the VM (-test.run /
	// -test.skip regexps).
	envRun  = "SECCOMPAGENT_VM_RUN"
	envSkip = "SECCOMPAGENT_VM_SKIP"
)

// defaultGroups are the e2e tests run in the VM, one test process per
// group, all at once (the exec tests spend most of their time waiting):
// the limits assertions of the v1 tier for runc and crun, with and
// without the agent, `exec` included, views that change underneath (nested
// cgroups, live updates), annotations, hostile peers, restarts,
// `seccompagent exec` in a plain cgroup and the pairing with LXCFS (lxcfs
// and the fuse module are in the image).
var defaultGroups = []string{
	"^(TestControlWithoutAgent|TestWithAgent)$",
	"^TestExecWithoutAgent$/^runc$",
	"^TestExecWithoutAgent$/^crun$",
	"^TestExecWithAgent$/^runc$",
	"^TestExecWithAgent$/^crun$",
	"^(TestNestedCgroup|TestLiveUpdate)$",
	"^(TestCPUsAnnotation|TestHostileConnections)$",
	"^TestSignalStorm$",
	"^(TestRestart|TestRestartMidNotification|TestHolderKilled|TestCreatedWhileAgentDown|TestSystemdFDStore)$",
	"^TestSeccompagentExec(I386)?$",
	// pid≠0 through /proc NSpid (6.1 has no NS_GET_PID_FROM_PIDNS), i386
	// callers included, time namespaces and a cgroup path reused.
	"^(TestAffinityPids|TestUptimeTimeNamespace|TestCgroupPathReuse)$",
	"^(TestLXCFSConformance|TestLXCFSRequired|TestLXCFSRestart|TestLXCFSLoadAverage)$",
}

// lateGroups run once defaultGroups are all done, all at once: the
// consumer matrix (the host's python3, node and java from its /usr, shared
// read-only) and the LXCFS pairing of its programs. Their 9p reads and JVM
// starts keep both emulated CPUs busy, which would disturb the first
// wave's timing checks (load averages, live updates within a second).
var lateGroups = []string{"^TestConsumers$", "^TestLXCFSPairing$"}

// defaultSkip: every test the groups select runs.
const defaultSkip = ""

// notifyRun selects the notify package's kernel tests, run in the VM
// before the e2e groups on every run (whatever SECCOMPAGENT_VM_RUN says):
// the host may lack a kernel feature they need, and then skips them.
const notifyRun = "^TestKernel"

// notifyRequired must each report PASS in the VM on every run (the host
// parses notify.out into "notify:<test>" results).
var notifyRequired = []string{
	"notify:TestKernelHandlers/agent", "notify:TestKernelHandlers/poll",
	"notify:TestKernelCallerKilledMidNotification",
	"notify:TestKernelProbeFeatures", "notify:TestKernelLoopEndsWithContainer",
	"notify:TestKernelCompatI386",
	"notify:TestKernelWrites/sysinfo_straddle", "notify:TestKernelWrites/sysinfo_readonly",
	"notify:TestKernelWrites/sysinfo_unmapped", "notify:TestKernelWrites/aff_straddle",
	"notify:TestKernelWrites/sysinfo_below_stack", "notify:TestKernelWrites/sysinfo_maps60k",
	"notify:TestKernelWrites/maps60k_agent_answer", "notify:TestKernelWrites/readonly_race",
	"notify:TestKernelWrites/sysinfo_x32", "notify:TestKernelWrites/x32_agent_answer",
	"notify:TestKernelWrites/sysinfo_memfd_secret",
	// 6.1 takes the poll path: several receivers, the shared Poller, Stop.
	"notify:TestKernelReceivers/poll/4", "notify:TestKernelReceivers/poller/4",
	"notify:TestKernelStopHandsOver/poll", "notify:TestKernelStopHandsOver/poller",
}

// required must each report PASS (not SKIP) with the default selection.
var required = []string{
	"TestControlWithoutAgent/runc", "TestControlWithoutAgent/crun",
	"TestWithAgent/runc", "TestWithAgent/crun",
	"TestExecWithoutAgent/runc", "TestExecWithoutAgent/crun",
	"TestExecWithAgent/runc", "TestExecWithAgent/crun",
	"TestNestedCgroup", "TestLiveUpdate/runc", "TestLiveUpdate/crun",
	"TestCPUsAnnotation", "TestHostileConnections",
	"TestSignalStorm/runc", "TestSignalStorm/crun",
	"TestRestart/sigkill", "TestRestart/sigterm", "TestRestart/upgrade",
	"TestRestartMidNotification/runc", "TestRestartMidNotification/crun",
	"TestHolderKilled", "TestCreatedWhileAgentDown/runc", "TestCreatedWhileAgentDown/crun",
	"TestSystemdFDStore",
	"TestSeccompagentExec", "TestSeccompagentExecI386",
	"TestAffinityPids/runc/amd64", "TestAffinityPids/runc/i386",
	"TestAffinityPids/crun/amd64", "TestAffinityPids/crun/i386",
	"TestUptimeTimeNamespace/runc", "TestUptimeTimeNamespace/crun",
	"TestCgroupPathReuse/runc", "TestCgroupPathReuse/crun",
	"TestLXCFSConformance/runc", "TestLXCFSConformance/crun", "TestLXCFSRequired/runc", "TestLXCFSRequired/crun",
	"TestLXCFSRestart", "TestLXCFSLoadAverage/runc", "TestLXCFSLoadAverage/crun",
	"TestConsumers", "TestLXCFSPairing/runc", "TestLXCFSPairing/crun",
}

// TestCgroupV2VM boots Debian's kernel with cgroup_no_v1=all in qemu
// (TCG) and runs the e2e tier's limits tests in it for runc and crun.
func TestCgroupV2VM(t *testing.T) {
	testenv.RequireRoot(t)
	qemu := testenv.RequireCommand(t, "qemu-system-x86_64")
	for _, c := range []string{"runc", "crun", "jq", "depmod", "ldd", "musl-gcc", "gcc", "lxcfs", "apt-get", "dpkg-deb"} {
		testenv.RequireCommand(t, c)
	}
	// The consumer matrix runs the host's own programs in the VM (its
	// /usr is shared read-only).
	for _, p := range []struct{ path, pkg string }{
		{"/usr/bin/python3", "python3"}, {"/usr/bin/node", "nodejs"}, {harness.HostJava, "openjdk-17-jre-headless"},
	} {
		_, err := harness.HostProgram(p.path, p.pkg)
		testenv.Require(t, err == nil, fmt.Sprint(err))
	}
	_, err := os.Stat("/bin/busybox")
	testenv.Require(t, err == nil, "/bin/busybox not found: install busybox-static (`make deps`)")
	_, err = exec.LookPath(goTool())
	testenv.Require(t, err == nil, "go not found: install Go >= 1.26 at /usr/local/go")

	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "build", "vm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Debian's kernel, unpacked into build/vm/kernel (the host's /boot is
	// never touched). A download that fails is a failure, not a skip:
	// apt-get and dpkg-deb are there (checked above).
	kernel, err := FindKernel(context.Background(), filepath.Join(dir, "kernel"))
	if err != nil {
		t.Fatalf("the VM's kernel: %v", err)
	}
	b := &Builder{ModuleRoot: root, Dir: dir, Kernel: kernel, Logf: t.Logf, Consumers: true}
	buildStart := time.Now()
	img, err := b.Build(context.Background())
	if err != nil {
		t.Fatalf("building the VM image: %v", err)
	}
	var steps []string
	for _, s := range img.Steps {
		steps = append(steps, fmt.Sprintf("%s %v", s.Name, s.Took.Round(time.Millisecond)))
	}
	t.Logf("kernel %s (%s); build %v (%s); initramfs reused: %v",
		kernel.Version, kernel.Image, time.Since(buildStart).Round(time.Millisecond), strings.Join(steps, ", "), img.Reused)

	// The 9p share: settings in, results out. Only this directory's
	// own files are removed.
	run := filepath.Join(dir, "run")
	if err := os.RemoveAll(run); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	// Leave time to report before `go test -timeout` panics, and give the
	// e2e binary a deadline of its own, so that a stuck test reports
	// where it is stuck before the VM is killed.
	limit := vmTimeout
	if d, ok := t.Deadline(); ok {
		limit = min(limit, time.Until(d)-30*time.Second)
	}
	inVMTimeout := max(limit-time.Minute, time.Minute)

	groups, late, skipRe := defaultGroups, lateGroups, defaultSkip
	custom := false
	if v := os.Getenv(envRun); v != "" {
		groups, late, custom = []string{v}, nil, true
	}
	if v, ok := os.LookupEnv(envSkip); ok {
		skipRe = v
	}
	// CI=true in the VM: a test there that finds a prerequisite missing
	// fails instead of skipping (everything it needs is in the image).
	env := fmt.Sprintf("VM_TEST_SKIP=%s\nVM_TEST_TIMEOUT=%s\nVM_CI=true\nVM_CGROUP_PARENT=%s\nVM_NOTIFY_RUN=%s\n",
		shellQuote(skipRe), shellQuote(inVMTimeout.String()), shellQuote(harness.CgroupParent), shellQuote(notifyRun))
	if err := os.WriteFile(filepath.Join(run, "vm.env"), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "groups"), []byte(strings.Join(groups, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "groups-after"), []byte(strings.Join(late, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(groups), late...) // e2e-N.out, in the order init numbers them

	console := filepath.Join(dir, "console.log")
	qemuLog := filepath.Join(dir, "qemu.log")
	opts := BootOptions{
		Qemu:       qemu,
		Kernel:     kernel.Image,
		Initramfs:  img.Initramfs,
		ResultsDir: run,
		HostUsr:    "/usr",
		ConsoleLog: console,
		QemuLog:    qemuLog,
		CPUs:       vmCPUs,
		MemoryMiB:  vmMemoryMiB,
		Silence:    vmSilence,
	}
	// A guest that stalls under TCG (ErrStalled: its heartbeat stopped)
	// is booted once more; the first console is kept for the record.
	bootStart := time.Now()
	var took time.Duration
	var bootErr error
	for attempt := 1; ; attempt++ {
		opts.Timeout = limit - time.Since(bootStart)
		took, bootErr = Boot(context.Background(), opts)
		if !errors.Is(bootErr, ErrStalled) || attempt == 2 {
			break
		}
		stalledLog := filepath.Join(dir, "console-stalled.log")
		_ = os.Rename(console, stalledLog)
		t.Logf("VM attempt %d: %v; console kept in %s; booting again", attempt, bootErr, stalledLog)
	}
	info, _ := os.ReadFile(filepath.Join(run, "vm-info"))
	t.Logf("VM run (boot + tests + poweroff) took %v; in the VM:\n%s", took.Round(time.Millisecond), info)
	var out strings.Builder // every group's output
	results := map[string]string{}
	notifyOut, _ := os.ReadFile(filepath.Join(run, "notify.out"))
	fmt.Fprintf(&out, "### notify kernel tests: -test.run %s\n%s", notifyRun, notifyOut)
	for name, r := range parseResults(string(notifyOut)) {
		results["notify:"+name] = r
	}
	for i := range all {
		o, _ := os.ReadFile(filepath.Join(run, fmt.Sprintf("e2e-%d.out", i+1)))
		fmt.Fprintf(&out, "### group %d: -test.run %s\n%s", i+1, all[i], o)
		maps.Copy(results, parseResults(string(o)))
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\n\ne2e output in the VM (%s/e2e-N.out), last lines:\n%s\n\nconsole (%s), last lines:\n%s\n\nqemu (%s):\n%s",
			fmt.Sprintf(format, args...), run, tail(out.String(), 200),
			console, tail(readFile(console), 60), qemuLog, tail(readFile(qemuLog), 20))
	}
	if bootErr != nil {
		fail("VM: %v", bootErr)
	}
	code, err := os.ReadFile(filepath.Join(run, "exit-code"))
	if err != nil {
		fail("the VM wrote no exit code: the tests did not run to completion")
	}
	var summary []string
	for _, name := range slices.Sorted(maps.Keys(results)) {
		summary = append(summary, name+" "+results[name])
	}
	t.Logf("e2e results in the cgroup v2 VM (%s):\n%s", kernel.Version, strings.Join(summary, "\n"))
	// The matrix's section is written whatever else failed in the VM, as
	// long as TestConsumers itself passed.
	writeConsumersV2(t, run, results["TestConsumers"])
	if c := strings.TrimSpace(string(code)); c != "0" {
		fail("the e2e tests failed in the VM (exit status %s)", c)
	}
	for _, name := range notifyRequired {
		if results[name] != "PASS" {
			fail("%s: %q in the VM, want PASS", name, results[name])
		}
	}
	if !custom {
		for _, name := range required {
			if results[name] != "PASS" {
				fail("%s: %q in the VM, want PASS", name, results[name])
			}
		}
	} else if len(results) == 0 {
		fail("no test ran in the VM for %s=%q", envRun, groups[0])
	}
}

// writeConsumersV2 puts the consumer matrix's cgroup v2 section, which
// TestConsumers wrote in the VM, into the document $SECCOMPAGENT_CONSUMERS_MD
// names (`make consumers`), keeping its cgroup v1 section, if TestConsumers
// passed there (result). Unset, nothing is written.
func writeConsumersV2(t *testing.T, run, result string) {
	t.Helper()
	path, err := harness.ConsumersMDPath()
	if err != nil {
		t.Error(err)
		return
	}
	if path == "" {
		return
	}
	if result != "PASS" {
		t.Errorf("%s is set but TestConsumers is %q in the VM (does %s select it?): %s keeps its %s section",
			harness.EnvConsumersMD, result, envRun, path, harness.SectionCgroupV2)
		return
	}
	doc, err := os.ReadFile(filepath.Join(run, "consumers.md"))
	if err == nil {
		if _, ok := harness.SectionBody(string(doc), harness.SectionCgroupV2); !ok {
			err = fmt.Errorf("no %s section in it", harness.SectionCgroupV2)
		}
	}
	if err == nil {
		err = harness.WriteConsumersDoc(path, string(doc), harness.SectionCgroupV1)
	}
	if err != nil {
		t.Errorf("the VM's consumers.md: %v", err)
		return
	}
	t.Logf("wrote the %s section of %s", harness.SectionCgroupV2, path)
}

var resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)

// parseResults maps each test name in `go test -v` output to PASS, FAIL or
// SKIP.
func parseResults(out string) map[string]string {
	r := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if m := resultLine.FindStringSubmatch(line); m != nil {
			r[m[2]] = m[1]
		}
	}
	return r
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
