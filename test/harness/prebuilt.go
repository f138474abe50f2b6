package harness

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Prebuilt artifacts for running a compiled e2e test binary where there is
// no toolchain (the cgroup v2 VM tier, test/vm): when set, the e2e TestMain
// uses them instead of building the agent and the rootfs.
const (
	// EnvAgent is the path of a seccompagent binary.
	EnvAgent = "SECCOMPAGENT_E2E_AGENT"
	// EnvRootfs is the path of a rootfs made by test/rootfs/build.sh.
	EnvRootfs = "SECCOMPAGENT_E2E_ROOTFS"
)

// PrebuiltRootfs reports whether $SECCOMPAGENT_E2E_ROOTFS is set.
func PrebuiltRootfs() bool { return os.Getenv(EnvRootfs) != "" }

// AgentBinary returns $SECCOMPAGENT_E2E_AGENT when set (it must be an
// executable file), else builds the agent into dir (BuildAgent).
func AgentBinary(dir string) (string, error) {
	p := os.Getenv(EnvAgent)
	if p == "" {
		return BuildAgent(dir)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvAgent, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s=%s is not an executable file", EnvAgent, p)
	}
	return abs, nil
}

// TestRootfs returns $SECCOMPAGENT_E2E_ROOTFS when set (it must hold
// /bin/busybox), else builds the rootfs into dir (BuildRootfs) and returns
// dir.
func TestRootfs(dir string) (string, error) {
	p := os.Getenv(EnvRootfs)
	if p == "" {
		return dir, BuildRootfs(dir)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(abs, "bin", "busybox")); err != nil {
		return abs, fmt.Errorf("%s=%s is not a test rootfs (made by test/rootfs/build.sh): %w", EnvRootfs, p, err)
	}
	return abs, nil
}

// CgroupUnified reports whether /sys/fs/cgroup is a cgroup2 mount, i.e. a
// pure cgroup v2 host (on a hybrid host it is a tmpfs of v1 hierarchies,
// with cgroup2 at /sys/fs/cgroup/unified).
func CgroupUnified() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}
