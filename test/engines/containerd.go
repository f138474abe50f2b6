package engines

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/seccompagent/seccompagent/test/harness"
)

// containerdNamespace is the containerd namespace ctr uses (its default).
const containerdNamespace = "default"

// Containerd is a private containerd 1.6 driven with ctr.
//
// Its config.toml puts root, state, the opt plugin's directory and the
// gRPC/ttrpc sockets under Dir and disables the CRI plugin (and the
// snapshotters this host cannot use, so nothing probes for their kernel
// modules). containerd 1.6's shims still put their sockets under
// /run/containerd/s and runc's state under /run/containerd/runc whatever
// the state directory is, so containerd runs in a private mount namespace
// with Dir/run bound over /run.
//
// ctr cannot pass the wrapper its own flags (--runc-binary takes a path
// only), so --runc-binary names a two-line script, Dir/runc-wrapper:
//
//	exec seccompagent-runtime --seccompagent-socket=SOCKET "$@"
//
// Under the CRI plugin the same goes into config.toml instead of a ctr flag
// (the script, or the wrapper itself when the default socket and its
// settings file /etc/seccompagent/runtime.json are enough):
//
//	[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.seccompagent]
//	  runtime_type = "io.containerd.runc.v2"
//	  pod_annotations = ["seccompagent.io/*"]
//	  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.seccompagent.options]
//	    BinaryName = "/usr/local/bin/seccompagent-runtime"
type Containerd struct {
	cfg Config
	// Socket is the gRPC address ctr talks to.
	Socket string

	ns         *MountNS
	ownNS      bool
	daemon     *Daemon
	runcBinary string
}

// containerdConfig is config.toml (version 2) for a private containerd.
func containerdConfig(dir string) string {
	q := strconv.Quote
	return fmt.Sprintf(`version = 2
root = %s
state = %s
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %s

[ttrpc]
  address = %s

[plugins."io.containerd.internal.v1.opt"]
  path = %s
`, q(filepath.Join(dir, "root")), q(filepath.Join(dir, "state")),
		q(filepath.Join(dir, "containerd.sock")), q(filepath.Join(dir, "containerd.sock.ttrpc")),
		q(filepath.Join(dir, "opt")))
}

// StartContainerd starts a private containerd in ns, or in a mount
// namespace of its own when ns is nil, and waits until it serves.
func StartContainerd(ctx context.Context, cfg Config, ns *MountNS) (*Containerd, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, errors.New("containerd not found")
	}
	if _, err := exec.LookPath("ctr"); err != nil {
		return nil, errors.New("ctr not found")
	}
	dir := cfg.Dir
	if err := mkdirs(filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "opt"),
		filepath.Join(dir, "run"), filepath.Join(dir, "fifo")); err != nil {
		return nil, err
	}
	c := &Containerd{cfg: cfg, Socket: filepath.Join(dir, "containerd.sock"), ns: ns,
		runcBinary: filepath.Join(dir, "runc-wrapper")}
	if err := writeScript(c.runcBinary, fmt.Sprintf("exec %s --seccompagent-socket=%s \"$@\"\n",
		shellQuote(cfg.Wrapper), shellQuote(cfg.AgentSocket))); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(containerdConfig(dir)), 0o600); err != nil {
		return nil, err
	}
	if c.ns == nil {
		c.ns, err = NewMountNS([]Bind{{Source: filepath.Join(dir, "run"), Target: "/run"}})
		if err != nil {
			return nil, err
		}
		c.ownNS = true
	}
	cmd := c.ns.Command(bin, "--config", confPath)
	cmd.Dir = dir
	c.daemon, err = StartDaemon(ctx, "containerd", cmd, filepath.Join(dir, "containerd.log"), c.Socket)
	if err != nil {
		c.closeNS()
		return nil, err
	}
	if out, stderr, err := c.ctr(ctx, "version"); err != nil {
		c.Close()
		return nil, fmt.Errorf("ctr version: %v\n%s%s", err, out, stderr)
	}
	return c, nil
}

// Name implements Engine.
func (c *Containerd) Name() string { return "containerd" }

// Daemon is the containerd process.
func (c *Containerd) Daemon() *Daemon { return c.daemon }

// ctr runs ctr against this containerd.
func (c *Containerd) ctr(ctx context.Context, args ...string) (string, string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", c.Socket, "--namespace", containerdNamespace}, args...)...)
	cmd.Dir = c.cfg.Dir
	return runCmd(ctx, cmd)
}

// Load implements Engine: `ctr images import` (unpacked into the default
// snapshotter).
func (c *Containerd) Load(ctx context.Context, tarball, name string) error {
	out, stderr, err := c.ctr(ctx, "images", "import", tarball)
	if err != nil {
		return fmt.Errorf("%v\n%s%s", err, out, stderr)
	}
	list, stderr, err := c.ctr(ctx, "images", "list", "--quiet")
	if err != nil {
		return fmt.Errorf("%v\n%s", err, stderr)
	}
	for _, l := range strings.Fields(list) {
		if l == name {
			return nil
		}
	}
	return fmt.Errorf("ctr images import did not make %s (images: %q; import said %q)", name, list, out)
}

// Run implements Engine:
//
//	ctr run --rm --fifo-dir D --runc-binary D/runc-wrapper --memory-limit 268435456
//	    --cpu-quota 50000 --cpu-period 100000 --cgroup PARENT/ID [--seccomp]
//	    [--annotation K=V]... [--env K=V]... [--mount type=bind,...] IMAGE ID ARGS...
//
// --seccomp is ctr's default profile (the same as docker's); --fifo-dir
// keeps ctr's client-side FIFOs out of the host's /run/containerd.
func (c *Containerd) Run(ctx context.Context, image string, opts RunOptions) (string, string, error) {
	id := "seccompagent-" + harness.UniqueID()
	args := []string{"run", "--rm",
		"--fifo-dir", filepath.Join(c.cfg.Dir, "fifo"),
		"--runc-binary", c.runcBinary,
		"--memory-limit", strconv.Itoa(MemoryLimit),
		"--cpu-quota", strconv.Itoa(CPUQuota),
		"--cpu-period", strconv.Itoa(CPUPeriod),
		"--cgroup", c.cfg.CgroupParent + "/" + id,
	}
	if !opts.Unconfined {
		args = append(args, "--seccomp")
	}
	args = append(args, annotationFlags(opts.Annotations)...)
	for _, e := range opts.Env {
		args = append(args, "--env", e)
	}
	if opts.OutputDir != "" {
		args = append(args, "--mount", "type=bind,src="+opts.OutputDir+",dst="+OutputMount+",options=rbind:rw")
	}
	args = append(append(args, image, id), opts.Args...)
	return c.ctr(ctx, args...)
}

// LeftoverRuntimeState implements Engine: runc's state for the namespace,
// under the private /run.
func (c *Containerd) LeftoverRuntimeState() []string {
	return entries(filepath.Join(c.cfg.Dir, "run", "containerd", "runc", containerdNamespace))
}

// Close implements Engine: SIGTERM to containerd's pid, then the namespace
// (when it is containerd's own).
func (c *Containerd) Close() error {
	var errs []error
	if c.daemon != nil {
		if err := c.daemon.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, c.daemon.Logs()))
		}
	}
	if err := c.closeNS(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Containerd) closeNS() error {
	if !c.ownNS || c.ns == nil {
		return nil
	}
	err := c.ns.Close()
	c.ns = nil
	return err
}
