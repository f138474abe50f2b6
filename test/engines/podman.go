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
)

// Podman drives podman 4.3 with private storage and state:
//
//	podman --root D/root --runroot D/runroot --tmpdir D/tmp --storage-driver vfs
//	    --cgroup-manager cgroupfs --events-backend file
//	    --runtime WRAPPER --runtime-flag seccompagent-socket=SOCKET ...
//
// (podman puts "--" in front of each --runtime-flag and hands them to the
// runtime before the command). Every podman command runs in one private
// mount namespace in which D/run, D/shm, D/varlib and D/vartmp are bound
// over /run, /dev/shm, /var/lib and /var/tmp: whatever --root says, podman
// 4.3 keeps its lock in /dev/shm/libpod_lock, its image blob cache in
// /var/lib/containers/cache and runc's state in /run/runc, and `podman load`
// unpacks an oci-archive into /var/tmp/oci* (TMPDIR and image_copy_tmp_dir
// do not move that). CONTAINERS_CONF points at D/containers.conf for the
// network config directory (default /etc/containers/networks, where podman
// creates a lock file even for --network none).
type Podman struct {
	cfg  Config
	ns   *MountNS
	bin  string
	env  []string
	glob []string
}

// NewPodman prepares the directories and the mount namespace.
func NewPodman(cfg Config) (*Podman, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		return nil, errors.New("podman not found")
	}
	if _, err := exec.LookPath("conmon"); err != nil {
		if _, err := os.Stat("/usr/libexec/podman/conmon"); err != nil {
			return nil, errors.New("conmon not found")
		}
	}
	dir := cfg.Dir
	d := func(name string) string { return filepath.Join(dir, name) }
	if err := mkdirs(d("root"), d("runroot"), d("tmp"), d("run"), d("shm"), d("varlib"), d("vartmp"), d("networks")); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("[network]\nnetwork_config_dir = %s\n", strconv.Quote(d("networks")))
	if err := os.WriteFile(d("containers.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p := &Podman{cfg: cfg, bin: bin,
		env: append(os.Environ(), "CONTAINERS_CONF="+d("containers.conf")),
		glob: []string{
			"--root", d("root"), "--runroot", d("runroot"), "--tmpdir", d("tmp"),
			"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
			"--runtime", cfg.Wrapper, "--runtime-flag", "seccompagent-socket=" + cfg.AgentSocket,
		},
	}
	p.ns, err = NewMountNS([]Bind{
		{Source: d("run"), Target: "/run"},
		{Source: d("shm"), Target: "/dev/shm"},
		{Source: d("varlib"), Target: "/var/lib"},
		{Source: d("vartmp"), Target: "/var/tmp"},
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements Engine.
func (p *Podman) Name() string { return "podman" }

// podman runs podman with the private global flags.
func (p *Podman) podman(ctx context.Context, args ...string) (string, string, error) {
	cmd := p.ns.Command(p.bin, append(append([]string(nil), p.glob...), args...)...)
	cmd.Env = p.env
	cmd.Dir = p.cfg.Dir
	return runCmd(ctx, cmd)
}

// Load implements Engine: `podman load` (which reads the tarball as an
// oci-archive and names the image after org.opencontainers.image.ref.name).
func (p *Podman) Load(ctx context.Context, tarball, name string) error {
	out, stderr, err := p.podman(ctx, "load", "--quiet", "--input", tarball)
	if err != nil {
		return fmt.Errorf("%v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(out, "Loaded image: "+name) {
		return fmt.Errorf("podman load did not load %s: %q %q", name, out, stderr)
	}
	return nil
}

// Run implements Engine:
//
//	podman ... run --rm --network none --memory 268435456 --cpus 0.5
//	    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --cgroup-parent PARENT
//	    [--annotation K=V]... [--env K=V]... [--security-opt seccomp=unconfined]
//	    [--volume DIR:/out] IMAGE ARGS...
//
// The explicit ulimits: without CAP_SYS_RESOURCE in the bounding set
// (this host) podman's defaults cannot be applied.
func (p *Podman) Run(ctx context.Context, image string, opts RunOptions) (string, string, error) {
	args := []string{"run", "--rm", "--network", "none",
		"--memory", strconv.Itoa(MemoryLimit), "--cpus", fmt.Sprint(float64(CPUQuota) / CPUPeriod),
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--cgroup-parent", p.cfg.CgroupParent,
	}
	args = append(args, annotationFlags(opts.Annotations)...)
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
	return p.podman(ctx, args...)
}

// LeftoverRuntimeState implements Engine: runc's default state directory,
// /run/runc in the namespace.
func (p *Podman) LeftoverRuntimeState() []string {
	return entries(filepath.Join(p.cfg.Dir, "run", "runc"))
}

// Close implements Engine: kills, by pid, whatever podman left running in
// the namespace (conmon, cleanup processes; reported as an error), then the
// namespace.
func (p *Podman) Close() error {
	if p.ns == nil {
		return nil
	}
	err := p.ns.Close()
	p.ns = nil
	return err
}
