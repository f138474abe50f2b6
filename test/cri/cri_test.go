package cri

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

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/seccompagent/seccompagent/test/engines"
	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

const (
	pauseImage = "localhost/seccompagent-pause:test"
	probeImage = "localhost/seccompagent-cri:test"
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
	return m.Run()
}

func commandsPresent() bool {
	for _, c := range requiredCommands {
		if _, err := exec.LookPath(c); err != nil {
			return false
		}
	}
	return true
}

var requiredCommands = []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc", "unshare", "nsenter", "musl-gcc"}

// build makes the agent, the wrapper, the probe image (the e2e test rootfs:
// busybox and /probe) and the pause image (test/cri/pause/pause.c, static).
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
			out, err := runPod(t, c, tc.name, tc.annotations)
			if err != nil {
				t.Fatalf("%v\n%s\n%s", err, c.Logs(), tailString(agent.Logs(), 3000))
			}
			p := harness.ParseProbe(out)
			var errs []string
			check := func(what string, got, want uint64, err error) {
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: %v", what, err))
				} else if got != want {
					errs = append(errs, fmt.Sprintf("%s = %d, want %d", what, got, want))
				}
			}
			n, err := p.Uint("nprocs_onln")
			check("sysconf(_SC_NPROCESSORS_ONLN)", n, uint64(tc.cpus), err)
			n, err = p.Uint("affinity_count")
			check("sched_getaffinity CPUs", n, uint64(tc.cpus), err)
			pages, err1 := p.Uint("phys_pages")
			size, err2 := p.Uint("pagesize")
			check("sysconf(_SC_PHYS_PAGES)*pagesize", pages*size, tc.mem, firstErr(err1, err2))
			ram, err1 := p.Uint("totalram")
			unit, err2 := p.Uint("mem_unit")
			check("sysinfo totalram*mem_unit", ram*unit, tc.mem, firstErr(err1, err2))
			for _, e := range errs {
				t.Error(e)
			}
			if t.Failed() {
				t.Logf("probe output:\n%s\n%s", out, tailString(agent.Logs(), 3000))
			}
		})
	}
	if err := removeCgroup(cgroupRoot); err != nil {
		t.Errorf("cgroups: %v", err)
	}
}

// runPod runs one pod with one container through the CRI, as kubelet
// would, and returns what the probe wrote. The pod and its container are
// stopped and removed before it returns.
func runPod(t *testing.T, c *Containerd, name string, annotations map[string]string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	rs := c.Runtime
	uid := harness.UniqueID()
	logDir := t.TempDir()
	outDir := t.TempDir()
	podConfig := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "cri-" + name, Namespace: "default", Uid: uid},
		// No Hostname: kubelet sets none for a host-network pod (the pod
		// shares the node's UTS namespace too).
		LogDirectory: logDir,
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: cgroupRoot + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
	pod, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig, RuntimeHandler: RuntimeHandler})
	if err != nil {
		return "", fmt.Errorf("RunPodSandbox: %w", err)
	}
	id := pod.PodSandboxId
	defer func() {
		// A fresh context: clean up even when the run's ran out.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if _, err := rs.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
		if _, err := rs.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	}()
	st, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return "", fmt.Errorf("PodSandboxStatus: %w", err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Status.RuntimeHandler != RuntimeHandler {
		return "", fmt.Errorf("pod %s: state %v, handler %q; want ready, %q", id, st.Status.State, st.Status.RuntimeHandler, RuntimeHandler)
	}

	ctrConfig := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "probe"},
		Image:    &runtimeapi.ImageSpec{Image: probeImage},
		Command:  []string{"sh", "-c", "/probe >/out/result 2>&1"},
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
	}
	created, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: id, Config: ctrConfig, SandboxConfig: podConfig,
	})
	if err != nil {
		return "", fmt.Errorf("CreateContainer: %w", err)
	}
	cid := created.ContainerId
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if _, err := rs.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: cid}); err != nil {
			t.Errorf("RemoveContainer: %v", err)
		}
	}()
	if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cid}); err != nil {
		return "", fmt.Errorf("StartContainer: %w", err)
	}
	for {
		cs, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid})
		if err != nil {
			return "", fmt.Errorf("ContainerStatus: %w", err)
		}
		if s := cs.Status; s.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			result, rerr := os.ReadFile(filepath.Join(outDir, "result"))
			log, _ := os.ReadFile(filepath.Join(logDir, "probe.log"))
			if s.ExitCode != 0 || rerr != nil {
				return "", fmt.Errorf("container exited %d (%s %s); result %q (%v); log:\n%s", s.ExitCode, s.Reason, s.Message, result, rerr, log)
			}
			return string(result), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("container %s did not exit: %w", cid, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
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
