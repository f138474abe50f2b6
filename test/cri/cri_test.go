package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/seccompagent/seccompagent/test/engines"
	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

const (
	pauseImage = "localhost/seccompagent-pause:test"
	probeImage = "localhost/seccompagent-cri:test"
	// agentImage is what `make image` builds and the DaemonSet runs.
	agentImage = "localhost/seccompagent:latest"
	// cgroupRoot holds every pod's cgroup (cgroupfs driver: the pod's
	// CgroupParent, then one cgroup per container id beneath it).
	cgroupRoot = "/seccompagent-cri"

	testTimeout      = 3 * time.Minute
	containerTimeout = 90 * time.Second

	// The limits of the test container, as kubelet passes a pod's
	// resources.limits (memory: 256Mi, cpu: 500m) with the CFS period it
	// always uses.
	memoryLimit = 256 << 20
	cpuQuota    = 50000
	cpuPeriod   = 100000
)

// Built once by TestMain (as root); failures are reported by the test.
var (
	workDir  string
	agentBin string
	wrapper  string
	images   map[string]string // image name → tarball
	buildErr error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	// Short: containerd's and the agent's sockets live beneath it.
	workDir, err = os.MkdirTemp("", "sa-cri-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cri:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	if os.Geteuid() == 0 && commandsPresent() {
		buildErr = build(filepath.Join(workDir, "build"))
	}
	code := m.Run()
	if err := removeCgroup(cgroupRoot); err != nil {
		fmt.Fprintln(os.Stderr, "cri: cgroups left:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func commandsPresent() bool {
	for _, c := range requiredCommands {
		if _, err := exec.LookPath(c); err != nil {
			return false
		}
	}
	return true
}

var requiredCommands = []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc", "unshare", "nsenter", "musl-gcc", "make"}

// build makes the agent, the wrapper, the probe image (the e2e test rootfs:
// busybox and /probe), the pause image (test/cri/pause/pause.c, static) and
// the agent's image (`make image`).
func build(dir string) error {
	var err error
	bin := filepath.Join(dir, "bin")
	if agentBin, err = harness.BuildAgent(bin); err != nil {
		return err
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	wrapper = filepath.Join(bin, "seccompagent-runtime")
	cmd := exec.CommandContext(ctx, harness.GoTool(), "build", "-o", wrapper, "./oci-hook/cmd/seccompagent-runtime")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the wrapper: %w\n%s", err, out)
	}

	probeRootfs := filepath.Join(dir, "probe-rootfs")
	if err := harness.BuildRootfs(probeRootfs); err != nil {
		return err
	}
	pauseRootfs := filepath.Join(dir, "pause-rootfs")
	if err := os.MkdirAll(pauseRootfs, 0o755); err != nil {
		return err
	}
	cmd = exec.CommandContext(ctx, "musl-gcc", "-static", "-O2", "-Wall", "-o", filepath.Join(pauseRootfs, "pause"),
		filepath.Join(root, "test", "cri", "pause", "pause.c"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("musl-gcc pause.c (needs musl-tools): %w\n%s", err, out)
	}
	images = map[string]string{}
	for _, img := range []struct {
		name, rootfs string
		cfg          engines.ImageConfig
	}{
		{pauseImage, pauseRootfs, engines.ImageConfig{Cmd: []string{"/pause"}}},
		{probeImage, probeRootfs, engines.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/probe"}}},
	} {
		tarball := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(img.name)+".tar")
		if _, err := engines.WriteImageFile(tarball, img.rootfs, img.name, img.cfg); err != nil {
			return err
		}
		images[img.name] = tarball
	}
	tarball := filepath.Join(dir, "agent-image.tar")
	cmd = exec.CommandContext(ctx, "make", "-s", "image", "IMAGE="+agentImage, "IMAGE_TAR="+tarball,
		"IMAGE_DIR="+filepath.Join(dir, "agent-image"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make image: %w\n%s", err, out)
	}
	images[agentImage] = tarball
	return nil
}

// TestCRI drives containerd's CRI plugin as kubelet does (RunPodSandbox,
// CreateContainer, StartContainer, then stop and remove) with runtime
// handler "seccompagent", a host-network pod and the container limited to
// 256 MiB and 0.5 CPU: with the pod annotation seccompagent.io/enable=true
// the probe sees the limits; without it, the host.
func TestCRI(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range requiredCommands {
		testenv.RequireCommand(t, c)
	}
	_, err := os.Stat("/bin/busybox")
	testenv.Require(t, err == nil, "/bin/busybox not found: install busybox-static (`make deps`)")
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	hostCPUs, err := harness.HostOnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	hostMem, err := harness.HostMemTotal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/seccompagent/runtime.json"); err == nil {
		t.Log("note: /etc/seccompagent/runtime.json exists on this host; the wrapper reads it")
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dir, err := os.MkdirTemp(workDir, "ctd-")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := Start(ctx, Options{Dir: dir, Wrapper: wrapper, SandboxImage: pauseImage})
	if err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Logf("containerd (CRI) started in %v", time.Since(start).Round(time.Millisecond))
	agent, err := harness.StartAgent(ctx, agentBin, c.AgentSocket)
	if err != nil {
		_ = c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left := c.LeftoverShims(); len(left) > 0 {
			t.Errorf("shims or containers left after every pod was removed: %s", strings.Join(left, "; "))
		}
		if err := c.Close(); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
		if err := agent.Stop(); err != nil {
			t.Errorf("agent: %v\n%s", err, agent.Logs())
		}
		if mounts := mountsUnder(dir); len(mounts) > 0 {
			t.Errorf("mounts left on the host under %s: %s", dir, strings.Join(mounts, ", "))
		}
	})
	for _, name := range []string{pauseImage, probeImage} {
		if err := c.ImportImage(ctx, images[name], name); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name        string
		annotations map[string]string
		cpus        int64
		mem         uint64
	}{
		{"annotation", map[string]string{"seccompagent.io/enable": "true"}, 1, memoryLimit},
		{"no-annotation", nil, int64(hostCPUs), hostMem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := probePod(t, c, "cri-"+tc.name, tc.annotations)
			if err != nil {
				t.Fatalf("%v\n%s\n%s", err, c.Logs(), tailString(agent.Logs(), 3000))
			}
			checkProbe(t, out, tc.cpus, tc.mem)
			if t.Failed() {
				t.Logf("probe output:\n%s\n%s", out, tailString(agent.Logs(), 3000))
			}
		})
	}
}

// probePod runs a pod with the probe container, limited to 256 MiB and
// 0.5 CPU, under the seccompagent handler, and returns what the probe
// wrote. The pod is removed before it returns.
func probePod(t *testing.T, c *Containerd, name string, annotations map[string]string) (string, error) {
	return workloadPod(t, c, name, annotations, "/probe")
}

// workloadPod is probePod running the shell command cmd (in the probe
// image, its output to the result file).
func workloadPod(t *testing.T, c *Containerd, name string, annotations map[string]string, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	outDir := t.TempDir()
	pod, err := c.RunPod(ctx, podConfig(t, name, annotations, false), RuntimeHandler)
	if pod != nil {
		defer func() {
			if err := pod.Remove(); err != nil {
				t.Error(err)
			}
		}()
	}
	if err != nil {
		return "", err
	}
	id, err := pod.Start(ctx, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "probe"},
		Image:    &runtimeapi.ImageSpec{Image: probeImage},
		Command:  []string{"sh", "-c", cmd + " >/out/result 2>&1"},
		LogPath:  "probe.log",
		Mounts:   []*runtimeapi.Mount{{ContainerPath: "/out", HostPath: outDir}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{
				MemoryLimitInBytes: memoryLimit,
				CpuQuota:           cpuQuota,
				CpuPeriod:          cpuPeriod,
				CpuShares:          512,
			},
		},
	})
	if err != nil {
		return "", err
	}
	st, err := pod.Wait(ctx, id)
	if err != nil {
		return "", err
	}
	result, rerr := os.ReadFile(filepath.Join(outDir, "result"))
	if st.ExitCode != 0 || rerr != nil {
		log, _ := os.ReadFile(filepath.Join(pod.Config.LogDirectory, "probe.log"))
		return "", fmt.Errorf("container exited %d (%s %s); result %q (%v); log:\n%s", st.ExitCode, st.Reason, st.Message, result, rerr, log)
	}
	return string(result), nil
}

// podConfig is the sandbox config kubelet sends for a host-network pod
// (hostPID too when hostPID is set, and privileged, as the agent's
// DaemonSet asks), with its own cgroup parent and log directory.
func podConfig(t *testing.T, name string, annotations map[string]string, hostPID bool) *runtimeapi.PodSandboxConfig {
	uid := harness.UniqueID()
	pid := runtimeapi.NamespaceMode_CONTAINER
	if hostPID {
		pid = runtimeapi.NamespaceMode_NODE
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: uid},
		// No Hostname: kubelet sets none for a host-network pod (the pod
		// shares the node's UTS namespace too).
		LogDirectory: t.TempDir(),
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: cgroupRoot + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE,
					Pid:     pid,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
				Privileged: hostPID,
			},
		},
	}
}

// checkProbe compares what the probe saw with the CPU count and memory size.
func checkProbe(t *testing.T, out string, cpus int64, mem uint64) {
	t.Helper()
	p := harness.ParseProbe(out)
	check := func(what string, got, want uint64, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if got != want {
			t.Errorf("%s = %d, want %d", what, got, want)
		}
	}
	n, err := p.Uint("nprocs_onln")
	check("sysconf(_SC_NPROCESSORS_ONLN)", n, uint64(cpus), err)
	n, err = p.Uint("affinity_count")
	check("sched_getaffinity CPUs", n, uint64(cpus), err)
	pages, err1 := p.Uint("phys_pages")
	size, err2 := p.Uint("pagesize")
	check("sysconf(_SC_PHYS_PAGES)*pagesize", pages*size, mem, firstErr(err1, err2))
	ram, err1 := p.Uint("totalram")
	unit, err2 := p.Uint("mem_unit")
	check("sysinfo totalram*mem_unit", ram*unit, mem, firstErr(err1, err2))
}

// removeCgroup removes path (and the empty cgroups containerd left under
// it) in every hierarchy; it fails when one still holds processes.
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
			_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
	return out
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// The DaemonSet's commands (examples/kubernetes/daemonset.yaml), as the
// manifest spells them.
var (
	installCommand = []string{"/usr/local/bin/seccompagent", "install", "--to", "/host/usr/local/bin"}
	holdCommand    = []string{"/usr/local/bin/seccompagent", "hold", "--socket", "/run/seccompagent/holder.sock", "--idle-exit", "0", "--log-format", "json"}
	serveCommand   = []string{"/usr/local/bin/seccompagent", "serve", "--socket", "/run/seccompagent/seccompagent.sock",
		"--holder", "process", "--after-handover", "wait", "--log-format", "json"}
	readinessCommand = []string{"/usr/local/bin/seccompagent", "status"}
)

// TestDaemonSet deploys the agent as examples/kubernetes/daemonset.yaml
// does, through the CRI, from the image `make image` built and imported
// with `ctr -n k8s.io images import`: a privileged host-PID, host-network
// pod whose init container installs the binaries into the node's bin
// directory (here a private directory standing in for /usr/local/bin),
// then the holder and the agent serving on the node's /run/seccompagent.
// The runtime handler runs the wrapper the init container installed, and a
// pod with the annotation sees its limits. Then the agent container is
// restarted (SIGTERM, a new container, as kubelet restarts one) while a
// workload calls sysinfo and sched_getaffinity in a loop: none of its
// calls may fail or get the host's values.
func TestDaemonSet(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range requiredCommands {
		testenv.RequireCommand(t, c)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(root, "examples", "kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{installCommand, holdCommand, serveCommand, readinessCommand} {
		j, _ := json.Marshal(cmd)
		if !strings.Contains(string(manifest), "command: "+string(j)+"\n") {
			t.Errorf("daemonset.yaml has no line `command: %s`: keep the test and the manifest in step", j)
		}
	}
	if !strings.Contains(string(manifest), "image: "+agentImage+"\n") {
		t.Errorf("daemonset.yaml does not run image %s", agentImage)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dir, err := os.MkdirTemp(workDir, "ds-")
	if err != nil {
		t.Fatal(err)
	}
	nodeBin := filepath.Join(dir, "node", "usr", "local", "bin")
	if err := os.MkdirAll(nodeBin, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Options{Dir: dir, Wrapper: filepath.Join(nodeBin, "seccompagent-runtime"), SandboxImage: pauseImage})
	if err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		if left := c.LeftoverShims(); len(left) > 0 {
			t.Errorf("shims or containers left after every pod was removed: %s", strings.Join(left, "; "))
		}
		if err := c.Close(); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
		if mounts := mountsUnder(dir); len(mounts) > 0 {
			t.Errorf("mounts left on the host under %s: %s", dir, strings.Join(mounts, ", "))
		}
	})
	for _, name := range []string{pauseImage, probeImage, agentImage} {
		if err := c.ImportImage(ctx, images[name], name); err != nil {
			t.Fatal(err)
		}
	}

	pod, err := c.RunPod(ctx, podConfig(t, "seccompagent", nil, true), "")
	if pod != nil {
		t.Cleanup(func() {
			if err := pod.Remove(); err != nil {
				t.Errorf("agent pod: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	install, err := pod.Start(ctx, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "install"},
		Image:    &runtimeapi.ImageSpec{Image: agentImage},
		Command:  installCommand,
		LogPath:  "install.log",
		Mounts:   []*runtimeapi.Mount{{ContainerPath: "/host/usr/local/bin", HostPath: nodeBin}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := pod.Wait(ctx, install)
	log, _ := os.ReadFile(filepath.Join(pod.Config.LogDirectory, "install.log"))
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("init container install: %v, exit %d; log:\n%s", err, st.GetExitCode(), log)
	}
	for _, bin := range []string{"seccompagent", "seccompagent-runtime"} {
		want, _ := os.ReadFile(filepath.Join(workDir, "build", "agent-image", "rootfs", "usr", "local", "bin", bin))
		got, err := os.ReadFile(filepath.Join(nodeBin, bin))
		if err != nil || len(want) == 0 || !bytes.Equal(got, want) {
			t.Fatalf("%s on the node is not the image's (%v); install log:\n%s", bin, err, log)
		}
	}

	if _, err := pod.Start(ctx, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "holder"},
		Image:    &runtimeapi.ImageSpec{Image: agentImage},
		Command:  holdCommand,
		LogPath:  "holder.log",
		Mounts:   []*runtimeapi.Mount{{ContainerPath: "/run/seccompagent", HostPath: "/run/seccompagent"}},
	}); err != nil {
		t.Fatal(err)
	}
	logs := func() string {
		var b strings.Builder
		for _, f := range []string{"holder.log", "agent-0.log", "agent-1.log"} {
			data, err := os.ReadFile(filepath.Join(pod.Config.LogDirectory, f))
			if err == nil {
				fmt.Fprintf(&b, "--- %s ---\n%s\n", f, tailString(string(data), 3000))
			}
		}
		return b.String()
	}
	// The holder's socket is SOCK_SEQPACKET (agent/handoff.go).
	if err := waitSocket(ctx, "unixpacket", filepath.Join(filepath.Dir(c.AgentSocket), "holder.sock")); err != nil {
		t.Fatalf("the holder container: %v\n%s", err, logs())
	}
	// The agent container, as kubelet creates it (attempt n).
	startAgent := func(attempt uint32) string {
		id, err := pod.Start(ctx, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "agent", Attempt: attempt},
			Image:    &runtimeapi.ImageSpec{Image: agentImage},
			Command:  serveCommand,
			LogPath:  fmt.Sprintf("agent-%d.log", attempt),
			Mounts: []*runtimeapi.Mount{
				{ContainerPath: "/run/seccompagent", HostPath: "/run/seccompagent"},
				{ContainerPath: "/sys/fs/cgroup", HostPath: "/sys/fs/cgroup", Readonly: true},
			},
			Linux: &runtimeapi.LinuxContainerConfig{
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true},
			},
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, logs())
		}
		return id
	}
	agentID := startAgent(0)
	if err := waitSocket(ctx, "unix", c.AgentSocket); err != nil {
		t.Fatalf("the agent container: %v\n%s", err, logs())
	}
	// The manifest's readiness probe, as kubelet runs it (ExecSync): ready
	// once the self-test passed.
	var probe *runtimeapi.ExecSyncResponse
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		probe, err = c.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: agentID, Cmd: readinessCommand, Timeout: 10})
		if err == nil && probe.ExitCode == 0 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || probe.ExitCode != 0 || !strings.Contains(string(probe.Stdout), "healthy: yes (self-test passed)") {
		t.Fatalf("readiness probe %v in the agent container: %v, exit %d\n%s%s\n%s", readinessCommand, err, probe.GetExitCode(),
			probe.GetStdout(), probe.GetStderr(), logs())
	}

	out, err := probePod(t, c, "workload", map[string]string{"seccompagent.io/enable": "true"})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, c.Logs(), logs())
	}
	checkProbe(t, out, 1, memoryLimit)
	// The agent that answered is the one in the pod: its log (JSON, as
	// the manifest asks) shows the workload attaching.
	if l := logs(); !strings.Contains(l, `"msg":"container attached"`) {
		t.Errorf("the agent container's log shows no attached container\n%s", l)
	}
	if t.Failed() {
		t.Fatalf("probe output:\n%s\n%s", out, logs())
	}

	// Restart the agent container under a workload that calls both
	// syscalls for 4 s: hammer counts ENOSYS, other errors and host values.
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := workloadPod(t, c, "hammer", map[string]string{"seccompagent.io/enable": "true"},
			fmt.Sprintf("/hammer 4 %d 1", memoryLimit))
		done <- result{out, err}
	}()
	time.Sleep(time.Second)
	if code, err := pod.RemoveContainer(ctx, agentID, 10*time.Second); err != nil || code != 0 {
		t.Errorf("restarting the agent container: %v, exit %d (want 0 after SIGTERM)", err, code)
	}
	startAgent(1)
	r := <-done
	if r.err != nil {
		t.Fatalf("hammer pod: %v\n%s", r.err, logs())
	}
	t.Logf("hammer across the agent container's restart: %s", strings.TrimSpace(r.out))
	for _, k := range []string{"enosys=0 ", "errors=0 ", "host=0 "} {
		if !strings.Contains(r.out, k) {
			t.Errorf("hammer across the restart: %s; want %s", strings.TrimSpace(r.out), strings.TrimSpace(k))
		}
	}
	second, _ := os.ReadFile(filepath.Join(pod.Config.LogDirectory, "agent-1.log"))
	if m := regexp.MustCompile(`"adopted":([0-9]+)`).FindSubmatch(second); m == nil || string(m[1]) == "0" {
		t.Errorf("the new agent adopted no listener from the holder\n%s", logs())
	}
	if t.Failed() {
		t.Log(logs())
	}
}

// waitSocket waits until the unix socket (network "unix" or
// "unixpacket") accepts a connection.
func waitSocket(ctx context.Context, network, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		conn, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%v)", path, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
