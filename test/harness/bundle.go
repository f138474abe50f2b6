package harness

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CgroupParent is the cgroup (in every hierarchy) under which all test
// containers get their own unique leaf: /seccompagent-e2e, or
// $SECCOMPAGENT_E2E_CGROUP_PARENT so that two test runs on one machine never
// remove each other's parent.
var CgroupParent = cgroupParent()

func cgroupParent() string {
	if p := os.Getenv("SECCOMPAGENT_E2E_CGROUP_PARENT"); strings.HasPrefix(p, "/") && len(p) > 1 {
		return filepath.Clean(p)
	}
	return "/seccompagent-e2e"
}

// OCIVersion is written as config.json's ociVersion. crun 1.8 rejects
// anything but 1.0.x ("unknown version specified") and every field used here
// (including seccomp listenerPath) exists in 1.0.2, which runc 1.1 reports.
const OCIVersion = "1.0.2-dev"

// TrappedSyscalls are the syscalls the agent answers (SCMP_ACT_NOTIFY).
var TrappedSyscalls = []string{"sysinfo", "sched_getaffinity"}

// BundleOptions describes one test container.
type BundleOptions struct {
	// Args is the container's process; default: sh.
	Args []string
	// Env is added to PATH=/bin.
	Env []string
	// MemoryLimit in bytes; 0 = no limit.
	MemoryLimit int64
	// CPUQuota and CPUPeriod in µs (cfs_quota_us / cfs_period_us); 0 = unset.
	CPUQuota  int64
	CPUPeriod uint64
	// Cpuset, e.g. "0" or "0-1"; "" = unset.
	Cpuset string
	// ListenerPath: when set, a seccomp profile traps TrappedSyscalls with
	// SCMP_ACT_NOTIFY and hands the listener fd to this socket. When empty
	// the container has no seccomp profile at all.
	ListenerPath string
	// Annotations go into config.json (and the state runc/crun send the agent).
	Annotations map[string]string
	// ExtraCaps are added to the process's capability sets (e.g.
	// CAP_SYS_ADMIN for a test that unshares a namespace).
	ExtraCaps []string
	// CgroupsPath overrides the generated absolute path
	// CgroupParent/<unique>; it must be absolute.
	CgroupsPath string
}

// Bundle is an OCI bundle directory written by NewBundle.
type Bundle struct {
	// Dir holds config.json; StateDir (the private --root of the runtimes)
	// and the detached containers' output files live in it too.
	Dir string
	// Rootfs is the absolute rootfs path written into config.json.
	Rootfs string
	// CgroupsPath is the absolute linux.cgroupsPath; Cleanup removes only
	// this cgroup (rmdir, never anything else).
	CgroupsPath string
	// Spec is what was written to config.json.
	Spec *specs.Spec
	// Wrapper, when set, is the argv of an OCI runtime wrapper
	// (seccompagent-runtime and its own flags): every runtime command
	// goes through it, with --seccompagent-runtime naming the real one.
	Wrapper []string
}

// StateDir is the private state directory (--root) the runtimes use for this
// bundle, so no test ever sees or collides with the host's runc/crun state.
func (b *Bundle) StateDir() string { return filepath.Join(b.Dir, "state") }

// ConfigPath is the path of config.json.
func (b *Bundle) ConfigPath() string { return filepath.Join(b.Dir, "config.json") }

// UniqueID returns a short random hex string for container ids and cgroups.
func UniqueID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// NewBundle writes dir/config.json for a container running opts.Args on the
// (read-only) rootfs.
func NewBundle(dir, rootfs string, opts BundleOptions) (*Bundle, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	absRootfs, err := filepath.Abs(rootfs)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(absRootfs, "bin", "busybox")); err != nil {
		return nil, fmt.Errorf("rootfs %s has no /bin/busybox (run BuildRootfs first): %w", absRootfs, err)
	}
	cgPath := opts.CgroupsPath
	if cgPath == "" {
		cgPath = CgroupParent + "/" + UniqueID()
	}
	if !strings.HasPrefix(cgPath, "/") || strings.Contains(cgPath, "..") {
		return nil, fmt.Errorf("cgroupsPath %q must be absolute and clean (runc 1.1 nests relative paths under its own cgroup)", cgPath)
	}
	spec := buildSpec(absRootfs, cgPath, opts)
	if err := os.MkdirAll(absDir, 0o700); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return nil, err
	}
	b := &Bundle{Dir: absDir, Rootfs: absRootfs, CgroupsPath: cgPath, Spec: spec}
	if err := os.WriteFile(b.ConfigPath(), data, 0o600); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.StateDir(), 0o700); err != nil {
		return nil, err
	}
	return b, nil
}

// buildSpec makes the runtime-spec config for NewBundle.
func buildSpec(rootfs, cgPath string, opts BundleOptions) *specs.Spec {
	args := opts.Args
	if len(args) == 0 {
		args = []string{"sh"}
	}
	caps := append([]string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}, opts.ExtraCaps...)
	spec := &specs.Spec{
		Version: OCIVersion,
		Process: &specs.Process{
			Terminal: false,
			User:     specs.User{UID: 0, GID: 0},
			Args:     args,
			Env:      append([]string{"PATH=/bin"}, opts.Env...),
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "seccompagent-e2e",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=65536k"}},
		},
		Annotations: opts.Annotations,
		Linux: &specs.Linux{
			CgroupsPath: cgPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.CgroupNamespace},
				{Type: specs.NetworkNamespace},
			},
			Resources: &specs.LinuxResources{
				// Deny every device; the runtimes still allow their
				// default set (/dev/null, /dev/zero, ...).
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
	res := spec.Linux.Resources
	if opts.MemoryLimit > 0 {
		limit := opts.MemoryLimit
		res.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	if opts.CPUQuota != 0 || opts.CPUPeriod != 0 || opts.Cpuset != "" {
		res.CPU = &specs.LinuxCPU{}
		if opts.CPUQuota != 0 {
			quota := opts.CPUQuota
			res.CPU.Quota = &quota
		}
		if opts.CPUPeriod != 0 {
			period := opts.CPUPeriod
			res.CPU.Period = &period
		}
		res.CPU.Cpus = opts.Cpuset
	}
	if opts.ListenerPath != "" {
		spec.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
			ListenerPath:  opts.ListenerPath,
			Syscalls: []specs.LinuxSyscall{{
				Names:  append([]string(nil), TrappedSyscalls...),
				Action: specs.ActNotify,
			}},
		}
	}
	return spec
}

// cgroupMounts returns the mount points of every cgroup (v1) and cgroup2
// filesystem visible to this process, from /proc/self/mountinfo.
func cgroupMounts() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		// Fields: id parent major:minor root mountpoint opts... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 1 {
			continue
		}
		if qf[0] == "cgroup" || qf[0] == "cgroup2" {
			mounts = append(mounts, unescapeMountinfo(pf[4]))
		}
	}
	return mounts, nil
}

// unescapeMountinfo undoes the octal escapes (\040 etc.) of mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// LeftoverCgroups lists the directories of b.CgroupsPath that still exist in
// any cgroup hierarchy (after a clean delete there should be none).
func (b *Bundle) LeftoverCgroups() []string {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil
	}
	var left []string
	for _, m := range mounts {
		p := filepath.Join(m, b.CgroupsPath)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			left = append(left, p)
		}
	}
	return left
}

// CleanupCgroups removes, with rmdir only, the cgroup b.CgroupsPath (and any
// sub-cgroups a runtime made beneath it) from every hierarchy where a
// runtime left it. It never touches any other cgroup; a cgroup that still
// holds processes stays and is reported.
func (b *Bundle) CleanupCgroups() error {
	if b.CgroupsPath == "" || b.CgroupsPath == "/" {
		return nil
	}
	var errs []error
	for _, dir := range b.LeftoverCgroups() {
		if err := rmdirTree(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirTree removes the cgroup directory dir and its sub-cgroups, deepest
// first, with rmdir (cgroupfs directories are never removed recursively by
// unlinking their control files).
func rmdirTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		errs = append(errs, fmt.Errorf("rmdir cgroup %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// RemoveCgroupParent removes the empty CgroupParent directory from every
// hierarchy (rmdir only: it stays while any test container still has its
// cgroup there). Call it once at the end of a test binary or the demo.
func RemoveCgroupParent() {
	mounts, err := cgroupMounts()
	if err != nil {
		return
	}
	for _, m := range mounts {
		_ = os.Remove(filepath.Join(m, CgroupParent))
	}
}
