package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/seccompagent/seccompagent/test/engines"
)

// Namespace is the containerd namespace the CRI plugin keeps its images and
// containers in.
const Namespace = "k8s.io"

// RuntimeHandler is the CRI runtime handler (a Kubernetes RuntimeClass's
// handler) whose runc is seccompagent-runtime.
const RuntimeHandler = "seccompagent"

// Options configures a private containerd with its CRI plugin.
type Options struct {
	// Dir is the private directory (absolute, short enough for socket
	// paths): root, state, sockets, logs and the /run seen by containerd.
	Dir string
	// Wrapper is the seccompagent-runtime binary, the handler's BinaryName.
	Wrapper string
	// SandboxImage is the pause image every pod starts with; it must be
	// imported (ImportImage) before the first RunPodSandbox.
	SandboxImage string
}

// Containerd is a containerd 1.6 serving the CRI API, started by the tests.
//
// It runs in a private mount namespace with Dir/run bound over /run, like
// the engine tier's (test/engines): the shims' sockets, runc's state and
// the pods' network namespaces land there. Inside that namespace the
// wrapper's default agent socket, /run/seccompagent/seccompagent.sock, is
// Dir/run/seccompagent/seccompagent.sock on the host (AgentSocket): the
// handler runs the wrapper exactly as a node would, with no flags.
type Containerd struct {
	opts Options
	// Socket is the gRPC socket (CRI and containerd's own API).
	Socket string
	// AgentSocket is where the agent must listen (host path).
	AgentSocket string

	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient

	ns     *engines.MountNS
	daemon *engines.Daemon
	conn   *grpc.ClientConn
}

// config is config.toml (version 2): everything under dir, the CRI plugin
// with the cgroupfs driver (SystemdCgroup = false), runtime handler
// "seccompagent" running the wrapper, and the pod annotations the wrapper
// reads passed through to every container's OCI spec. No CNI: the test's
// pods use the host's network.
func config(dir string, o Options) string {
	q := strconv.Quote
	cri := `plugins."io.containerd.grpc.v1.cri"`
	return fmt.Sprintf(`version = 2
root = %[1]s
state = %[2]s
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %[3]s

[ttrpc]
  address = %[4]s

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]s

[%[6]s]
  sandbox_image = %[7]s
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  restrict_oom_score_adj = %[12]t
  [%[6]s.cni]
    bin_dir = %[8]s
    conf_dir = %[9]s
  [%[6]s.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [%[6]s.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [%[6]s.containerd.runtimes.runc.options]
        SystemdCgroup = false
    [%[6]s.containerd.runtimes.%[10]s]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = ["seccompagent.io/*"]
      [%[6]s.containerd.runtimes.%[10]s.options]
        BinaryName = %[11]s
        SystemdCgroup = false
`, q(filepath.Join(dir, "root")), q(filepath.Join(dir, "state")),
		q(filepath.Join(dir, "containerd.sock")), q(filepath.Join(dir, "containerd.sock.ttrpc")),
		q(filepath.Join(dir, "opt")), cri, q(o.SandboxImage),
		q(filepath.Join(dir, "cni", "bin")), q(filepath.Join(dir, "cni", "net.d")),
		RuntimeHandler, q(o.Wrapper), !hasCapSysResource())
}

// hasCapSysResource reports whether this process has CAP_SYS_RESOURCE.
// Without it (a nested or restricted host) runc cannot lower a process's
// oom_score_adj below its parent's (kernel: proc_oom_score_adj_write,
// EACCES), and the pause container's -998 fails the pod: containerd's
// restrict_oom_score_adj then clamps scores to its own.
func hasCapSysResource() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

// Start starts containerd in a new private mount namespace, waits until it
// serves, and connects a CRI client to it.
func Start(ctx context.Context, o Options) (*Containerd, error) {
	for name, p := range map[string]string{"Dir": o.Dir, "Wrapper": o.Wrapper} {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("cri options %s=%q: want an absolute path", name, p)
		}
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, errors.New("containerd not found (Debian package containerd, `make deps`)")
	}
	dir := o.Dir
	for _, d := range []string{"root", "state", "opt", "run/seccompagent", "cni/bin", "cni/net.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	c := &Containerd{
		opts:        o,
		Socket:      filepath.Join(dir, "containerd.sock"),
		AgentSocket: filepath.Join(dir, "run", "seccompagent", "seccompagent.sock"),
	}
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(config(dir, o)), 0o600); err != nil {
		return nil, err
	}
	c.ns, err = engines.NewMountNS([]engines.Bind{{Source: filepath.Join(dir, "run"), Target: "/run"}})
	if err != nil {
		return nil, err
	}
	cmd := c.ns.Command(bin, "--config", confPath)
	cmd.Dir = dir
	c.daemon, err = engines.StartDaemon(ctx, "containerd", cmd, filepath.Join(dir, "containerd.log"), c.Socket)
	if err != nil {
		_ = c.ns.Close()
		return nil, err
	}
	c.conn, err = grpc.NewClient("unix://"+c.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cri client: %w", err)
	}
	c.Runtime = runtimeapi.NewRuntimeServiceClient(c.conn)
	c.Images = runtimeapi.NewImageServiceClient(c.conn)
	// The CRI plugin registers after containerd listens: wait for it.
	var verr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var v *runtimeapi.VersionResponse
		if v, verr = c.Runtime.Version(ctx, &runtimeapi.VersionRequest{}); verr == nil && v.RuntimeApiVersion == "v1" {
			return c, nil
		} else if verr == nil {
			verr = fmt.Errorf("runtime API %q, want v1", v.RuntimeApiVersion)
		}
	}
	_ = c.Close()
	return nil, fmt.Errorf("CRI Version: %w\n%s", verr, c.daemon.Logs())
}

// ImportImage imports an image tarball (test/engines WriteImage) into the
// CRI plugin's namespace with ctr (the CRI has no import call; kubelet's
// nodes get images by pulling, which needs a registry) and checks through
// the CRI's own image service that it knows the image as name.
func (c *Containerd) ImportImage(ctx context.Context, tarball, name string) error {
	cmd := exec.CommandContext(ctx, "ctr", "--address", c.Socket, "--namespace", Namespace, "images", "import", tarball)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import %s: %w\n%s", tarball, err, out)
	}
	// The CRI plugin learns of the image from containerd's events.
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, err := c.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
		if err == nil && st.Image != nil {
			return nil
		}
		last = err
	}
	return fmt.Errorf("CRI ImageStatus %s after import: not found (%v)", name, last)
}

// Pid is containerd's pid.
func (c *Containerd) Pid() int { return c.daemon.Pid() }

// Logs returns the end of containerd's log.
func (c *Containerd) Logs() string { return c.daemon.Logs() }

// LeftoverShims lists the processes still in containerd's mount namespace
// other than containerd itself (shims and containers of pods not removed),
// after giving shims whose pod was just removed up to 5 s to exit.
func (c *Containerd) LeftoverShims() []string {
	others := func() []int {
		var pids []int
		for _, pid := range c.ns.Members() {
			if pid != c.daemon.Pid() {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	for deadline := time.Now().Add(5 * time.Second); len(others()) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	var left []string
	for _, pid := range others() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("%d %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
	}
	return left
}

// Close closes the client, stops containerd by its pid (SIGTERM) and ends
// the mount namespace, killing by pid whatever is still in it.
func (c *Containerd) Close() error {
	var errs []error
	if c.conn != nil {
		_ = c.conn.Close()
	}
	if c.daemon != nil {
		if err := c.daemon.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, c.daemon.Logs()))
		}
	}
	if c.ns != nil {
		if err := c.ns.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
