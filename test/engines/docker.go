package engines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DockerRuntime is the name the wrapper gets in daemon.json's "runtimes".
const DockerRuntime = "seccompagent"

// Docker is a private dockerd 20.10 on a private containerd, both in one
// private mount namespace (Dir/run bound over /run): dockerd's own
// containerd would create /opt/containerd, and its shims /run/containerd/s,
// on the host.
//
// dockerd gets the flags
//
//	--iptables=false --bridge=none --storage-driver=vfs
//	--exec-opt native.cgroupdriver=cgroupfs --data-root D/data
//	--exec-root D/exec -H unix://D/docker.sock --pidfile D/docker.pid
//	--config-file D/daemon.json --containerd D/containerd/containerd.sock
//
// and daemon.json registers the wrapper as the runtime "seccompagent" with
// its socket flag, keeps the key file (default /etc/docker/key.json), IP
// forwarding and masquerading off the host, and puts the containers'
// cgroups under CgroupParent. Docker 20.10 turns a runtime with
// runtimeArgs into a script in D/data/runtimes that runs
// `PATH ARGS $@`.
type Docker struct {
	cfg Config
	// Socket is dockerd's API socket.
	Socket string

	ns         *MountNS
	containerd *Containerd
	daemon     *Daemon
	client     string
	clientEnv  []string
}

// StartDocker starts containerd and dockerd and waits until both serve.
func StartDocker(ctx context.Context, cfg Config) (*Docker, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, errors.New("dockerd not found")
	}
	client, err := exec.LookPath("docker")
	if err != nil {
		return nil, errors.New("docker (client) not found")
	}
	dir := cfg.Dir
	if err := mkdirs(filepath.Join(dir, "data"), filepath.Join(dir, "exec"), filepath.Join(dir, "run"),
		filepath.Join(dir, "client")); err != nil {
		return nil, err
	}
	d := &Docker{cfg: cfg, Socket: filepath.Join(dir, "docker.sock"), client: client,
		clientEnv: append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(dir, "client"))}
	d.ns, err = NewMountNS([]Bind{{Source: filepath.Join(dir, "run"), Target: "/run"}})
	if err != nil {
		return nil, err
	}
	ccfg := cfg
	ccfg.Dir = filepath.Join(dir, "containerd")
	d.containerd, err = StartContainerd(ctx, ccfg, d.ns)
	if err != nil {
		d.Close()
		return nil, err
	}
	daemonJSON, err := json.MarshalIndent(map[string]any{
		"runtimes": map[string]any{
			DockerRuntime: map[string]any{
				"path":        cfg.Wrapper,
				"runtimeArgs": []string{"--seccompagent-socket=" + cfg.AgentSocket},
			},
		},
		"cgroup-parent":       cfg.CgroupParent,
		"deprecated-key-path": filepath.Join(dir, "key.json"),
		"ip-forward":          false,
		"ip-masq":             false,
		"userland-proxy":      false,
	}, "", "  ")
	if err != nil {
		d.Close()
		return nil, err
	}
	confPath := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(confPath, daemonJSON, 0o600); err != nil {
		d.Close()
		return nil, err
	}
	cmd := d.ns.Command(dockerd,
		"--iptables=false", "--bridge=none", "--storage-driver=vfs",
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"-H", "unix://"+d.Socket,
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--config-file", confPath,
		"--containerd", d.containerd.Socket,
	)
	cmd.Dir = dir
	d.daemon, err = StartDaemon(ctx, "dockerd", cmd, filepath.Join(dir, "dockerd.log"), d.Socket)
	if err != nil {
		d.Close()
		return nil, err
	}
	if out, stderr, err := d.docker(ctx, "version"); err != nil {
		err = fmt.Errorf("docker version: %v\n%s%s\n%s", err, out, stderr, d.daemon.Logs())
		d.Close()
		return nil, err
	}
	return d, nil
}

// Name implements Engine.
func (d *Docker) Name() string { return "docker" }

// Daemon is the dockerd process.
func (d *Docker) Daemon() *Daemon { return d.daemon }

// docker runs the docker client against this dockerd.
func (d *Docker) docker(ctx context.Context, args ...string) (string, string, error) {
	cmd := exec.Command(d.client, append([]string{"--host", "unix://" + d.Socket}, args...)...)
	cmd.Env = d.clientEnv
	cmd.Dir = d.cfg.Dir
	return runCmd(ctx, cmd)
}

// Load implements Engine: `docker load` (which reads manifest.json).
func (d *Docker) Load(ctx context.Context, tarball, name string) error {
	out, stderr, err := d.docker(ctx, "load", "--input", tarball)
	if err != nil {
		return fmt.Errorf("%v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(out, "Loaded image: "+name) {
		return fmt.Errorf("docker load did not load %s: %q", name, out)
	}
	return nil
}

// Run implements Engine:
//
//	docker run --rm --runtime seccompagent --network none -m 256m --cpus 0.5
//	    [-e K=V]... [--security-opt seccomp=unconfined] [-v DIR:/out] IMAGE ARGS...
//
// Docker 20.10 has no way to set an OCI annotation: the wrapper reads
// SECCOMPAGENT_ENABLE from the process environment instead.
func (d *Docker) Run(ctx context.Context, image string, opts RunOptions) (string, string, error) {
	if len(opts.Annotations) > 0 {
		return "", "", errors.New("docker 20.10 cannot set OCI annotations (docker run has no --annotation)")
	}
	args := []string{"run", "--rm", "--runtime", DockerRuntime, "--network", "none",
		"--memory", fmt.Sprint(MemoryLimit), "--cpus", fmt.Sprint(float64(CPUQuota) / CPUPeriod)}
	for _, e := range opts.Env {
		args = append(args, "--env", e)
	}
	if opts.Unconfined {
		args = append(args, "--security-opt", "seccomp=unconfined")
	}
	if opts.OutputDir != "" {
		args = append(args, "--volume", opts.OutputDir+":"+OutputMount)
	}
	args = append(append(args, image), opts.Args...)
	return d.docker(ctx, args...)
}

// LeftoverRuntimeState implements Engine: runc's state of docker's
// containers (dockerd gives the shim the runc root D/exec/runtime-runc).
func (d *Docker) LeftoverRuntimeState() []string {
	return entries(filepath.Join(d.cfg.Dir, "exec", "runtime-runc", "moby"))
}

// Close implements Engine: dockerd, then containerd (SIGTERM to each pid),
// then the namespace.
func (d *Docker) Close() error {
	var errs []error
	if d.daemon != nil {
		if err := d.daemon.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, d.daemon.Logs()))
		}
		d.daemon = nil
	}
	if d.containerd != nil {
		if err := d.containerd.Close(); err != nil {
			errs = append(errs, err)
		}
		d.containerd = nil
	}
	if d.ns != nil {
		if err := d.ns.Close(); err != nil {
			errs = append(errs, err)
		}
		d.ns = nil
	}
	return errors.Join(errs...)
}
