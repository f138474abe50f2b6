package harness

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// EnvHostRoot names the directory under which the host's own programs are
// found when they are not at / (the cgroup v2 VM tier: the host's /usr is a
// read-only 9p share at /host/usr, next to copies of its /lib links and
// the /etc entries of hostEtcPaths). Unset means /.
const EnvHostRoot = "SECCOMPAGENT_E2E_HOST_ROOT"

// HostRoot returns $SECCOMPAGENT_E2E_HOST_ROOT, or / when it is unset.
func HostRoot() string {
	if r := os.Getenv(EnvHostRoot); r != "" {
		return filepath.Clean(r)
	}
	return "/"
}

// maxSymlinks bounds the links followed by resolveUnder (the kernel's
// MAXSYMLINKS).
const maxSymlinks = 40

// HostPath returns where the host path p is on this machine: p itself
// when HostRoot is /, else p resolved under HostRoot as a chroot would
// resolve it (absolute symlink targets such as /usr/bin/java ->
// /etc/alternatives/java taken relative to the root). The result exists.
func HostPath(p string) (string, error) {
	root := HostRoot()
	if root == "/" {
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	return resolveUnder(root, p)
}

// resolveUnder follows p's symlinks one component at a time inside root
// and returns the resolved path (under root), which must exist.
func resolveUnder(root, p string) (string, error) {
	rest := splitPath(p)
	cur := "/" // resolved so far, relative to root
	for links := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(cur, target)
		}
		rest = append(splitPath(target), rest...)
		cur = "/"
	}
	return filepath.Join(root, cur), nil
}

// splitPath splits an absolute path into its components, without empty
// ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}
