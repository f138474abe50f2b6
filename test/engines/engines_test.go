package engines

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

const (
	// imageName names the test image in every engine.
	imageName = "localhost/seccompagent-engines:test"
	// cgroupRoot holds every test container's cgroup (PARENT/<engine>-<id>/…).
	cgroupRoot = "/seccompagent-engines"

	engineTimeout    = 2 * time.Minute
	containerTimeout = 90 * time.Second

	// The container's process: the probe, then the denied syscall, into
	// a file on a bind mount rather than through the engine's stdout.
	// containerd 1.6 loses a short-lived container's last output now and
	// then (the shim reports the exit and ctr deletes the task before the
	// shim has copied the last write to ctr's FIFO: seen here as a
	// missing denied_ret line once in ~30 runs); a file is complete
	// when the process has exited.
	probeScript = "{ /probe; /denied; } >" + OutputMount + "/result 2>&1"
)

// Built once per test binary by TestMain (as root).
var (
	workDir    string
	imageTar   string
	imageErr   error
	agentBin   string
	agentErr   error
	wrapperBin string
	wrapperErr error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "seccompagent-engines-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "engines:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	if os.Geteuid() == 0 {
		// Failures are reported by the tests that need the result.
		imageTar, imageErr = buildImage(filepath.Join(workDir, "image"))
		bin := filepath.Join(workDir, "bin")
		agentBin, agentErr = harness.BuildAgent(bin)
		wrapperBin, wrapperErr = buildWrapper(bin)
	}
	code := m.Run()
	removeCgroup(cgroupRoot)
	return code
}

// buildImage builds the test rootfs (busybox, /probe) plus /denied into
// dir/rootfs and writes dir/image.tar from it.
func buildImage(dir string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	if err := harness.BuildRootfs(rootfs); err != nil {
		return "", err
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "musl-gcc", "-static", "-O2", "-Wall", "-o", filepath.Join(rootfs, "denied"),
		filepath.Join(root, "test", "engines", "denied.c"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("musl-gcc denied.c (needs musl-tools): %w\n%s", err, out)
	}
	tarball := filepath.Join(dir, "image.tar")
	_, err = WriteImageFile(tarball, rootfs, imageName, ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/probe"}})
	return tarball, err
}

// buildWrapper builds ./oci-hook/cmd/seccompagent-runtime into dir.
func buildWrapper(dir string) (string, error) {
	root, err := harness.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "seccompagent-runtime")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.GoTool(), "build", "-o", bin, "./oci-hook/cmd/seccompagent-runtime")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the wrapper: %w\n%s", err, out)
	}
	return bin, nil
}

// removeCgroup rmdirs the cgroup path (and the sub-cgroups the engines left
// empty) in every hierarchy; it fails when one still holds processes.
func removeCgroup(path string) error {
	var err error
	b := &harness.Bundle{CgroupsPath: path}
	for i := 0; i < 20; i++ {
		if err = b.CleanupCgroups(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// requireEngine skips (fails under CI=true) unless this is root with the
// commands, and fails when what TestMain built is missing.
func requireEngine(t *testing.T, cmds ...string) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, c := range append([]string{"unshare", "nsenter", "musl-gcc", "runc"}, cmds...) {
		testenv.RequireCommand(t, c)
	}
	_, err := os.Stat("/bin/busybox")
	testenv.Require(t, err == nil, "/bin/busybox not found: install busybox-static (`make deps`)")
	if imageErr != nil {
		t.Fatalf("test image did not build: %v", imageErr)
	}
	if agentErr != nil {
		t.Fatalf("agent did not build: %v", agentErr)
	}
	if wrapperErr != nil {
		t.Fatalf("wrapper runtime did not build: %v", wrapperErr)
	}
}

// hostPaths are paths an engine creates by default on the host; none may
// appear because of these tests.
var hostPaths = []string{
	"/run/containerd", "/run/docker", "/run/docker.sock", "/run/libpod", "/run/containers",
	"/var/lib/containerd", "/var/lib/docker", "/var/lib/containers",
	"/etc/containers/networks", "/etc/cni/net.d/cni.lock", "/etc/docker/key.json",
	"/opt/containerd", "/dev/shm/libpod_lock", "/root/.docker",
}

func existing(paths []string) map[string]bool {
	m := map[string]bool{}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			m[p] = true
		}
	}
	return m
}

// mode is one container an engine runs.
type mode struct {
	name string
	opts RunOptions
	// want is what the probe must see: the container's limits (the agent
	// answered), the host's, or the host's without a seccomp filter at all.
	want want
}

type want int

const (
	wantLimits want = iota
	wantHost
	wantUnconfined
)

// engineTest is one engine's end-to-end test.
type engineTest struct {
	name string
	// cmds are the commands the engine needs on PATH.
	cmds  []string
	start func(ctx context.Context, cfg Config) (Engine, error)
	modes []mode
	// deniedErrno is the errno the engine's default seccomp profile gives
	// add_key(2) (its defaultErrnoRet).
	deniedErrno int64
}

func (et engineTest) run(t *testing.T) {
	requireEngine(t, et.cmds...)
	before := existing(hostPaths)
	hostCPUs, err := harness.HostOnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	hostMem, err := harness.HostMemTotal()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	agentDir := t.TempDir()
	agent, err := harness.StartAgent(ctx, agentBin, filepath.Join(agentDir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := agent.Stop(); err != nil {
			t.Errorf("agent: %v\n%s", err, agent.Logs())
		}
	})

	cfg := Config{
		Dir:          t.TempDir(),
		Wrapper:      wrapperBin,
		AgentSocket:  agent.Socket,
		CgroupParent: cgroupRoot + "/" + et.name + "-" + harness.UniqueID(),
	}
	start := time.Now()
	e, err := et.start(ctx, cfg)
	if err != nil {
		t.Fatalf("start %s: %v", et.name, err)
	}
	t.Logf("%s started in %v", et.name, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { et.cleanup(t, e, cfg, before) })

	start = time.Now()
	if err := e.Load(ctx, imageTar, imageName); err != nil {
		t.Fatalf("load the image into %s: %v", et.name, err)
	}
	t.Logf("image loaded in %v", time.Since(start).Round(time.Millisecond))

	for _, m := range et.modes {
		t.Run(m.name, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(context.Background(), containerTimeout)
			defer ccancel()
			opts := m.opts
			opts.Args = []string{"sh", "-c", probeScript}
			opts.OutputDir = t.TempDir()
			start := time.Now()
			stdout, stderr, err := e.Run(cctx, imageName, opts)
			elapsed := time.Since(start)
			result, rerr := os.ReadFile(filepath.Join(opts.OutputDir, "result"))
			out := string(result)
			if err != nil {
				t.Fatalf("%s run: %v\nresult:\n%s\nstdout:\n%s\nstderr:\n%s\n%s", et.name, err, out, stdout, stderr, tail(agent.Logs()))
			}
			if rerr != nil {
				t.Fatalf("the container wrote no result: %v\nstdout:\n%s\nstderr:\n%s", rerr, stdout, stderr)
			}
			t.Logf("container ran in %v", elapsed.Round(time.Millisecond))
			r, err := parseResult(out)
			if err != nil {
				t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
			}
			var errs []string
			switch m.want {
			case wantLimits:
				errs = r.check(1, MemoryLimit, et.deniedErrno)
			case wantHost:
				errs = r.check(int64(hostCPUs), hostMem, et.deniedErrno)
			case wantUnconfined:
				errs = r.check(int64(hostCPUs), hostMem, 0)
			}
			for _, e := range errs {
				t.Errorf("%s %s: %s", et.name, m.name, e)
			}
			if t.Failed() {
				t.Logf("probe output:\n%s\nstderr:\n%s\n%s", out, stderr, tail(agent.Logs()))
			}
		})
	}
}

// cleanup stops the engine and checks that it left nothing behind: no
// runtime state, no process, no cgroup, no mount, no host path.
func (et engineTest) cleanup(t *testing.T, e Engine, cfg Config, before map[string]bool) {
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Errorf("stop %s: %v", et.name, err)
	}
	t.Logf("%s stopped in %v", et.name, time.Since(start).Round(time.Millisecond))
	if left := e.LeftoverRuntimeState(); len(left) > 0 {
		t.Errorf("%s left runtime state of containers it did not delete: %s", et.name, strings.Join(left, ", "))
	}
	if err := removeCgroup(cfg.CgroupParent); err != nil {
		t.Errorf("cgroups of %s: %v", et.name, err)
	}
	if mounts := mountsUnder(cfg.Dir); len(mounts) > 0 {
		t.Errorf("mounts left on the host under %s: %s", cfg.Dir, strings.Join(mounts, ", "))
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	for p := range existing(hostPaths) {
		if !before[p] {
			t.Errorf("%s appeared on the host during the %s test", p, et.name)
		}
	}
}

// mountsUnder lists this mount namespace's mount points under dir.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// result is what the probe and /denied printed.
type result struct {
	nprocs, affinity       int64
	physBytes, ramBytes    uint64
	deniedRet, deniedErrno int64
}

func parseResult(out string) (result, error) {
	p := harness.ParseProbe(out)
	var r result
	var err error
	get := func(key string) int64 {
		n, e := p.Int(key)
		if e != nil && err == nil {
			err = e
		}
		return n
	}
	r.nprocs = get("nprocs_onln")
	r.affinity = get("affinity_count")
	r.physBytes = uint64(get("phys_pages")) * uint64(get("pagesize"))
	r.ramBytes = uint64(get("totalram")) * uint64(get("mem_unit"))
	r.deniedRet = get("denied_ret")
	r.deniedErrno = get("denied_errno")
	return r, err
}

// check compares the result with the expected CPU count, memory size and
// add_key errno (0: the call must succeed).
func (r result) check(cpus int64, mem uint64, errno int64) []string {
	var errs []string
	if r.nprocs != cpus {
		errs = append(errs, fmt.Sprintf("sysconf(_SC_NPROCESSORS_ONLN) = %d, want %d", r.nprocs, cpus))
	}
	if r.affinity != cpus {
		errs = append(errs, fmt.Sprintf("sched_getaffinity: %d CPUs, want %d", r.affinity, cpus))
	}
	if r.physBytes != mem {
		errs = append(errs, fmt.Sprintf("sysconf(_SC_PHYS_PAGES)*pagesize = %d, want %d", r.physBytes, mem))
	}
	if r.ramBytes != mem {
		errs = append(errs, fmt.Sprintf("sysinfo totalram*mem_unit = %d, want %d", r.ramBytes, mem))
	}
	switch {
	case errno == 0 && (r.deniedRet < 0 || r.deniedErrno != 0):
		errs = append(errs, fmt.Sprintf("add_key without seccomp = %d (errno %d), want success", r.deniedRet, r.deniedErrno))
	case errno != 0 && (r.deniedRet != -1 || r.deniedErrno != errno):
		errs = append(errs, fmt.Sprintf("add_key = %d (errno %d), want -1 errno %d from the engine's seccomp profile", r.deniedRet, r.deniedErrno, errno))
	}
	return errs
}

func tail(s string) string {
	const n = 3000
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return "--- agent log (end) ---\n" + s
}

const (
	eperm  = 1  // docker's and containerd's default profile
	enosys = 38 // podman's default profile
)

var enable = map[string]string{"seccompagent.io/enable": "true"}

// TestPodman: podman 4.3 with the wrapper as --runtime and its socket as
// --runtime-flag; the annotation (or the environment) turns it on.
func TestPodman(t *testing.T) {
	engineTest{
		name:  "podman",
		cmds:  []string{"podman", "conmon"},
		start: func(_ context.Context, cfg Config) (Engine, error) { return NewPodman(cfg) },
		modes: []mode{
			{"annotation", RunOptions{Annotations: enable}, wantLimits},
			{"env", RunOptions{Env: []string{"SECCOMPAGENT_ENABLE=true"}}, wantLimits},
			{"disabled", RunOptions{}, wantHost},
			{"unconfined", RunOptions{Unconfined: true}, wantUnconfined},
		},
		deniedErrno: enosys,
	}.run(t)
}

// TestContainerd: a private containerd 1.6 and ctr run --runc-binary with
// ctr's default seccomp profile; ctr 1.6 sets annotations and env.
func TestContainerd(t *testing.T) {
	engineTest{
		name: "containerd",
		cmds: []string{"containerd", "ctr", "containerd-shim-runc-v2"},
		start: func(ctx context.Context, cfg Config) (Engine, error) {
			return StartContainerd(ctx, cfg, nil)
		},
		modes: []mode{
			{"annotation", RunOptions{Annotations: enable}, wantLimits},
			{"env", RunOptions{Env: []string{"SECCOMPAGENT_ENABLE=true"}}, wantLimits},
			{"disabled", RunOptions{}, wantHost},
			{"unconfined", RunOptions{Unconfined: true}, wantUnconfined},
		},
		deniedErrno: eperm,
	}.run(t)
}

// TestDocker: a private dockerd 20.10 with the wrapper as runtime
// "seccompagent" in daemon.json; docker passes no annotations, so the
// environment turns it on.
func TestDocker(t *testing.T) {
	engineTest{
		name: "docker",
		cmds: []string{"dockerd", "docker", "containerd", "containerd-shim-runc-v2"},
		start: func(ctx context.Context, cfg Config) (Engine, error) {
			return StartDocker(ctx, cfg)
		},
		modes: []mode{
			{"env", RunOptions{Env: []string{"SECCOMPAGENT_ENABLE=true"}}, wantLimits},
			{"disabled", RunOptions{}, wantHost},
			{"unconfined", RunOptions{Unconfined: true}, wantUnconfined},
		},
		deniedErrno: eperm,
	}.run(t)
}
