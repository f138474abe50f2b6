package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ReadOnlyBind is a read-only (recursive) bind mount of the host path src at
// dst in the container.
func ReadOnlyBind(src, dst string) specs.Mount {
	return specs.Mount{
		Destination: dst,
		Type:        "bind",
		Source:      src,
		Options:     []string{"rbind", "ro", "nosuid", "nodev"},
	}
}

// CgroupMount is the container's own cgroup filesystem, read-only at
// /sys/fs/cgroup, as Docker, Podman and Kubernetes give every container.
// Programs that read their limits from cgroup files (the JVM, Go >= 1.25,
// libuv's constrained memory) find them there.
func CgroupMount() specs.Mount {
	return specs.Mount{
		Destination: "/sys/fs/cgroup",
		Type:        "cgroup",
		Source:      "cgroup",
		Options:     []string{"nosuid", "noexec", "nodev", "relatime", "ro"},
	}
}

// AddMounts appends mounts to the bundle's spec and rewrites config.json.
// Mount points on the (read-only) rootfs must already exist.
func (b *Bundle) AddMounts(mounts ...specs.Mount) error {
	b.Spec.Mounts = append(b.Spec.Mounts, mounts...)
	data, err := json.MarshalIndent(b.Spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(b.ConfigPath(), data, 0o600)
}

// hostLibDirs are the top-level directories the host's dynamically linked
// programs may need besides /usr: on a merged-/usr system (Debian 12) they
// are symlinks into /usr, elsewhere real directories.
var hostLibDirs = []string{"/lib", "/lib32", "/lib64", "/libx32"}

// hostEtcPaths are the host /etc entries the host's programs need: the
// alternatives (/usr/bin/java -> /etc/alternatives/java -> the JVM), the
// JVM's own configuration (lib/jvm.cfg is a symlink into
// /etc/java-<N>-openjdk) and the dynamic linker's cache. Globs are expanded.
var hostEtcPaths = []string{"/etc/alternatives", "/etc/java-*", "/etc/ld.so.cache"}

// HostProgramMounts prepares rootfs so that the host's own dynamically
// linked programs (/usr/bin/python3, /usr/bin/node, /usr/bin/java, ...) run
// in a container on it, and returns the read-only bind mounts to add with
// AddMounts: the host's /usr, its /lib* directories (recreated as the same
// symlinks when the host has merged /usr, bind-mounted otherwise) and the
// few /etc entries in hostEtcPaths, all taken from under HostRoot. It
// creates the mount points in rootfs (which is read-only in the container)
// and never touches the host paths.
func HostProgramMounts(rootfs string) ([]specs.Mount, error) {
	root := HostRoot()
	var mounts []specs.Mount
	if err := os.MkdirAll(filepath.Join(rootfs, "usr"), 0o755); err != nil {
		return nil, err
	}
	mounts = append(mounts, ReadOnlyBind(filepath.Join(root, "usr"), "/usr"))

	for _, dir := range hostLibDirs {
		onHost := filepath.Join(root, dir)
		fi, err := os.Lstat(onHost)
		if err != nil {
			continue // the host has no such directory
		}
		inRootfs := filepath.Join(rootfs, dir)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(onHost)
			if err != nil {
				return nil, err
			}
			if cur, err := os.Readlink(inRootfs); err == nil && cur == target {
				continue
			}
			_ = os.Remove(inRootfs)
			if err := os.Symlink(target, inRootfs); err != nil {
				return nil, err
			}
			continue
		}
		if err := os.MkdirAll(inRootfs, 0o755); err != nil {
			return nil, err
		}
		mounts = append(mounts, ReadOnlyBind(onHost, dir))
	}

	etc, err := HostEtcEntries()
	if err != nil {
		return nil, err
	}
	for _, p := range etc {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			continue
		}
		inRootfs := filepath.Join(rootfs, p)
		if err := os.MkdirAll(filepath.Dir(inRootfs), 0o755); err != nil {
			return nil, err
		}
		if fi.IsDir() {
			if err := os.MkdirAll(inRootfs, 0o755); err != nil {
				return nil, err
			}
		} else if _, err := os.Stat(inRootfs); err != nil {
			// A file bind mount needs a file to mount over.
			if err := os.WriteFile(inRootfs, nil, 0o644); err != nil {
				return nil, fmt.Errorf("mount point for %s: %w", p, err)
			}
		}
		mounts = append(mounts, ReadOnlyBind(filepath.Join(root, p), p))
	}
	return mounts, nil
}

// HostEtcEntries returns the host paths that hostEtcPaths names (globs
// expanded under HostRoot), sorted, as paths on the host.
func HostEtcEntries() ([]string, error) {
	root := HostRoot()
	var etc []string
	for _, pattern := range hostEtcPaths {
		matches, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			rel, err := filepath.Rel(root, m)
			if err != nil {
				return nil, err
			}
			etc = append(etc, "/"+rel)
		}
	}
	sort.Strings(etc)
	return etc, nil
}

// HostLibDirs are the host's top-level library directories besides /usr
// (see hostLibDirs).
func HostLibDirs() []string { return slices.Clone(hostLibDirs) }
